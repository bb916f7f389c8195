r"""The CPU benchmark model's building blocks alone, jitted JAX against eager PyTorch.

  python benchmarks/cpu_kernels.py [--rows=4096] [--width=256] [--hidden=1024]

Times LayerNorm, tanh-GELU and the MLP's first matmul ([rows, width] x [width, hidden]),
forward and forward + backward, at the shapes of gin_configs/runs/bench_gpt2_cpu.gin (batch
16 x context 256 = 4096 rows), so a gap in benchmarks/train_step.py --torch can be traced
to the kernels or to what lies between them.
"""
import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_ROWS = flags.DEFINE_integer('rows', 4096, 'Rows (tokens).')
_WIDTH = flags.DEFINE_integer('width', 256, 'Model width.')
_HIDDEN = flags.DEFINE_integer('hidden', 1024, 'MLP hidden width.')
_REPEATS = flags.DEFINE_integer('repeats', 20, 'Timed calls.')


def _time(fn, repeats: int) -> float:
  fn()
  start = time.perf_counter()
  for _ in range(repeats):
    fn()
  return 1e3 * (time.perf_counter() - start) / repeats


def main(argv):
  del argv
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch
  import torch.nn.functional as F
  torch.set_num_threads(os.cpu_count())
  rows, width, hidden = _ROWS.value, _WIDTH.value, _HIDDEN.value
  rng = np.random.default_rng(0)
  x = rng.standard_normal((rows, width), np.float32)
  h = rng.standard_normal((rows, hidden), np.float32)
  w = (rng.standard_normal((width, hidden)) * 0.05).astype(np.float32)
  norm = nn.LayerNorm(epsilon=1e-5)  # the model's LayerNorm (research/models/layers.py)
  norm_params = norm.init(jax.random.PRNGKey(0), x)
  xt, ht, wt = (torch.tensor(a, requires_grad=True) for a in (x, h, w))
  torch_norm = torch.nn.LayerNorm(width, eps=1e-5)

  # name: (jax function of its differentiated inputs, those inputs, torch forward); the
  # backward of each is driven by sum(output * input) (sum(output) for the matmul).
  cases = [
      ('layernorm', lambda p, x: norm.apply(p, x) * x, (norm_params, x),
       lambda: torch_norm(xt) * xt),
      ('gelu (tanh)', lambda h: jax.nn.gelu(h, approximate=True) * h, (h,),
       lambda: F.gelu(ht, approximate='tanh') * ht),
      (f'matmul {rows}x{width}x{hidden}', lambda x, w: x @ w, (x, w), lambda: xt @ wt),
  ]
  print(f'{"op":<24} {"jax fwd":>9} {"torch fwd":>9} {"jax f+b":>9} {"torch f+b":>9}  (ms)')
  for name, fn, args, torch_fn in cases:
    fwd = jax.jit(fn)
    fwd_bwd = jax.jit(jax.grad(lambda *a, fn=fn: jnp.sum(fn(*a)), argnums=tuple(range(len(args)))))
    jax_fwd = _time(lambda: jax.block_until_ready(fwd(*args)), _REPEATS.value)
    jax_fb = _time(lambda: jax.block_until_ready(fwd_bwd(*args)), _REPEATS.value)
    with torch.no_grad():
      torch_fwd = _time(torch_fn, _REPEATS.value)
    torch_fb = _time(lambda: torch_fn().sum().backward(), _REPEATS.value)
    print(f'{name:<24} {jax_fwd:9.2f} {torch_fwd:9.2f} {jax_fb:9.2f} {torch_fb:9.2f}')
  print(f'matmul: {2 * rows * width * hidden / 1e9:.2f} GFLOP forward')


if __name__ == '__main__':
  app.run(main)
