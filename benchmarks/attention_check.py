r"""Checks and times the attention implementations against the fp32 reference.

  python benchmarks/attention_check.py [--impls=cudnn,blocked,einsum] [--length=1024]

For each mask kind (one causal sequence per row; two packed causal sequences with
padding; bidirectional with segments; a prefix-LM prefix; a causal sliding window of a
quarter of the length, which 'cudnn' passes to cuDNN as local_window_size) it compares every
implementation's output and q/k/v gradients, computed on bf16 inputs (fp32 on CPU),
with `einsum_attention` on the same inputs upcast to fp32: ||out - ref|| / ||ref|| over
rows that attend to something. Then it times forward + backward of each. On a GPU,
'cudnn' must show cuDNN's fused attention call in its compiled HLO. Exits 1 if any
relative error exceeds --tolerance or the cuDNN call is missing.
"""
import functools
import sys
import time

from absl import flags

from research import cli

_IMPLS = flags.DEFINE_list('impls', ['cudnn', 'blocked', 'einsum'], 'Implementations.')
_BATCH = flags.DEFINE_integer('batch', 2, 'Rows.')
_LENGTH = flags.DEFINE_integer('length', 1024, 'Sequence length.')
_HEADS = flags.DEFINE_integer('heads', 16, 'Query heads.')
_KV_HEADS = flags.DEFINE_integer('kv_heads', 4, 'Key/value heads.')
_HEAD_DIM = flags.DEFINE_integer('head_dim', 64, 'Dimensions per head.')
_TOLERANCE = flags.DEFINE_float('tolerance', 2e-2, 'Largest relative error allowed.')
_REPEATS = flags.DEFINE_integer('repeats', 10, 'Timed forward + backward passes.')


def _masks(b: int, t: int):
  """{kind: (mask [b, 1, t, t], valid query rows [b, t], {'window': W} or {})}."""
  import jax.numpy as jnp
  from research.models import attention
  index = jnp.broadcast_to(jnp.arange(t), (b, t))
  ones = jnp.ones((b, t), jnp.int32)
  cut, pad = t // 3, t - t // 8
  packed = jnp.where(index < cut, 1, jnp.where(index < pad, 2, 0))
  prefix = index < t // 4
  kinds = {
      'causal': (ones, True, None, None),
      'packed_causal': (packed, True, None, None),
      'bidirectional': (packed, False, None, None),
      'prefix_lm': (ones, True, prefix, None),
      'sliding_window': (ones, True, None, t // 4),
  }
  out = {}
  for kind, (seg, causal, pre, window) in kinds.items():
    mask = attention.make_mask(seg, seg, causal=causal, q_index=index, k_index=index,
                               q_prefix=pre, k_prefix=pre, window=window)
    out[kind] = (mask, seg != 0, {} if window is None else {'window': window})
  return out


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  import numpy as np
  from research import cli
  from research.models import attention
  try:
    impls = {name: attention.implementation(name) for name in _IMPLS.value}
  except ValueError as e:
    cli.usage_error('attention_check.py', f'--impls: {e}')
  b, t, h, g, d = (_BATCH.value, _LENGTH.value, _HEADS.value, _KV_HEADS.value,
                   _HEAD_DIM.value)
  dtype = jnp.bfloat16 if jax.default_backend() == 'gpu' else jnp.float32
  print(f'{jax.devices()[0].device_kind}: batch {b}, length {t}, heads {h}/{g}, '
        f'head dim {d}, {jnp.dtype(dtype).name}')
  scale = d ** -0.5
  rng = np.random.default_rng(0)
  failed = False
  rows = []
  for kind, (mask, valid, window) in _masks(b, t).items():
    q, k, v, cot = (jnp.asarray(rng.standard_normal(shape), jnp.float32) for shape in
                    ((b, t, h, d), (b, t, g, d), (b, t, g, d), (b, t, h, d)))
    cot = cot * valid[:, :, None, None]  # padding rows' outputs are not compared

    # mask and cotangent are arguments, not constants, or XLA folds the attention.
    def loss(fn, q, k, v, mask, cot, window=window):
      return jnp.sum(fn(q, k, v, mask, None, scale, **window).astype(jnp.float32) * cot)

    ref = jax.jit(jax.value_and_grad(functools.partial(loss, attention.einsum_attention),
                                     argnums=(0, 1, 2)))
    ref_out = attention.einsum_attention(q, k, v, mask, None, scale) * valid[..., None, None]
    _, ref_grads = ref(q, k, v, mask, cot)
    for impl, fn in impls.items():
      low = [x.astype(dtype) for x in (q, k, v)] + [mask, cot]
      out = jax.jit(lambda q, k, v, mask, fn=fn, window=window: fn(
          q, k, v, mask, None, scale, **window))(*low[:4])
      out = out.astype(jnp.float32) * valid[..., None, None]
      step = jax.jit(jax.value_and_grad(functools.partial(loss, fn), argnums=(0, 1, 2)))
      _, grads = step(*low)
      errors = [float(jnp.linalg.norm(x.astype(jnp.float32) - r) / jnp.linalg.norm(r))
                for x, r in zip((out,) + tuple(grads), (ref_out,) + tuple(ref_grads))]
      hlo = step.lower(*low).compile().as_text()
      fused = 'cudnn$fmha' in hlo or '__cudnn$fmha' in hlo
      step(*low)[0].block_until_ready()
      start = time.perf_counter()
      for _ in range(_REPEATS.value):
        result = step(*low)
      jax.block_until_ready(result)
      ms = 1e3 * (time.perf_counter() - start) / _REPEATS.value
      bad = max(errors) > _TOLERANCE.value or not np.all(np.isfinite(errors))
      if impl == 'cudnn' and jax.default_backend() == 'gpu' and not fused:
        bad = True
      failed |= bad
      rows.append((kind, impl, errors, fused, ms, bad))
  print(f'{"mask":<14} {"impl":<8} {"out":>8} {"dq":>8} {"dk":>8} {"dv":>8} '
        f'{"cuDNN":>5} {"fwd+bwd ms":>10}')
  for kind, impl, errors, fused, ms, bad in rows:
    print(f'{kind:<14} {impl:<8} ' + ' '.join(f'{e:8.1e}' for e in errors)
          + f' {"yes" if fused else "no":>5} {ms:10.2f}' + ('  FAIL' if bad else ''))
  sys.exit(1 if failed else 0)


if __name__ == '__main__':
  cli.run(main, 'attention_check.py')
