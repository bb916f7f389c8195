"""The real entry point: a 2-step run of experiments/train.py, and its start-up failures."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = 'gin_configs/runs/tiny.gin'


def _train(*args):
  return subprocess.run([sys.executable, 'experiments/train.py', *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


def test_two_step_run_of_tiny_gin(tmp_path):
  workdir = str(tmp_path / 'run')
  proc = _train(f'--gin_file={TINY}', f'--workdir={workdir}',
                '--gin_bindings=TRAIN_STEPS = 2', '--gin_bindings=BATCH_SIZE = 4',
                "--gin_bindings=TASK_FEATURE_LENGTHS = {'targets': 32}",
                '--gin_bindings=trainer.train.eval_every = 2',
                '--gin_bindings=trainer.train.eval_batches = 1',
                '--gin_bindings=trainer.train.log_every = 1')
  assert proc.returncode == 0, proc.stderr
  assert 'step 2/2' in proc.stderr  # the progress line
  for name in ('config.gin', 'run_info.json', 'metrics.jsonl', 'COMPLETED', 'checkpoints'):
    assert os.path.exists(os.path.join(workdir, name)), name
  rows = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert [r['step'] for r in rows] == [1, 2]
  assert 'eval_loss' in rows[-1] and rows[-1]['tokens'] == 2 * 4 * 32
  info = json.loads(open(os.path.join(workdir, 'run_info.json')).read())
  # tiny.gin is the ~100k-parameter decoder DESIGN.md promises.
  assert 80_000 <= info['n_params'] <= 150_000
  assert info['architecture']['family'] == 'decoder'


@pytest.mark.parametrize('args,message', [
    (['--bogus_flag=1'], "train.py: error: Unknown command line flag 'bogus_flag'"),
    ([f'--gin_file=nope.gin'], "train.py: error: --gin_file 'nope.gin' does not exist"),
    ([f'--gin_file={TINY}', '--gin_bindings=NoSuchThing.x = 1'],
     "train.py: error: bad gin config: No configurable matching 'NoSuchThing'."),
    ([f'--gin_file={TINY}', '--gin_bindings=MeshConfig.data = 3'],
     'train.py: error: mesh (data=3, fsdp=1, tensor=1) needs 3 devices but 1 are available'),
    ([f'--gin_file={TINY}', "--gin_bindings=MeshConfig.data = '2'"],
     "train.py: error: mesh (data='2', fsdp=1, tensor=1): axis sizes must be integers"),
    ([f'--gin_file={TINY}', '--workdir=/proc/no/such/dir'], 'train.py: error: --workdir'),
    ([f'--gin_file={TINY}', "--gin_bindings=TransformerConfig.d_model = 'abc'"],
     "train.py: error: TransformerConfig.d_model must be int, got 'abc'"),
])
def test_bad_start_up_fails_with_one_line(tmp_path, args, message):
  if not any(a.startswith('--workdir') for a in args):
    args = args + [f'--workdir={tmp_path / "run"}']
  proc = _train(*args)
  assert proc.returncode != 0
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith(message), lines[0]
  assert not os.path.exists(tmp_path / 'run' / 'checkpoints')  # failed before any work
  if 'workdir' not in message:  # found before the run directory is made
    assert not os.path.exists(tmp_path / 'run')
