"""What the package may depend on: research/ runs installed, without a checkout, so no module
of it imports experiments/ or benchmarks/ or runs one of their files; and the scaling fits
launch no process (research/sweeps does)."""
import ast
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = sorted(glob.glob(os.path.join(ROOT, 'research', '**', '*.py'), recursive=True))
SCRIPT_DIRS = ('experiments', 'benchmarks')


def _tree(path):
  with open(path) as f:
    return ast.parse(f.read())


def _imports(tree):
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      yield node.module


def _docstrings(tree):
  for node in ast.walk(tree):
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
      doc = node.body[0] if node.body else None
      if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant):
        yield doc.value


def test_the_modules_are_found():
  names = {os.path.relpath(p, ROOT) for p in MODULES}
  assert {'research/sweeps/launch.py', 'research/train/main.py'} <= names


@pytest.mark.parametrize('path', MODULES, ids=lambda p: os.path.relpath(p, ROOT))
def test_no_module_of_research_reaches_into_the_scripts(path):
  tree = _tree(path)
  imported = [m for m in _imports(tree) if m.split('.')[0] in SCRIPT_DIRS]
  assert not imported, imported
  # A path into them ('experiments', 'train.py') in code; prose in docstrings may name them.
  docs = {id(d) for d in _docstrings(tree)}
  paths = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
           and id(n) not in docs and isinstance(n.value, str)
           and (n.value in SCRIPT_DIRS or re.match(r'(experiments|benchmarks)/\w+\.py$',
                                                    n.value))]
  assert not paths, paths


def test_the_scaling_fits_launch_no_process():
  for path in glob.glob(os.path.join(ROOT, 'research', 'scaling', '*.py')):
    imported = {m.split('.')[0] for m in _imports(_tree(path))}
    assert not imported & {'subprocess', 'submitit', 'multiprocessing'}, path


# The rooms of docs/design.md's import table that other rooms read as data only: the
# scaling fits take the n-gram baseline as a JSON table, never by importing it. Top-level
# helpers (cli, runs, heldout) are shared by every room.
_ALLOWED = {
    'scaling': {'scaling', 'runs', 'heldout', 'cli'},
    'baselines': {'baselines', 'data', 'runs', 'cli'},
}


def _research_names(tree):
  """The research modules a file imports: 'data' for `from research.data import x` and for
  `from research import data`."""
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names = ([f'research.{a.name}' for a in node.names] if node.module == 'research'
               else [node.module])
    else:
      continue
    for name in names:
      parts = name.split('.')
      if parts[0] == 'research' and len(parts) > 1:
        yield parts[1]


@pytest.mark.parametrize('package', sorted(_ALLOWED))
def test_package_imports_follow_the_design_table(package):
  paths = glob.glob(os.path.join(ROOT, 'research', package, '*.py'))
  assert paths
  for path in paths:
    extra = set(_research_names(_tree(path))) - _ALLOWED[package]
    assert not extra, (os.path.relpath(path, ROOT), extra)
