r"""Scores every run of an arithmetic sweep by every metric (`research-probe`): emergence.csv,
sharpness.csv, figures, checks.json.

  research-probe --sweep_dir=/tmp/emergence_cpu --out=/tmp/probe \
      [--n_per_length=200] [--nomc] [--bootstrap_samples=1000] \
      [--large_n_per_length=2000 [--max_large_n_per_length=32000]]
  python -m research.emergence --sweep_dir=... --out=...

Unfinished or corrupt runs are listed one per line and skipped. Re-running reuses the
per-checkpoint caches in <out>/cache/ and recomputes the metrics from them.
"""
import os
import sys

from absl import flags
from absl import logging

from research import cli

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


def main(prog: str) -> None:
  cli.require(prog, sweep_dir=_SWEEP_DIR.value, out=_OUT.value)
  cli.require_positive(prog, **{'--n_per_length': _N_PER_LENGTH.value})
  if _LARGE.value and _LARGE.value <= _N_PER_LENGTH.value:
    cli.usage_error(prog, f'--large_n_per_length ({_LARGE.value}) must exceed '
                          f'--n_per_length ({_N_PER_LENGTH.value})')
  if _MAX_LARGE.value and _MAX_LARGE.value <= _LARGE.value:
    cli.usage_error(prog, f'--max_large_n_per_length ({_MAX_LARGE.value}) must exceed '
                          f'--large_n_per_length ({_LARGE.value})')
  if not os.path.isdir(_SWEEP_DIR.value):
    cli.usage_error(prog, f'--sweep_dir {_SWEEP_DIR.value!r} is not a directory')
  logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  from research.parallel import host  # pylint: disable=g-import-not-at-top
  host.tune_allocator()  # before JAX allocates (research/parallel/host.py)
  from research.emergence import probe  # pylint: disable=g-import-not-at-top
  log = lambda line: print(line, file=sys.stderr)  # noqa: E731
  try:
    result = probe.probe(_SWEEP_DIR.value, _OUT.value, n_per_length=_N_PER_LENGTH.value,
                         with_mc=_MC.value, bootstrap_samples=_BOOTSTRAP.value,
                         large_n_per_length=_LARGE.value,
                         max_large_n_per_length=_MAX_LARGE.value, log=log)
  except ValueError as e:  # no usable runs
    cli.fail(prog, e)
  log(f'{prog}: {len(result["runs"])} runs scored, {len(result["skipped"])} skipped; wrote '
      f'{result["csv"]}, {result["sharpness_csv"]} and {len(result["figures"])} figures')


def run() -> None:
  """`research-probe`, `python -m research.emergence` and experiments/probe_emergence.py.

  Errors name the command as it was called."""
  prog = os.path.basename(sys.argv[0]).replace('__main__.py', 'python -m research.emergence')
  cli.run(lambda argv: main(prog), prog)
