r"""The sweep command line: a gin grid of model sizes x budgets x families x objectives x seeds.

  python -m research.sweeps --gin_file=gin_configs/sweeps/quickstart.gin \
      --sweep_dir=/tmp/quickstart --parallel=2 [--executor=local|slurm|submitit_local] [--fit]
      [--fit_baseline_json=ngram.json]

(`research-sweep` once installed.) Each grid point trains with `python -m research.train` in
SWEEP_DIR/<run_id>/. Re-running the same command skips finished runs, resumes interrupted ones
and retries failed ones. When the grid is done, SWEEP_DIR/results.csv is written; --fit then
runs `python -m research.scaling` on it (fits.json and figures in SWEEP_DIR/fits). Exit
status: 0 when every run finished, 1 when any failed (results.csv is still written from the
others), 2 for a bad flag or config, 130 when stopped by a signal.
"""
import os
import subprocess
import sys
from typing import Sequence

from absl import flags
from absl import logging

from research import cli

PROG = 'research-sweep'

_GIN_FILE = flags.DEFINE_multi_string('gin_file', [], 'Sweep gin file(s), in order.')
_GIN_BINDINGS = flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings for the sweep.')
_SWEEP_DIR = flags.DEFINE_string('sweep_dir', None, 'Directory of the sweep (resumed).')
_EXECUTOR = flags.DEFINE_enum('executor', 'local', ['local', 'slurm', 'submitit_local'],
                              'local: child processes; slurm: submitit jobs (SlurmConfig '
                              'in gin); submitit_local: submitit on this machine.')
_PARALLEL = flags.DEFINE_integer('parallel', 1, 'Runs at once.')
_MAX_ATTEMPTS = flags.DEFINE_integer('max_attempts', 2,
                                     'Launches per run when a trainer is preempted.')
_REPORT_EVERY = flags.DEFINE_float('report_every', 30.0, 'Seconds between progress lines.')
_FIT = flags.DEFINE_bool('fit', False, 'Fit scaling laws to results.csv (research.scaling).')
_FIT_BASELINE = flags.DEFINE_string(
    'fit_baseline_json', None, 'With --fit: an n-gram table (python -m '
    'research.baselines.ngram --out=...) drawn as dashed lines on the fit\'s loss figures '
    '(research-fit --baseline_json).')
_PLAN_ONLY = flags.DEFINE_bool('plan_only', False, 'Print the grid and exit.')
_FLOPS_PER_SECOND = flags.DEFINE_float(
    'flops_per_second', None, 'With --plan_only: the useful FLOP/s one run reaches here (in '
    'the sweep\'s flops_convention; benchmarks/sweep_cost.py or a run\'s metrics measure '
    'it), to estimate each point\'s and the sweep\'s wall time.')
_STARTUP_SECONDS = flags.DEFINE_float(
    'startup_seconds', 0.0, 'With --flops_per_second: seconds each run spends before its '
    'first step and in its final evaluation.')


def _fit(results_csv: str) -> int:
  from research.sweeps import executors  # pylint: disable=g-import-not-at-top
  out = os.path.join(os.path.dirname(results_csv), 'fits')
  cmd = [sys.executable, '-m', 'research.scaling', f'--results={results_csv}', f'--out={out}']
  if _FIT_BASELINE.value:
    cmd.append(f'--baseline_json={os.path.abspath(_FIT_BASELINE.value)}')
  logging.info('fitting %s into %s: %s', results_csv, out, ' '.join(cmd[1:]))
  return subprocess.call(cmd, env=executors.child_env())


def _print_plan(points, skipped) -> None:
  from research import sweeps  # pylint: disable=g-import-not-at-top
  rate = _FLOPS_PER_SECOND.value
  seconds = {p.run_id: _STARTUP_SECONDS.value + p.flops_per_token * p.tokens / rate
             for p in points} if rate else {}
  for p in points:
    print(f'{p.run_id:48s} N={p.n_params:>10,d} steps={p.train_steps:>6d} '
          f'tokens={p.tokens:.3g} C={p.flops_per_token * p.tokens:.3g}'
          + (f' ~{seconds[p.run_id]:.0f} s' if seconds else ''))
  for line in sweeps.plan_notes(points, skipped):
    print(line)
  if seconds:
    order = [seconds[p.run_id] for p in sweeps.launch_order(points)]
    wall = sweeps.packed_wall(order, _PARALLEL.value)
    print(f'estimated: {sum(order) / 60:.1f} min of runs, {wall / 60:.1f} min wall at '
          f'--parallel={_PARALLEL.value} ({rate / 1e9:.3g} GFLOP/s per run, '
          f'{_STARTUP_SECONDS.value:g} s start-up each)')


def main(argv: Sequence[str], prog: str = PROG) -> None:
  del argv  # cli.run refuses extra arguments
  cli.show_own_info()
  if not _PLAN_ONLY.value:
    cli.require(prog, sweep_dir=_SWEEP_DIR.value)
  if _SWEEP_DIR.value and os.path.exists(_SWEEP_DIR.value) and not os.path.isdir(
      _SWEEP_DIR.value):
    cli.usage_error(prog, f'--sweep_dir {_SWEEP_DIR.value!r} is a file, not a directory')
  cli.require_positive(prog, **{'--parallel': _PARALLEL.value,
                                '--max_attempts': _MAX_ATTEMPTS.value})
  if _FLOPS_PER_SECOND.value is not None:
    cli.require_positive(prog, **{'--flops_per_second': _FLOPS_PER_SECOND.value})
  if _STARTUP_SECONDS.value < 0:
    cli.usage_error(prog, f'--startup_seconds must be >= 0, got {_STARTUP_SECONDS.value}')
  cli.require(prog, gin_file=_GIN_FILE.value)
  if _FIT_BASELINE.value and not os.path.isfile(_FIT_BASELINE.value):
    cli.usage_error(prog, f'--fit_baseline_json {_FIT_BASELINE.value!r}: no such file')
  # pylint: disable=g-import-not-at-top
  from research import sweeps
  from research.scaling import results
  # pylint: enable=g-import-not-at-top
  config, slurm = sweeps.load_config(_GIN_FILE.value, _GIN_BINDINGS.value)
  sweeps.check_executor(_EXECUTOR.value, slurm)
  if _PLAN_ONLY.value:  # SweepError is a UsageError: cli.run exits 2 with its line
    _print_plan(*sweeps.plan(
        config, sweeps.local_device_count if _EXECUTOR.value == 'local' else None))
    return
  summary = sweeps.run_sweep(config, _SWEEP_DIR.value, executor=_EXECUTOR.value,
                             parallel=_PARALLEL.value, max_attempts=_MAX_ATTEMPTS.value,
                             report_every=_REPORT_EVERY.value, slurm=slurm)
  path, report = results.write_results(_SWEEP_DIR.value)
  print('\n'.join(report.lines()))
  print(f'{prog}: wrote {path}')
  if summary['interrupted']:
    sys.exit(130)
  code = 1 if summary['failed'] else 0
  if _FIT.value and report.rows:
    code = _fit(path) or code
  sys.exit(code)


def run(prog: str = '') -> None:
  """The `research-sweep` console script (and `python -m research.sweeps`)."""
  prog = prog or cli.prog_name(PROG)
  cli.run(lambda argv: main(argv, prog), prog)
