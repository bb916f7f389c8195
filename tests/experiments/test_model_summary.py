"""Smoke test of experiments/model_summary.py, the real entry point, in a subprocess."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args):
  return subprocess.run([sys.executable, 'experiments/model_summary.py', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def test_summary_of_a_llama_config():
  out = _run('--gin_file=gin_configs/models/llama.gin', '--seq_len=16', '--gin_bindings',
             'TransformerConfig.d_model = 32', '--gin_bindings',
             'TransformerConfig.num_kv_heads = 2')
  assert out.returncode == 0, out.stderr
  assert 'params: total=' in out.stdout
  assert 'finite=True' in out.stdout


@pytest.mark.parametrize('binding, message', [
    ('TransformerConfig.num_heads = 3', 'num_heads=3 does not divide'),
    ('TransformerConfig.bogus = 3', "doesn't have a parameter named 'bogus'"),
    ("TransformerConfig.position = 'xpos'", 'TransformerConfig.position'),
    ('TransformerConfig.d_model = ', 'Unable to parse value'),
])
def test_bad_binding_fails_with_one_line(binding, message):
  out = _run('--gin_bindings', binding)
  assert out.returncode != 0
  errors = [l for l in out.stderr.splitlines() if l.startswith('model_summary.py: error:')]
  assert len(errors) == 1 and message in errors[0], out.stderr
