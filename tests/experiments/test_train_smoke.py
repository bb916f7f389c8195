"""The real entry point: a 2-step run of `python -m research.train` (experiments/train.py
is the same command line), and its start-up failures."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = 'gin_configs/runs/tiny.gin'


def _train(*args, module=False, env=None):
  entry = ['-m', 'research.train'] if module else ['experiments/train.py']
  return subprocess.run([sys.executable, *entry, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


def test_two_step_run_of_tiny_gin(tmp_path):
  workdir = str(tmp_path / 'run')
  # Two host devices and a 2-way tensor axis that does not divide the vocabulary (385): the
  # embedding is replicated, and the INFO line saying so (memory!) shows by default.
  env = dict(os.environ, XLA_FLAGS=os.environ.get('XLA_FLAGS', '')
             + ' --xla_force_host_platform_device_count=2')
  proc = _train(f'--gin_file={TINY}', f'--workdir={workdir}',
                '--gin_bindings=TRAIN_STEPS = 2', '--gin_bindings=BATCH_SIZE = 4',
                "--gin_bindings=TASK_FEATURE_LENGTHS = {'targets': 32}",
                '--gin_bindings=trainer.train.eval_every = 2',
                '--gin_bindings=trainer.train.eval_batches = 1',
                '--gin_bindings=trainer.train.log_every = 1',
                '--gin_bindings=MeshConfig.tensor = 2',
                '--gin_bindings=TransformerConfig.vocab_size = 385', module=True, env=env)
  assert proc.returncode == 0, proc.stderr
  assert 'step 2/2' in proc.stderr  # the progress line
  assert ('replicating dim 0 (size 385) of parameter: not divisible by tensor=2'
          in proc.stderr), proc.stderr
  assert f'done at step 2; run directory {workdir}' in proc.stderr
  assert 'orbax' not in proc.stderr  # other libraries' INFO lines stay hidden
  for name in ('config.gin', 'run_info.json', 'metrics.jsonl', 'COMPLETED', 'checkpoints'):
    assert os.path.exists(os.path.join(workdir, name)), name
  rows = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert [r['step'] for r in rows] == [1, 2]
  assert 'eval_loss' in rows[-1] and rows[-1]['tokens'] == 2 * 4 * 32
  info = json.loads(open(os.path.join(workdir, 'run_info.json')).read())
  # tiny.gin is the ~100k-parameter decoder docs/design.md promises.
  assert 80_000 <= info['n_params'] <= 150_000
  assert info['architecture']['family'] == 'decoder'


@pytest.mark.parametrize('args,message,code', [
    (['--bogus_flag=1'], "train.py: error: Unknown command line flag 'bogus_flag'", 2),
    ([f'--gin_file=nope.gin'], "train.py: error: --gin_file 'nope.gin' does not exist", 2),
    ([f'--gin_file={TINY}', '--gin_bindings=NoSuchThing.x = 1'],
     "train.py: error: bad gin config: No configurable matching 'NoSuchThing'.", 2),
    ([f'--gin_file={TINY}', '--gin_bindings=MeshConfig.data = 3'],
     'train.py: error: mesh (data=3, fsdp=1, tensor=1) needs 3 devices but 1 are available',
     1),
    ([f'--gin_file={TINY}', "--gin_bindings=MeshConfig.data = '2'"],
     "train.py: error: mesh (data='2', fsdp=1, tensor=1): axis sizes must be integers", 1),
    ([f'--gin_file={TINY}', '--workdir=/proc/no/such/dir'],
     "train.py: error: --workdir '/proc/no/such/dir' cannot be created", 2),
    ([f'--gin_file={TINY}', "--gin_bindings=TransformerConfig.d_model = 'abc'"],
     "train.py: error: TransformerConfig.d_model must be int, got 'abc'", 2),
    # Numbers that mean nothing at or below zero: trained nothing and exited 0, once.
    ([f'--gin_file={TINY}', '--gin_bindings=TRAIN_STEPS = -5'],
     'train.py: error: train_steps (TRAIN_STEPS) must be positive, got -5', 2),
    ([f'--gin_file={TINY}', '--gin_bindings=BATCH_SIZE = 0'],
     'train.py: error: batch_size (BATCH_SIZE) must be positive, got 0', 2),
    ([f'--gin_file={TINY}', '--gin_bindings=make_schedule.peak = 0'],
     'train.py: error: make_schedule.peak (the learning rate) must be positive, got 0', 2),
])
def test_bad_start_up_fails_with_one_line(tmp_path, args, message, code):
  if not any(a.startswith('--workdir') for a in args):
    args = args + [f'--workdir={tmp_path / "run"}']
  proc = _train(*args)
  assert proc.returncode == code, proc.stderr
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith(message), lines[0]
  assert not os.path.exists(tmp_path / 'run')  # failed before anything was written
