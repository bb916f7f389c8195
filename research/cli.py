"""Shared start-up behaviour of every command-line entry point.

One convention for all of them (console scripts, `python -m research.<x>`, experiments/,
benchmarks/): a problem is reported as one line, `<prog>: error: <message>`, on stderr, and
the process exits with

- `USAGE_ERROR` (2): the command line is wrong (unknown or missing flag, bad value, bad gin
  binding, a path that does not exist);
- `RUNTIME_ERROR` (1): the command line is fine but the work failed (corrupt checkpoint,
  impossible mesh, a run that diverged).
"""
import sys
from typing import Callable, NoReturn, Sequence

from absl import app
from absl import flags

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


def flags_parser(prog: str) -> Callable[[list], list]:
  """An `app.run(..., flags_parser=)` that turns a bad flag into one line and exit 2
  ('<prog>: error: Unknown command line flag ...') instead of absl's two-line FATAL."""

  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      usage_error(prog, e)
  return parse


def require(prog: str, **values) -> None:
  """Exits 2 naming the first flag that was not given (None or empty)."""
  for name, value in values.items():
    if value is None or value == '' or value == []:
      usage_error(prog, f'--{name} is required')


def require_positive(prog: str, **values) -> None:
  """Exits 2 naming the first value that is zero or negative (step counts, budgets, batch
  sizes, learning rates: none of them means anything at or below zero)."""
  for name, value in values.items():
    if value is not None and not value > 0:
      usage_error(prog, f'{name} must be positive, got {value}')


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
