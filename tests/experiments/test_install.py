"""A non-editable install trains and sweeps without the checkout: `pip install --target`,
then `python -m research.train` and `python -m research.sweeps` from another directory, with
gin_configs/ found in the installed package."""
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
  """(site directory holding the installed package, an unrelated working directory)."""
  tmp = tmp_path_factory.mktemp('install')
  src = tmp / 'src'  # a copy: building writes build/ and *.egg-info beside setup.py
  src.mkdir()
  shutil.copy(os.path.join(REPO, 'setup.py'), src)
  for name in ('research', 'gin_configs'):
    shutil.copytree(os.path.join(REPO, name), src / name,
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
  site = tmp / 'site'
  proc = subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
                         '--no-build-isolation', '--target', str(site), str(src)],
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  elsewhere = tmp / 'elsewhere'
  elsewhere.mkdir()
  return site, elsewhere


def _run(installed, *args, timeout=600):
  site, elsewhere = installed
  env = dict(os.environ, PYTHONPATH=str(site))
  return subprocess.run([sys.executable, *args], cwd=elsewhere, env=env, capture_output=True,
                        text=True, timeout=timeout)


@pytest.mark.slow
def test_the_installed_package_is_the_one_imported(installed):
  site, _ = installed
  out = _run(installed, '-c', 'import research; print(research.__file__)')
  assert out.returncode == 0 and out.stdout.strip().startswith(str(site)), out.stdout
  assert os.path.isfile(site / 'research' / 'gin_configs' / 'runs' / 'tiny.gin')
  script = _run(installed, str(site / 'bin' / 'research-train'), '--no_such_flag=1')
  assert script.returncode == 2 and script.stderr.strip() == (
      "research-train: error: Unknown command line flag 'no_such_flag'")


@pytest.mark.slow
def test_train_and_a_two_point_sweep_from_another_directory(installed):
  _, elsewhere = installed
  workdir = elsewhere / 'run'
  train = _run(installed, '-m', 'research.train', '--gin_file=gin_configs/runs/tiny.gin',
               f'--workdir={workdir}', '--gin_bindings=TRAIN_STEPS = 2',
               '--gin_bindings=BATCH_SIZE = 4',
               "--gin_bindings=TASK_FEATURE_LENGTHS = {'targets': 32}")
  assert train.returncode == 0, train.stderr[-3000:]
  assert (workdir / 'COMPLETED').exists()

  sweep_dir = elsewhere / 'sweep'
  sweep = _run(installed, '-m', 'research.sweeps', '--gin_file=gin_configs/sweeps/ci.gin',
               f'--sweep_dir={sweep_dir}', '--parallel=2',
               '--gin_bindings=sweep.depth_width_sizes.depths = [1, 1]',
               '--gin_bindings=sweep.depth_width_sizes.widths = [16, 32]',
               '--gin_bindings=sweep.SweepConfig.flop_budgets = [6e8]')
  assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
  runs = sorted(p for p in os.listdir(sweep_dir) if (sweep_dir / p / 'COMPLETED').exists())
  assert runs == ['C6e8-L1d16-decoder-causal_lm-s0', 'C6e8-L1d32-decoder-causal_lm-s0']
  assert (sweep_dir / 'results.csv').exists()
