"""Smoke tests of the benchmark scripts the GPU checks run (benchmarks/gpu_check.sh), on
tiny shapes on the CPU, so they do not rot between device sessions."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = '--gin_file=gin_configs/runs/tiny.gin'


def _run(script, *args):
  out = subprocess.run([sys.executable, f'benchmarks/{script}', *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  return out.stdout


def test_train_step_of_the_gpu_config_with_phases_and_one_segment():
  """The 350M GPU config, shrunk: it parses, trains, and reports MFU by every convention
  and the forward / forward + backward split."""
  out = _run('train_step.py', '--gin_file=gin_configs/runs/bench_350m_gpu.gin',
             '--gin_bindings=TransformerConfig.num_layers = 1',
             '--gin_bindings=TransformerConfig.d_model = 64',
             '--gin_bindings=TransformerConfig.num_heads = 4',
             '--gin_bindings=TransformerConfig.vocab_size = 256',
             "--gin_bindings=TASK_FEATURE_LENGTHS = {'targets': 64}",
             '--gin_bindings=BATCH_SIZE = 2', '--steps=1', '--warmup=0', '--phases',
             '--one_segment')
  assert 'dtype bfloat16' in out
  assert re.search(r'^jax   : [\d,]+ tokens/s', out, re.M)
  assert re.search(r'MFU by FLOP convention: 6N [\d.]+%.*chinchilla [\d.]+%', out)
  assert re.search(r'forward [\d.]+ ms, forward\+backward [\d.]+ ms, whole step', out)


def test_attention_check_passes_on_cpu():
  """Off a GPU 'cudnn' is the blocked path; every implementation must match the fp32
  reference on every mask kind (the script exits 1 otherwise)."""
  out = _run('attention_check.py', '--length=64', '--batch=2', '--heads=4', '--kv_heads=2',
             '--head_dim=16', '--repeats=1')
  for kind in ('causal', 'packed_causal', 'bidirectional', 'prefix_lm'):
    assert re.search(rf'^{kind}\s+cudnn\s', out, re.M)
  assert 'FAIL' not in out


def test_cpu_kernels_times_every_kernel_in_both_frameworks():
  out = _run('cpu_kernels.py', '--rows=512', '--width=64', '--hidden=128', '--context=64',
             '--heads=4', '--repeats=2')
  for kernel in ('layernorm', r'gelu \(tanh\)', 'matmul 512x64x128', 'causal attention 64'):
    assert re.search(rf'^{kernel}(\s+[\d.]+){{4}}$', out, re.M), out
  for shape in ('512x64 -> 192', '512x64 -> 64', '512x64 -> 128', '512x128 -> 64'):
    assert re.search(rf'^{shape}(\s+[\d.]+ / +[\d.]+){{3}}\s+[\d.]+$', out, re.M), out


def test_train_step_compares_a_variant_in_turns():
  out = _run('train_step.py', '--gin_file=gin_configs/runs/bench_gpt2_cpu.gin',
             '--gin_bindings=TransformerConfig.num_layers = 1',
             '--gin_bindings=TransformerConfig.d_model = 32',
             "--gin_bindings=TASK_FEATURE_LENGTHS = {'targets': 32}",
             '--gin_bindings=BATCH_SIZE = 2', '--steps=2', '--warmup=0',
             "--compare_bindings=TransformerConfig.activation = 'relu'",
             '--compare_bindings=BATCH_SIZE = 4')
  m = re.search(r"^compare \(in turns, median of 2 steps each\): base ([\d.]+) ms/step, with "
                r"TransformerConfig.activation = 'relu'; BATCH_SIZE = 4 ([\d.]+) ms/step; "
                r"tokens/s variant / base = ([\d.]+)$", out, re.M)
  assert m, out
  base, variant, ratio = map(float, m.groups())
  # The variant's step has twice the tokens (its batch binding took effect); milliseconds
  # are printed to 0.01.
  assert abs(ratio - 2 * base / variant) < 0.02 * ratio


def test_train_step_against_torch_in_rounds():
  """--torch times both frameworks in rounds; the printed ratio is that of the printed
  step times, and each round's ratio is listed."""
  out = _run('train_step.py', '--gin_file=gin_configs/runs/bench_gpt2_cpu.gin',
             '--gin_bindings=TransformerConfig.num_layers = 1',
             '--gin_bindings=TransformerConfig.d_model = 32',
             "--gin_bindings=TASK_FEATURE_LENGTHS = {'targets': 32}",
             '--gin_bindings=BATCH_SIZE = 2', '--steps=3', '--warmup=1', '--torch',
             '--rounds=2')
  jax_ms = float(re.search(r'^jax   : [\d,]+ tokens/s +([\d.]+) ms/step', out, re.M)[1])
  torch_ms = float(re.search(r'^torch : [\d,]+ tokens/s +([\d.]+) ms/step', out, re.M)[1])
  m = re.search(r'^jax / torch = ([\d.]+) \(rounds: ([\d.]+), ([\d.]+)\)$', out, re.M)
  assert m, out
  ratio = torch_ms / jax_ms  # both printed to 0.1 ms, the ratio to 0.001
  assert abs(float(m[1]) - ratio) <= ratio * (0.05 / jax_ms + 0.05 / torch_ms) + 0.0005


