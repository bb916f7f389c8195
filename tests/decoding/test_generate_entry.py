"""The generate command line (experiments/generate.py) and decoding.load_run on a run directory.

The run directory is written here in the trainer's layout (research/train/
checkpoints.py: orbax items `state` with the params and `host` JSON, and the
operative config.gin), without running the trainer; the slow test runs the
real trainer for a few steps first.
"""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from research import decoding
from research.decoding import loading
from tests.decoding import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = dict(vocab_size=384, d_model=32, num_layers=1, num_heads=2, d_ff=64, max_length=64,
             num_kv_heads=1)
CONFIG_GIN = """
# Parameters for train (a configurable generate.py never imports):
train.model_config = @TransformerConfig()
train.train_steps = 7
# Parameters for TransformerConfig:
TransformerConfig.family = 'decoder'
TransformerConfig.vocab_size = 384
TransformerConfig.d_model = 32
TransformerConfig.num_layers = 1
TransformerConfig.num_heads = 2
TransformerConfig.num_kv_heads = 1
TransformerConfig.d_ff = 64
TransformerConfig.max_length = 64
"""


def write_run(workdir, params, steps=(3, 7)):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.gin'), 'w') as f:
    f.write(CONFIG_GIN)
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'),
                                  item_names=('state', 'host'))
  for step in steps:
    state = {'step': jnp.asarray(step), 'params': jax.tree.map(lambda x: x * step, params),
             'opt_state': {'mu': params}}
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               host=ocp.args.JsonSave({'batches': step})))
  manager.wait_until_finished()
  manager.close()


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  config, params = helpers.tiny_model(**MODEL)
  workdir = str(tmp_path_factory.mktemp('run'))
  write_run(workdir, params)
  return workdir, config, params


def test_load_run_restores_latest_params_and_config(run_dir):
  workdir, config, params = run_dir
  loaded_config, loaded, step = decoding.load_run(workdir)
  assert step == 7 and loaded_config == config.replace(init_std=0.02)  # gin's default
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, 7 * b), loaded, params)
  _, earlier, _ = decoding.load_run(workdir, step=3)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, 3 * b), earlier, params)
  # gin is left clean for whoever parses next.
  assert decoding.DecodeConfig() == decoding.DecodeConfig(strategy='greedy')


def test_load_run_rejects_mismatched_shapes(run_dir):
  workdir, config, _ = run_dir
  _, params, _ = decoding.load_run(workdir)
  with pytest.raises(decoding.DecodingError, match='has shape'):
    loading.check_params(config.replace(d_ff=128), params)
  with pytest.raises(decoding.DecodingError, match='no checkpoint at step 5'):
    loading.restore_params(workdir, step=5)


def _generate(*args):
  return subprocess.run([sys.executable, os.path.join(REPO, 'experiments', 'generate.py'),
                         *args], capture_output=True, text=True, cwd=REPO, timeout=300)


def test_generate_batch_mode_writes_json_lines(run_dir, tmp_path):
  workdir, config, _ = run_dir
  prompts = tmp_path / 'prompts.txt'
  prompts.write_text('def f(x):\nimport os\n')
  output = tmp_path / 'out.jsonl'
  result = _generate(f'--workdir={workdir}', f'--prompts_file={prompts}', '--prompt=ab',
                     '--strategy=beam', f'--output={output}',
                     '--gin_bindings=DecodeConfig.max_new_tokens=5',
                     '--gin_bindings=DecodeConfig.beam_width=2')
  assert result.returncode == 0, result.stderr[-2000:]
  rows = [json.loads(line) for line in output.read_text().splitlines()]
  assert [r['prompt'] for r in rows] == ['ab', 'def f(x):', 'import os']
  _, params, _ = decoding.load_run(workdir)
  expected = decoding.generate(config, params, [[c + 3 for c in b'ab']],  # byte ids
                               decoding.DecodeConfig(strategy='beam', beam_width=2,
                                                     max_new_tokens=5))
  n = int(expected.lengths[0, 0])
  assert rows[0]['tokens'] == np.asarray(expected.best[0, :n]).tolist()
  assert all(r['step'] == 7 and 1 <= len(r['tokens']) <= 5 for r in rows)


def test_generate_bad_input_fails_with_one_line(run_dir):
  workdir, _, _ = run_dir
  result = _generate(f'--workdir={workdir}', '--prompt=x',
                     '--gin_bindings=DecodeConfig.top_k=0')
  assert result.returncode == 2
  last = result.stderr.strip().splitlines()[-1]
  assert last == ('generate.py: error: DecodeConfig.top_k must be a positive integer (or '
                  'None for off), got 0')


@pytest.mark.slow
def test_generate_on_a_real_training_run(tmp_path):
  workdir = str(tmp_path / 'tiny')
  train = subprocess.run([sys.executable, os.path.join(REPO, 'experiments', 'train.py'),
                          '--gin_file=gin_configs/runs/tiny.gin', f'--workdir={workdir}',
                          '--gin_bindings=TRAIN_STEPS = 2'],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
  assert train.returncode == 0, train.stderr[-2000:]
  result = _generate(f'--workdir={workdir}', '--prompt=Hello', '--strategy=sample',
                     '--gin_bindings=DecodeConfig.max_new_tokens=4')
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.startswith("'Hello' -> ")
