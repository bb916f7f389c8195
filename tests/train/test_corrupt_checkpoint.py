"""A corrupt checkpoint fails training and generate.py at start-up with one line, and
leaves every file of the run as it was."""
import hashlib
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = [sys.executable, '-m', 'research.train',
         '--gin_file=gin_configs/runs/tiny.gin', '--gin_bindings=TRAIN_STEPS = 4',
         '--gin_bindings=CheckpointConfig.every_steps = 2']


def _files(workdir):
  out = {}
  for root, _, names in os.walk(workdir):
    for name in names:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
  return out


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('ckpt') / 'run')
  proc = subprocess.run(TRAIN + [f'--workdir={workdir}'], capture_output=True, text=True,
                        timeout=600, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return workdir


def _truncate_largest_array_file(step_dir):
  data = os.path.join(step_dir, 'state', 'ocdbt.process_0', 'd')
  largest = max((os.path.join(data, n) for n in os.listdir(data)), key=os.path.getsize)
  with open(largest, 'r+b') as f:
    f.truncate(100)


def _overwrite_metadata(step_dir):
  with open(os.path.join(step_dir, 'state', '_METADATA'), 'w') as f:
    f.write('garbage')


@pytest.mark.parametrize('corrupt', [_truncate_largest_array_file, _overwrite_metadata])
def test_a_corrupt_checkpoint_fails_in_one_line_and_changes_nothing(trained, tmp_path,
                                                                     corrupt):
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained, workdir)
  corrupt(os.path.join(workdir, 'checkpoints', '4'))
  before = _files(workdir)
  for cmd in (TRAIN + ['--gin_bindings=TRAIN_STEPS = 8', f'--workdir={workdir}'],
              [sys.executable, os.path.join(REPO, 'experiments', 'generate.py'),
               f'--workdir={workdir}', '--prompt=def']):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert len(lines) == 1, lines[:20]
    assert f'checkpoint 4 in {workdir}/checkpoints cannot be read' in lines[0]
    assert _files(workdir) == before
