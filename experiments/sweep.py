r"""Launches a sweep: a gin grid of model sizes x budgets x families x objectives x seeds.

  python experiments/sweep.py --gin_file=gin_configs/sweeps/quickstart.gin \
      --sweep_dir=/tmp/quickstart --parallel=2 [--executor=local|slurm|submitit_local] [--fit]

Each grid point trains with experiments/train.py in SWEEP_DIR/<run_id>/. Re-running the same
command skips finished runs, resumes interrupted ones and retries failed ones. When the grid
is done, SWEEP_DIR/results.csv is written; --fit then runs experiments/fit_scaling.py on it
(fits.json and figures in SWEEP_DIR/fits). Exit status: 0 when every run finished, 1 when
any failed (results.csv is still written from the others), 2 for a bad flag or config.
"""
import os
import subprocess
import sys

from absl import app
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)  # runnable from a checkout without `pip install -e .`

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
_FIT = flags.DEFINE_bool('fit', False, 'Run experiments/fit_scaling.py on results.csv.')
_PLAN_ONLY = flags.DEFINE_bool('plan_only', False, 'Print the grid and exit.')


def _fail(message, code=2):
  first = str(message).strip().splitlines()[0] if str(message).strip() else 'unknown error'
  print(f'sweep.py: error: {first}', file=sys.stderr)
  sys.exit(code)



def _load_config():
  import gin
  from research.scaling import sweep
  gin.add_config_file_search_path(os.path.join(_REPO, 'gin_configs'))
  gin.add_config_file_search_path(_REPO)
  if not _GIN_FILE.value:
    _fail('--gin_file is required')
  for path in _GIN_FILE.value:
    if not any(os.path.exists(p) for p in (path, os.path.join(_REPO, path),
                                           os.path.join(_REPO, 'gin_configs', path))):
      _fail(f'--gin_file {path!r} does not exist')
  try:
    gin.parse_config_files_and_bindings(_GIN_FILE.value, _GIN_BINDINGS.value,
                                        finalize_config=False)
    # Materialized now: planning re-uses gin for each run's config.
    return sweep.SweepConfig(), sweep.SlurmConfig()
  except Exception as e:  # gin raises many types; all mean "this config is wrong"
    _fail(f'bad sweep config: {e}')


def _fit(results_csv):
  script = os.path.join(_REPO, 'experiments', 'fit_scaling.py')
  if not os.path.exists(script):
    print('sweep.py: --fit: experiments/fit_scaling.py is not in this checkout; skipped')
    return 1
  out = os.path.join(os.path.dirname(results_csv), 'fits')
  print(f'sweep.py: fitting: {script} --results={results_csv} --out={out}', flush=True)
  return subprocess.call([sys.executable, script, f'--results={results_csv}', f'--out={out}'])


def main(argv):
  if len(argv) > 1:
    _fail(f'unexpected arguments: {" ".join(argv[1:])}')
  if not _SWEEP_DIR.value and not _PLAN_ONLY.value:
    _fail('--sweep_dir is required')
  if _SWEEP_DIR.value and os.path.exists(_SWEEP_DIR.value) and not os.path.isdir(
      _SWEEP_DIR.value):
    _fail(f'--sweep_dir {_SWEEP_DIR.value!r} is a file, not a directory')
  config, slurm = _load_config()
  from research.scaling import results
  from research.scaling import sweep
  try:
    if _PLAN_ONLY.value:
      points, skipped = sweep.plan(
          config, sweep.local_device_count if _EXECUTOR.value == 'local' else None)
      for p in points:
        print(f'{p.run_id:48s} N={p.n_params:>10,d} steps={p.train_steps:>6d} '
              f'tokens={p.tokens:.3g} C={p.flops_per_token * p.tokens:.3g}')
      for run_id, why in skipped:
        print(f'{run_id:48s} left out: {why}')
      return
    summary = sweep.run_sweep(config, _SWEEP_DIR.value, executor=_EXECUTOR.value,
                              parallel=_PARALLEL.value, max_attempts=_MAX_ATTEMPTS.value,
                              report_every=_REPORT_EVERY.value, slurm=slurm)
  except sweep.SweepError as e:
    _fail(e)
  path, report = results.write_results(_SWEEP_DIR.value)
  print('\n'.join(report.lines()))
  print(f'sweep.py: wrote {path}')
  if summary['interrupted']:
    sys.exit(130)
  code = 1 if summary['failed'] else 0
  if _FIT.value and report.rows:
    code = _fit(path) or code
  sys.exit(code)


if __name__ == '__main__':
  from research import cli  # pylint: disable=g-import-not-at-top
  app.run(main, flags_parser=cli.flags_parser('sweep.py'))