def test_profile_train_step_breaks_down_both_frameworks_steps():
  """The JAX step by model component and, with --torch, the eager torch step by kind of op:
  on the GPT-2 CPU config, shrunk, the torch step's matmuls and attention are there and the
  shares add up to 100%."""
  out = _run('profile_train_step.py', '--gin_file=gin_configs/runs/bench_gpt2_cpu.gin',
             '--gin_bindings=TransformerConfig.num_layers = 1',
             '--gin_bindings=TransformerConfig.d_model = 64',
             '--gin_bindings=TransformerConfig.d_ff = 128',
             "--gin_bindings=TASK_FEATURE_LENGTHS = {'targets': 64}",
             '--gin_bindings=BATCH_SIZE = 2', '--trace_steps=2', '--top=3', '--torch')
  assert re.search(r'^mlp/wi +matmul +[\d.]+', out, re.M), out
  torch_part = out[out.index('eager torch step'):]
  assert '(2 profiled steps)' in torch_part
  shares = {m.group(1).strip(): float(m.group(3)) for m in re.finditer(
      r'^([a-z][a-z ]+?) +([\d.]+) +([\d.]+)%$', torch_part, re.M)}
  assert {'matmul', 'attention', 'norm', 'activation', 'optimizer and clipping'} <= set(
      shares), torch_part
  assert abs(sum(shares.values()) - 100) <= 0.6, shares


@pytest.mark.parametrize('script, args, message', [
    ('sweep_cost.py', ['--gin_file=nope.gin'], "--gin_file 'nope.gin' does not exist"),
    ('sweep_cost.py', ['--gin_file=gin_configs/sweeps/ci.gin', '--steps=10'],
     "--steps must be two different positive step counts, got ['10']"),
    ('sweep_cost.py', ['--gin_file=gin_configs/sweeps/ci.gin', '--parallel=0'],
     '--parallel must be positive, got 0'),
    ('profile_train_step.py', [TINY, '--gin_bindings=NoSuch.x = 1'],
     "bad gin config: No configurable matching 'NoSuch'"),
    ('train_step.py', [TINY, '--torch', "--gin_bindings=TransformerConfig.family = 'encoder'"],
     "--torch compares decoder-only models, not 'encoder'"),
    ('train_step.py', [TINY, '--gin_bindings=TransformerConfig.d_modle = 3'],
     "bad gin config: Configurable 'TransformerConfig' doesn't have a parameter named "
     "'d_modle'"),
    ('train_step.py', [TINY, '--gin_bindings=TransformerConfig.d_model = '],
     'bad gin config: Unable to parse'),
    ('train_step.py', [TINY, '--compare_bindings=NoSuch.x = 1'],
     "bad gin config: No configurable matching 'NoSuch'"),
    ('train_step.py', [TINY, '--gin_bindings=MeshConfig.data = 8'],
     'mesh (data=8, fsdp=1, tensor=1) needs 8 devices'),
])
def test_benchmarks_reject_bad_input_at_start_up_in_one_line(script, args, message):
  out = subprocess.run([sys.executable, f'benchmarks/{script}', *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
  lines = (out.stdout + out.stderr).strip().splitlines()
  assert out.returncode == 2 and len(lines) == 1, lines[-20:]
  assert lines[0].startswith(f'{script}: error: {message}'), lines[0]


@pytest.mark.parametrize('args, message', [
    (['--lengths=abc'], "decode.py: error: --lengths takes integers, got 'abc'"),
    (['--lengths='], "decode.py: error: --lengths takes positive integers, got ''"),
    (['--lengths=8,0'], "decode.py: error: --lengths takes positive integers, got '8,0'"),
    (['--output=/no/such/dir/out.json'], 'decode.py: error: --output'),
    (['--output=/tmp'], "decode.py: error: --output '/tmp' is a directory"),
])
def test_decode_rejects_bad_flags_before_any_work(args, message):
  out = subprocess.run([sys.executable, 'benchmarks/decode.py', *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
  lines = (out.stdout + out.stderr).strip().splitlines()
  assert out.returncode == 2 and len(lines) == 1, lines[-20:]  # a wrong command line
  assert lines[0].startswith(message), lines[0]


def test_vmap_step_times_the_three_variants():
  out = _run('vmap_step.py', '--sizes=1x8', '--batch=2', '--models=2', '--calls=1',
             '--rounds=1')
  assert re.search(r'^L1d8 N=\s+3,864\s+one model\s+[\d.]+ ms \(\s*[\d.]+ GFLOP/s useful\)'
                   r'\s+batch x2\s+[\d.]+ ms \(gain [\d.]+x\)\s+vmap x2\s+[\d.]+ ms', out,
                   re.M), out


def test_vmap_step_refuses_a_bad_size():
  out = subprocess.run([sys.executable, 'benchmarks/vmap_step.py', '--sizes=1by8'], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 2 and 'LAYERSxWIDTH' in out.stderr, out.stderr[-500:]
