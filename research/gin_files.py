"""Where gin config files are found, in a checkout and in an installed package alike.

A path is looked up relative to the working directory first, then relative to the directory
that holds `gin_configs/`: the checkout's root, or the copy installed as
`research/gin_configs` (setup.py ships it as package data). So `gin_configs/runs/tiny.gin`
names the same file from the repository root and, once installed, from anywhere; gin's
`include 'gin_configs/...'` lines resolve the same way once `add_search_paths()` has run.
"""
import os
from typing import Optional, Sequence

from research import cli

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
GIN_DIR = 'gin_configs'


def root() -> str:
  """The directory holding gin_configs/: the installed copy if there is one, else the
  checkout the package was imported from."""
  if os.path.isdir(os.path.join(_PACKAGE, GIN_DIR)):
    return _PACKAGE
  return os.path.dirname(_PACKAGE)


def resolve(path: str) -> Optional[str]:
  """The absolute path of gin file `path`, or None if it is nowhere."""
  candidates = [path]
  if not os.path.isabs(path):
    candidates += [os.path.join(root(), path), os.path.join(root(), GIN_DIR, path)]
  for candidate in candidates:
    if os.path.isfile(candidate):
      return os.path.abspath(candidate)
  return None


def resolve_all(paths: Sequence[str], flag: str = '--gin_file') -> list[str]:
  """`resolve` of each path; raises cli.UsageError naming the first that is nowhere."""
  found = []
  for path in paths:
    found.append(resolve(path))
    if found[-1] is None:
      raise cli.UsageError(f'{flag} {path!r} does not exist')
  return found


_added = []


def add_search_paths() -> None:
  """Lets gin find `include` targets and relative --gin_file paths the way `resolve` does
  (once per process: gin keeps a list, and clear_config leaves it)."""
  import gin  # pylint: disable=g-import-not-at-top
  for path in (os.path.join(root(), GIN_DIR), root()):
    if path not in _added:
      gin.add_config_file_search_path(path)
      _added.append(path)
