"""Shared start-up behaviour of the command-line scripts (experiments/, benchmarks/)."""
import sys
from typing import Callable

from absl import flags


def flags_parser(prog: str) -> Callable[[list], list]:
  """An `app.run(..., flags_parser=)` that turns a bad flag into one line and exit 2
  ('<prog>: error: Unknown command line flag ...') instead of absl's two-line FATAL."""

  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      message = (str(e).strip().splitlines() or ['bad flags'])[0]
      print(f'{prog}: error: {message}', file=sys.stderr)
      sys.exit(2)
  return parse
