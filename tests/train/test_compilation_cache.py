"""--compilation_cache_dir: a second run of the same model loads programs instead of
compiling them."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _train(workdir, cache, steps):
  cmd = [sys.executable, '-m', 'research.train', '--gin_file=gin_configs/runs/tiny.gin',
         f'--workdir={workdir}', f'--compilation_cache_dir={cache}',
         f'--gin_bindings=TRAIN_STEPS = {steps}', '--gin_bindings=TransformerConfig.d_model = 16',
         '--gin_bindings=TransformerConfig.d_ff = 32', '--gin_bindings=trainer.train.eval_batches = 1']
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return set(os.listdir(cache))


def test_second_run_of_one_shape_reuses_the_cache(tmp_path):
  cache = tmp_path / 'cache'
  first = _train(tmp_path / "a", cache, 40)
  assert any(name.startswith('jit_') for name in first)
  # Another step count: another schedule, so another train step; init and eval are shared.
  second = _train(tmp_path / "b", cache, 60)
  added = second - first
  assert 0 < len(added) < len(first) / 2
