r"""Scores every run of an arithmetic sweep by every metric: emergence.csv, sharpness.csv, figures.

  python experiments/probe_emergence.py --sweep_dir=/tmp/emergence_cpu --out=/tmp/probe \
      [--n_per_length=200] [--nomc] [--bootstrap_samples=1000] [--large_n_per_length=2000 [--max_large_n_per_length=32000]]

Unfinished or corrupt runs are listed one per line and skipped. Re-running reuses the
per-checkpoint caches in <out>/cache/ and recomputes the metrics from them.
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)  # runnable from a checkout without `pip install -e .`

_SWEEP_DIR = flags.DEFINE_string('sweep_dir', None, 'Directory of run directories.')
_OUT = flags.DEFINE_string('out', None, 'Output directory (created).')
_N_PER_LENGTH = flags.DEFINE_integer('n_per_length', 200, 'Eval items per answer length.')
_MC = flags.DEFINE_bool('mc', True, 'Score the multiple-choice variant.')
_BOOTSTRAP = flags.DEFINE_integer('bootstrap_samples', 1000, 'Bootstrap replicates.')
_LARGE = flags.DEFINE_integer(
    'large_n_per_length', 0, 'If > 0: final (run, L) cells with no exact match among the '
    '--n_per_length items are scored again on this many (resolution.csv).')
_MAX_LARGE = flags.DEFINE_integer(
    'max_large_n_per_length', 0, 'If above --large_n_per_length: a zero cell not above '
    'chance is scored once more (teacher-forced, counted in chunks, resumable), on '
    '--large_n_per_length x 4^k items up to this many, where that gives a 90% chance of '
    'resolving the rate its per-position accuracies predict.')


def _fail(message: str, code: int = 1):
  print(f'probe_emergence.py: error: {str(message).strip().splitlines()[0]}', file=sys.stderr)
  sys.exit(code)



def main(argv):
  if len(argv) > 1:
    _fail(f'unexpected arguments: {" ".join(argv[1:])}', code=2)
  if not _SWEEP_DIR.value or not _OUT.value:
    _fail('--sweep_dir and --out are required', code=2)
  if _LARGE.value and _LARGE.value <= _N_PER_LENGTH.value:
    _fail(f'--large_n_per_length ({_LARGE.value}) must exceed --n_per_length '
          f'({_N_PER_LENGTH.value})', code=2)
  if _MAX_LARGE.value and _MAX_LARGE.value <= _LARGE.value:
    _fail(f'--max_large_n_per_length ({_MAX_LARGE.value}) must exceed --large_n_per_length '
          f'({_LARGE.value})', code=2)
  if _N_PER_LENGTH.value < 1:
    _fail(f'--n_per_length must be positive, got {_N_PER_LENGTH.value}', code=2)
  logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  from research.parallel import host
  host.tune_allocator()  # before JAX allocates (research/parallel/host.py)
  from research.emergence import probe
  log = lambda line: print(line, file=sys.stderr)  # noqa: E731
  try:
    result = probe.probe(_SWEEP_DIR.value, _OUT.value, n_per_length=_N_PER_LENGTH.value,
                         with_mc=_MC.value, bootstrap_samples=_BOOTSTRAP.value,
                         large_n_per_length=_LARGE.value,
                         max_large_n_per_length=_MAX_LARGE.value, log=log)
  except ValueError as e:
    _fail(e)
  log(f'probe_emergence.py: {len(result["runs"])} runs scored, {len(result["skipped"])} '
      f'skipped; wrote {result["csv"]}, {result["sharpness_csv"]} and '
      f'{len(result["figures"])} figures')


if __name__ == '__main__':
  from research import cli  # pylint: disable=g-import-not-at-top
  app.run(main, flags_parser=cli.flags_parser('probe_emergence.py'))
