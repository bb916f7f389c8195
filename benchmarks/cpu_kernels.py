r"""The CPU benchmark model's building blocks alone, jitted JAX against eager PyTorch.

  python benchmarks/cpu_kernels.py [--rows=4096] [--width=256] [--hidden=1024]

Times LayerNorm, tanh-GELU, the MLP's first matmul ([rows, width] x [width, hidden]) and
causal self-attention (the model's `cpu_attention.blocked_attention` on a causal mask known
at trace time, against `scaled_dot_product_attention(is_causal=True)`), forward and forward +
backward, at the shapes of gin_configs/runs/bench_gpt2_cpu.gin (batch 16 x context 256 =
4096 rows, 4 heads of 64), so a gap in benchmarks/train_step.py --torch can be traced to the
kernels or to what lies between them. Medians of --repeats calls; every JAX case runs
before every torch one (each framework's idle threads spin while the other works).

A second table times the three products of each of the model's dense layers on their own:
forward x @ w, input gradient dy @ w^T and weight gradient x^T @ dy (XLA:CPU gives a dot
to YNNPACK only when its left operand is row-major and contracted on its last dimension,
xla/backends/cpu/ynn_support.cc, so the weight gradient, which contracts the rows of
both, is an Eigen dot), and, last, the weight gradient as the model computes it on CPU
(`cpu_matmul._weight_grad_cpu`: (dy^T @ x)^T on YNNPACK where the output is no wider than
the input).
"""
import os
import statistics

from absl import flags

from research import cli
from research import timing

_ROWS = flags.DEFINE_integer('rows', 4096, 'Rows (tokens).')
_WIDTH = flags.DEFINE_integer('width', 256, 'Model width.')
_HIDDEN = flags.DEFINE_integer('hidden', 1024, 'MLP hidden width.')
_CONTEXT = flags.DEFINE_integer('context', 256, 'Attention: rows per sequence.')
_HEADS = flags.DEFINE_integer('heads', 4, 'Attention heads (width / heads per head).')
_REPEATS = flags.DEFINE_integer('repeats', 20, 'Timed calls.')


def _time(fn, repeats: int) -> float:
  """Median milliseconds per call after two warm-up calls."""
  return 1e3 * statistics.median(timing.call_seconds(fn, repeats, warmup=2))


def main(argv):
  del argv
  from research.parallel import host
  host.tune_allocator()  # as in the trainer: XLA's temporaries stay mapped
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
  from research.models.kernels import cpu_attention
  context, heads = _CONTEXT.value, _HEADS.value
  qkv = [rng.standard_normal((rows // context, context, heads, width // heads), np.float32)
         for _ in range(3)]
  causal = np.tril(np.ones((context, context), bool))[None, None].repeat(rows // context, 0)
  scale = (width // heads) ** -0.5

  def blocked(q, k, v, mask):  # the mask an input, as in the model (not a constant)
    return cpu_attention.blocked_attention(q, k, v, mask, scale, lower_triangular=True)
  qkv_t = [torch.tensor(a.transpose(0, 2, 1, 3).copy(), requires_grad=True) for a in qkv]

  # name: (jax function, its inputs, torch forward); the backward of each is driven by
  # sum(output * an input), so that no framework can simplify it away (the gradient of a
  # plain sum(x @ w) needs no matmul); boolean inputs (the mask) are not differentiated.
  cases = [
      ('layernorm', lambda p, x: norm.apply(p, x) * x, (norm_params, x),
       lambda: torch_norm(xt) * xt),
      ('gelu (tanh)', lambda h: jax.nn.gelu(h, approximate=True) * h, (h,),
       lambda: F.gelu(ht, approximate='tanh') * ht),
      (f'matmul {rows}x{width}x{hidden}', lambda x, w, h: (x @ w) * h, (x, w, h),
       lambda: (xt @ wt) * ht),
      (f'causal attention {context}', lambda q, k, v, m: blocked(q, k, v, m) * q,
       (*qkv, causal),
       lambda: F.scaled_dot_product_attention(*qkv_t, is_causal=True) * qkv_t[0]),
  ]
  jax_ms = {}
  for name, fn, args, _ in cases:
    # On the device beforehand: a numpy argument is copied in on every call (JAX reuses
    # host memory only at 64-byte alignment), which torch's prebuilt tensors never pay.
    args = jax.device_put(args)
    fwd = jax.jit(fn)
    diff = tuple(i for i, a in enumerate(args) if not hasattr(a, 'dtype') or a.dtype != bool)
    fwd_bwd = jax.jit(jax.grad(lambda *a, fn=fn: jnp.sum(fn(*a)), argnums=diff))
    jax_ms[name] = (_time(lambda: jax.block_until_ready(fwd(*args)), _REPEATS.value),
                    _time(lambda: jax.block_until_ready(fwd_bwd(*args)), _REPEATS.value))
  print(f'{"op":<24} {"jax fwd":>9} {"torch fwd":>9} {"jax f+b":>9} {"torch f+b":>9}  (ms)')
  for name, _, _, torch_fn in cases:
    with torch.no_grad():
      torch_fwd = _time(torch_fn, _REPEATS.value)
    torch_fb = _time(lambda: torch_fn().sum().backward(), _REPEATS.value)
    jax_fwd, jax_fb = jax_ms[name]
    print(f'{name:<24} {jax_fwd:9.2f} {torch_fwd:9.2f} {jax_fb:9.2f} {torch_fb:9.2f}')
  print(f'matmul: {2 * rows * width * hidden / 1e9:.2f} GFLOP forward')

  # The dense layers' three products (jax, then torch), at the model's shapes: q/k/v
  # (width -> 3 width), attention output, MLP in and out.
  dense = [(width, 3 * width), (width, width), (width, hidden), (hidden, width)]
  products = {'x @ w': lambda x, w, dy: x @ w, 'dy @ w^T': lambda x, w, dy: dy @ w.T,
              'x^T @ dy': lambda x, w, dy: x.T @ dy}
  arrays = [tuple(rng.standard_normal(s, np.float32) for s in ((rows, i), (i, o), (rows, o)))
            for i, o in dense]
  jax_dots = [[_time(lambda f=jax.jit(f), a=jax.device_put(a): jax.block_until_ready(f(*a)),
                     _REPEATS.value) for f in products.values()] for a in arrays]
  # The weight gradient as the model computes it on CPU (cpu_matmul._weight_grad_cpu).
  from research.models.kernels import cpu_matmul
  weight_grad = jax.jit(cpu_matmul._weight_grad_cpu)  # pylint: disable=protected-access
  model_dw = [_time(lambda a=jax.device_put((a[0], a[2])): jax.block_until_ready(
                        weight_grad(*a)),
                    _REPEATS.value) for a in arrays]
  print(f'{"dense layer":<24} ' + ' '.join(f'{p:>19}' for p in products)
        + '  model dW  (ms, jax / torch; model dW: jax)')
  for (i, o), a, jax_row, dw in zip(dense, arrays, jax_dots, model_dw):
    with torch.no_grad():
      t = [torch.tensor(v) for v in a]
      torch_row = [_time(lambda f=f: f(*t), _REPEATS.value) for f in products.values()]
    print(f'{f"{rows}x{i} -> {o}":<24} ' + ' '.join(
        f'{j:9.2f} / {k:7.2f}' for j, k in zip(jax_row, torch_row)) + f' {dw:9.2f}')


if __name__ == '__main__':
  cli.run(main, 'cpu_kernels.py')
