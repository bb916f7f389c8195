"""Causal attention for training on XLA:CPU: query blocks or tiles, hand-written backwards.

XLA:CPU's autodiff of the einsum reference materializes the fp32 [b, h, q, k] logits and
probabilities and makes about ten elementwise passes over them, forward and backward.
`blocked_attention` does two things about it (benchmarks/profile_train_step.py):
  1. Query block i reads only keys [0, end of block i] when the mask allows nothing above
     the block diagonal (causal attention; checked on the mask at run time unless the
     caller promises it, so packed rows, padding and prefix-LM batches stay exact):
     37.5% fewer logits at 4 blocks.
  2. A hand-written backward (the FlashAttention one: dS = P * (dP - rowsum(dO * O)))
     instead of differentiating max / exp / sum / divide.
Probabilities are kept for the backward (no recompute): memory is not what binds on CPU.
Up to `TILED_MAX_BLOCKS` blocks, and with at least `TILED_MIN_BATCH_HEADS` batch x heads,
the causal case runs as tiles (`_tiled`). Nothing here takes a position bias.
"""
import functools

import jax
import jax.numpy as jnp

from research.models.kernels import NEG_INF

ATTENTION_BLOCK = 64  # query rows per block; at most 16 blocks
# Where tiles beat blocks in the CPU benchmark's train step (docs/performance.md): with
# more tiles, or smaller dots, the extra ops cost more than the copies they save.
TILED_MAX_BLOCKS = 4  # tiles for 2 to 4 blocks ...
TILED_MIN_BATCH_HEADS = 32  # ... where batch x query heads is at least this


