"""Shared start-up behaviour of every command-line entry point.

One convention for all of them (console scripts, `python -m research.<x>`, experiments/,
benchmarks/): a problem is reported as one line, `<prog>: error: <message>`, on stderr, and
the process exits with

- `USAGE_ERROR` (2): the command line is wrong (unknown or missing flag, bad value, bad gin
  binding, a path that does not exist);
- `RUNTIME_ERROR` (1): the command line is fine but the work failed (corrupt checkpoint,
  impossible mesh, a run that diverged).
"""
import logging as std_logging
import os
import re
import sys
from typing import Callable, NoReturn, Sequence

from absl import app
from absl import flags
from absl import logging

USAGE_ERROR = 2
RUNTIME_ERROR = 1


class UsageError(ValueError):
  """Raised by library code for a bad argument that the user chose; exits 2 in `run`."""


def first_line(message) -> str:
  text = str(message).strip()
  return text.splitlines()[0] if text else 'unknown error'


def fail(prog: str, message, code: int = RUNTIME_ERROR) -> NoReturn:
  """Prints `<prog>: error: <first line of message>` and exits with `code`."""
  print(f'{prog}: error: {first_line(message)}', file=sys.stderr)
  sys.exit(code)


def usage_error(prog: str, message) -> NoReturn:
  fail(prog, message, USAGE_ERROR)


_ABSL_MISSING = re.compile(r'Flag --(\w+) must have a value other than None')


def flags_parser(prog: str) -> Callable[[list], list]:
  """An `app.run(..., flags_parser=)` that turns a bad flag into one line and exit 2
  ('<prog>: error: Unknown command line flag ...') instead of absl's two-line FATAL."""

  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      # A flag marked required says so in the words `require` uses for the others.
      missing = _ABSL_MISSING.search(str(e))
      usage_error(prog, f'--{missing.group(1)} is required' if missing else e)
  return parse


def require(prog: str, **values) -> None:
  """Exits 2 naming the first flag that was not given (None or empty)."""
  for name, value in values.items():
    if value is None or value == '' or value == []:
      usage_error(prog, f'--{name} is required')


def check_positive(**values) -> None:
  """Raises `UsageError` naming the first value that is zero or negative (step counts,
  budgets, batch sizes, learning rates: none of them means anything at or below zero).

  For library code, where the values are defined, so that gin and Python callers get the
  check as well as the command line."""
  for name, value in values.items():
    if value is not None and not value > 0:
      raise UsageError(f'{name} must be positive, got {value}')


def require_positive(prog: str, **values) -> None:
  """`check_positive`, but exits 2 with the one line."""
  try:
    check_positive(**values)
  except UsageError as e:
    usage_error(prog, e)


def prog_name(default: str) -> str:
  """The name errors are reported under: a script's file name ('train.py'), a console
  script's ('research-train'), or `default` under `python -m` (whose argv[0] is
  __main__.py)."""
  name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ''
  return default if name in ('', '__main__.py', '-c', '-m') else name


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class _OwnInfoOnly(std_logging.Filter):

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or record.pathname.startswith(_PACKAGE_DIR)


def show_own_info() -> None:
  """Shows INFO lines of research/ (a sharding that changes memory use, say), and those of
  jax, orbax and the other libraries only from WARNING up: orbax alone logs every file of
  every checkpoint at INFO. Call inside `main` (absl installs its handler in app.run)."""
  logging.set_verbosity(logging.INFO)
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _OwnInfoOnly) for f in handler.filters):
    handler.addFilter(_OwnInfoOnly())


def run(main: Callable[[Sequence[str]], None], prog: str) -> None:
  """`absl.app.run(main)` with the one-line flag errors, and `UsageError` -> exit 2."""

  def guarded(argv):
    if len(argv) > 1:
      usage_error(prog, f'unexpected arguments: {" ".join(argv[1:])}')
    try:
      main(argv)
    except UsageError as e:
      usage_error(prog, e)

  app.run(guarded, flags_parser=flags_parser(prog))
