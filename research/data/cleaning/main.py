r"""The cleaning command line: a text_files corpus in, a cleaned prepared TFDS dataset out.

  python -m research.data.cleaning --input_dir=python_stdlib --output_dir=/tmp/stdlib_clean \
      [--gin_file=gin_configs/data/cleaning_code.gin] [--gin_bindings=...] [--workers=2]

`--input_dir` is a directory or glob of UTF-8 text files, or `python_stdlib` for the embedded
corpus. A bad rule name or threshold, a missing input or an existing output fails with one
line and exit 2 before anything is written; a corpus that cleaning empties with one line and
exit 1, leaving nothing behind. Re-running after a kill starts again cleanly.
"""
import os
from typing import Sequence

from absl import flags

from research import cli
from research import gin_files

PROG = 'research-clean'

_INPUT = flags.DEFINE_string('input_dir', None, 'Directory or glob of UTF-8 text files, or '
                             'python_stdlib (the embedded corpus).')
_OUTPUT = flags.DEFINE_string('output_dir', None, 'Where the cleaned corpus, dataset and '
                              'report go (must not exist).')
_GIN_FILE = flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s), in order.')
_GIN_BINDINGS = flags.DEFINE_multi_string('gin_bindings', [],
                                          'Gin bindings, applied after the files.')
_WORKERS = flags.DEFINE_integer('workers', min(4, os.cpu_count() or 1),
                                'Processes reading, filtering and signing files.')


def main(argv: Sequence[str], prog: str = PROG) -> None:
  del argv
  import gin  # pylint: disable=g-import-not-at-top
  from research.data import cleaning  # pylint: disable=g-import-not-at-top
  cli.require(prog, input_dir=_INPUT.value, output_dir=_OUTPUT.value)
  cli.require_positive(prog, workers=_WORKERS.value)
  gin_files.add_search_paths()
  try:
    gin.parse_config_files_and_bindings(gin_files.resolve_all(_GIN_FILE.value),
                                        _GIN_BINDINGS.value)
  except Exception as e:  # gin raises many types; all mean "this config is wrong"
    cli.usage_error(prog, f'bad gin config: {e}')
  try:
    config = cleaning.make_config()
  except cleaning.RuleError as e:
    cli.usage_error(prog, e)
  if os.path.exists(_OUTPUT.value):
    cli.usage_error(prog, f'--output_dir {_OUTPUT.value!r} already exists')
  try:
    cleaning.clean(_INPUT.value, _OUTPUT.value, config, workers=_WORKERS.value)
  except cleaning.CleaningError as e:
    code = cli.USAGE_ERROR if 'does not exist' in str(e) else cli.RUNTIME_ERROR
    cli.fail(prog, e, code)
  except ValueError as e:  # no files at the pattern
    cli.usage_error(prog, e)
  except OSError as e:  # a file that cannot be read or written; the partial output is gone
    cli.fail(prog, f'{e.filename or ""}: {e.strerror or e}')
  print(open(os.path.join(_OUTPUT.value, 'report.txt'), encoding='utf-8').read(), end='')


def run(prog: str = '') -> None:
  """`python -m research.data.cleaning` (and the `research-clean` console script)."""
  prog = prog or cli.prog_name(PROG)
  cli.run(lambda argv: main(argv, prog), prog)