def _query_blocks(q_len: int, k_len: int) -> tuple[tuple[int, int, int], ...]:
  """((q_lo, q_hi, k_hi), ...): query block [q_lo, q_hi) may see keys [0, k_hi)."""
  block = max(ATTENTION_BLOCK, -(-q_len // 16))
  if q_len != k_len or q_len % block or q_len == block:
    return ((0, q_len, k_len),)
  return tuple((lo, lo + block, lo + block) for lo in range(0, q_len, block))


def _cpu_barrier(tree):
  """`jax.lax.optimization_barrier` where the default backend is the CPU, else the
  identity (decided at trace time: `lax.platform_dependent` would add a `cond` to the
  jaxpr, and nothing else here should)."""
  return jax.lax.optimization_barrier(tree) if jax.default_backend() == 'cpu' else tree


# Inside, q is [b, g, r, q, d], k and v [b, g, k, d] and the mask [b, 1, 1, q, k]: with
# the batch dimensions leading, every dot reads its operands as they lie. In the
# projections' [b, q, h, d] layout XLA:CPU transposed each block's slices for every dot.
@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _blocked(q, k, v, mask, scale, blocks):
  return _blocked_fwd(q, k, v, mask, scale, blocks)[0]


def _blocked_fwd(q, k, v, mask, scale, blocks):
  # Every block's operands, then every block's logits, pass one optimization barrier on
  # CPU. XLA:CPU runs a dot with batch dimensions on one thread, and its executor keeps a
  # node's successors that become ready one by one on that node's thread, so the blocks'
  # query-key dots ran one after another while other threads idled; ready together, they
  # are dealt to every thread.
  parts = _cpu_barrier([(q[..., lo:hi, :], k[:, :, :k_hi], v[:, :, :k_hi],
                         mask[..., lo:hi, :k_hi]) for lo, hi, k_hi in blocks])
  logits = _cpu_barrier([jnp.einsum('bgrqd,bgkd->bgrqk', qb, kb,
                                    preferred_element_type=jnp.float32) * scale
                         for qb, kb, _, _ in parts])
  outs, probs = [], []
  for (_, _, vb, mb), block_logits in zip(parts, logits):
    p = jax.nn.softmax(jnp.where(mb, block_logits, NEG_INF), axis=-1)
    outs.append(jnp.einsum('bgrqk,bgkd->bgrqd', p.astype(v.dtype), vb))
    probs.append(p)
  out = jnp.concatenate(outs, axis=3)
  return out, (q, k, v, mask, out, probs)


def _blocked_bwd(scale, blocks, residuals, d_out):
  q, k, v, mask, out, probs = residuals
  dq = []
  # dk and dv are accumulated transposed, [b, g, d, k]: as 'bgrqd,bgrqk->bgdk' the dots
  # read the probabilities and ds as they lie and transpose only the [q, d] operand. As
  # 'bgrqk,bgrqd->bgkd', XLA:CPU wrote every block's probabilities and ds once more,
  # transposed.
  dk_t = jnp.zeros((*k.shape[:2], k.shape[3], k.shape[2]), jnp.float32)  # [b, g, d, k]
  dv_t = jnp.zeros_like(dk_t)
  delta = jnp.einsum('bgrqd,bgrqd->bgrq', d_out.astype(jnp.float32), out.astype(jnp.float32))
  for (lo, hi, k_hi), p in zip(blocks, probs):
    do = d_out[..., lo:hi, :]
    dp = jnp.einsum('bgrqd,bgkd->bgrqk', do, v[:, :, :k_hi], preferred_element_type=jnp.float32)
    # Fully masked (padding) rows have uniform p; the reference's gradient is 0 there.
    ds = jnp.where(mask[..., lo:hi, :k_hi], p * (dp - delta[..., lo:hi, None]) * scale, 0.)
    dq.append(jnp.einsum('bgrqk,bgkd->bgrqd', ds.astype(k.dtype), k[:, :, :k_hi]))
    # Each block's product in the input dtype, summed in fp32: XLA:CPU runs these
    # transposed-operand dots as Eigen DotThunks, which have no bf16 x bf16 -> fp32.
    dk_t = dk_t.at[..., :k_hi].add(jnp.einsum('bgrqd,bgrqk->bgdk', q[..., lo:hi, :],
                                              ds.astype(q.dtype)))
    dv_t = dv_t.at[..., :k_hi].add(jnp.einsum('bgrqd,bgrqk->bgdk', do, p.astype(do.dtype)))
  return (jnp.concatenate(dq, axis=3).astype(q.dtype),
          jnp.swapaxes(dk_t, -1, -2).astype(k.dtype),
          jnp.swapaxes(dv_t, -1, -2).astype(v.dtype), None)


_blocked.defvjp(_blocked_fwd, _blocked_bwd)


# Tiles: queries and keys cut into the same blocks, each its own [b, g, (r,) block, d]
# array, and a dot for every (query tile i, key tile j <= i) pair, the softmax spanning a
# query tile's pairs (FlashAttention-2's blocks, each pair kept whole). Every dot reads
# whole tiles, so nothing copies the keys' prefixes out of [b, g, k, d] (the blocked path
# copies 2.5 times k and v at 4 blocks, forward and backward) and dk, dv are plain sums
# over tiles instead of updates of slices; the slicing transposes fuse into one copy per
# tile. More, smaller ops: a win only for few tiles and large enough dots (the limits
# above; the batch is the traced one, so under data parallelism a device's share).
@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _tiled(q_tiles, k_tiles, v_tiles, masks, scale):
  return _tiled_fwd(q_tiles, k_tiles, v_tiles, masks, scale)[0]


def _tiled_fwd(q_tiles, k_tiles, v_tiles, masks, scale):
  outs, probs = [], []
  for i, qi in enumerate(q_tiles):
    logits = [jnp.where(masks[i][j], jnp.einsum('bgrqd,bgkd->bgrqk', qi, k_tiles[j],
                                                preferred_element_type=jnp.float32) * scale,
                        NEG_INF) for j in range(i + 1)]
    top = functools.reduce(jnp.maximum, [jnp.max(x, -1, keepdims=True) for x in logits])
    exps = [jnp.exp(x - top) for x in logits]
    total = functools.reduce(jnp.add, [jnp.sum(e, -1, keepdims=True) for e in exps])
    p = [e / total for e in exps]
    outs.append(_sum_f32(jnp.einsum('bgrqk,bgkd->bgrqd', pj.astype(v_tiles[j].dtype),
                                    v_tiles[j]) for j, pj in enumerate(p)).astype(qi.dtype))
    probs.append(p)
  return outs, (q_tiles, k_tiles, v_tiles, masks, outs, probs)


def _tiled_bwd(scale, residuals, d_outs):
  q_tiles, k_tiles, v_tiles, masks, outs, probs = residuals
  n = len(q_tiles)
  dq, dk_t, dv_t = [[] for _ in range(n)], [[] for _ in range(n)], [[] for _ in range(n)]
  for i, (qi, do) in enumerate(zip(q_tiles, d_outs)):
    delta = jnp.einsum('bgrqd,bgrqd->bgrq', do.astype(jnp.float32),
                       outs[i].astype(jnp.float32))[..., None]
    for j in range(i + 1):
      p = probs[i][j]
      dp = jnp.einsum('bgrqd,bgkd->bgrqk', do, v_tiles[j], preferred_element_type=jnp.float32)
      # Fully masked (padding) rows have uniform p; the reference's gradient is 0 there.
      ds = jnp.where(masks[i][j], p * (dp - delta) * scale, 0.)
      dq[i].append(jnp.einsum('bgrqk,bgkd->bgrqd', ds.astype(k_tiles[j].dtype), k_tiles[j]))
      # dk and dv transposed, [b, g, d, k], as in `_blocked_bwd`.
      dk_t[j].append(jnp.einsum('bgrqd,bgrqk->bgdk', qi, ds.astype(qi.dtype)))
      dv_t[j].append(jnp.einsum('bgrqd,bgrqk->bgdk', do, p.astype(do.dtype)))
  return ([_sum_f32(x).astype(q.dtype) for x, q in zip(dq, q_tiles)],
          [jnp.swapaxes(_sum_f32(x), -1, -2).astype(k.dtype) for x, k in zip(dk_t, k_tiles)],
          [jnp.swapaxes(_sum_f32(x), -1, -2).astype(v.dtype) for x, v in zip(dv_t, v_tiles)],
          None)


_tiled.defvjp(_tiled_fwd, _tiled_bwd)


def _sum_f32(xs):
  """Sum of same-shaped arrays in fp32 (bf16 products summed without rounding between)."""
  return functools.reduce(jnp.add, [x.astype(jnp.float32) for x in xs])


def _tiled_attention(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, scale, blocks):
  """Causal self-attention over the tiles `blocks` (each (lo, hi, hi)), [b, q, h, d]."""
  b, _, h, d = q_bqhd.shape
  g = k_bkgd.shape[2]
  tiles = [(lo, hi) for lo, hi, _ in blocks]
  q_tiles = [q_bqhd[:, lo:hi].reshape(b, hi - lo, g, h // g, d).transpose(0, 2, 3, 1, 4)
             for lo, hi in tiles]
  k_tiles, v_tiles = ([x[:, lo:hi].transpose(0, 2, 1, 3) for lo, hi in tiles]
                      for x in (k_bkgd, v_bkgd))
  masks = [[mask_b1qk[:, :, None, q_lo:q_hi, k_lo:k_hi] for k_lo, k_hi in tiles[:i + 1]]
           for i, (q_lo, q_hi) in enumerate(tiles)]
  outs = _tiled(q_tiles, k_tiles, v_tiles, masks, scale)
  return jnp.concatenate([o.transpose(0, 3, 1, 2, 4).reshape(b, -1, h, d) for o in outs],
                         axis=1)


def _blocked_attention(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, scale, blocks):
  """`_blocked` in its [b, g, r, q, d] layout, from and back to [b, q, h, d]."""
  b, q_len, h, d = q_bqhd.shape
  g = k_bkgd.shape[2]
  q = q_bqhd.reshape(b, q_len, g, h // g, d).transpose(0, 2, 3, 1, 4)
  k, v = k_bkgd.transpose(0, 2, 1, 3), v_bkgd.transpose(0, 2, 1, 3)
  out = _blocked(q, k, v, mask_b1qk[:, :, None], scale, blocks)
  return out.transpose(0, 3, 1, 2, 4).reshape(b, q_len, h, d)


def blocked_attention(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, scale, lower_triangular=False,
                      window=None):
  """softmax(q k^T * scale) v under the mask, [b, q, h, d], as the einsum reference on
  every row that attends to something (a fully masked padding row averages fewer values),
  faster to train on CPU; blocks run as tiles where `TILED_MAX_BLOCKS` and
  `TILED_MIN_BATCH_HEADS` allow. With `lower_triangular` (the caller's promise that the
  mask allows nothing above the diagonal) the blocks are used without checking the mask
  at run time (the check is a `lax.cond`, 10-15% of the attention's fwd+bwd at the CPU
  benchmark's shape). A sliding window is honoured through the mask (`window` is not
  used to skip blocks: every block below the diagonal is still computed)."""
  del window
  q_len, k_len = q_bqhd.shape[1], k_bkgd.shape[1]
  blocks = _query_blocks(q_len, k_len)
  batch_heads = q_bqhd.shape[0] * q_bqhd.shape[2]

  def run(blocks):
    if 1 < len(blocks) <= TILED_MAX_BLOCKS and batch_heads >= TILED_MIN_BATCH_HEADS:
      return lambda q, k, v, mask: _tiled_attention(q, k, v, mask, scale, blocks)
    return lambda q, k, v, mask: _blocked_attention(q, k, v, mask, scale, blocks)

  if len(blocks) == 1 or lower_triangular:
    return run(blocks)(q_bqhd, k_bkgd, v_bkgd, mask_b1qk)
  # blocks only where the mask has nothing above the block diagonal (e.g. a prefix)
  above = jnp.arange(k_len)[None, :] >= jnp.array(
      [hi for _, hi, _ in blocks]).repeat(blocks[0][1] - blocks[0][0])[:, None]
  return jax.lax.cond(jnp.any(mask_b1qk & above), run(((0, q_len, k_len),)), run(blocks),
                      q_bqhd, k_bkgd, v_bkgd, mask_b1qk)
