"""Multi-head / grouped-query / multi-query attention with masks and a KV cache.

The mask is a function of per-token metadata only (segment id, index, prefix
flag), so training (packed rows), prefix-LM and cached decoding share one
code path: cached keys keep their metadata beside them.
"""
import functools
from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.models import axes
from research.models import layers
from research.models.config import TransformerConfig

NEG_INF = -1e10  # finite, so fully masked (padding) rows stay NaN-free


class SeqInfo(NamedTuple):
  """Per-token metadata of one side of an attention: [batch, length] arrays."""
  segment_ids: jax.Array  # 0 = padding
  positions: jax.Array
  prefix: Optional[jax.Array] = None  # bool: bidirectional prefix (prefix LM)


def make_mask(q_seg, k_seg, *, causal: bool, q_index=None, k_index=None,
              q_prefix=None, k_prefix=None):
  """Boolean mask [batch, 1, q, k]: same non-padding segment, and for causal
  attention key index <= query index unless both tokens lie in the prefix."""
  mask = ((q_seg[:, :, None] == k_seg[:, None, :])
          & (q_seg[:, :, None] != 0) & (k_seg[:, None, :] != 0))
  if causal:
    allowed = k_index[:, None, :] <= q_index[:, :, None]
    if q_prefix is not None:
      allowed |= q_prefix[:, :, None] & k_prefix[:, None, :]
    mask &= allowed
  return mask[:, None]


def einsum_attention(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, bias_bhqk, scale,
                     lower_triangular=False):
  """The plain reference: softmax(q k^T * scale + bias) v in fp32, with query
  head h = g * (H // G) + r reading key/value head g (HF's repeat_kv order).

  Every implementation takes `lower_triangular`: the caller's promise that the mask allows
  nothing above the diagonal (causal self-attention without a prefix), which `blocked`
  uses to skip its run-time check; the others ignore it."""
  del lower_triangular
  return attention_over_parts(q_bqhd, [(k_bkgd, v_bkgd, mask_b1qk, bias_bhqk)], scale)


def _probs_over_parts(q_bqhd, parts, scale):
  """softmax over the parts' concatenated logits, [batch, kv heads, heads per kv head, q, k]."""
  b, q_len, h, d = q_bqhd.shape
  g = parts[0][0].shape[2]
  q = q_bqhd.reshape(b, q_len, g, h // g, d)
  all_logits = []
  for k_bkgd, _, mask_b1qk, bias_bhqk in parts:
    logits = jnp.einsum('bqgrd,bkgd->bgrqk', q, k_bkgd,
                        preferred_element_type=jnp.float32) * scale
    if bias_bhqk is not None:
      logits += bias_bhqk.reshape(bias_bhqk.shape[0], g, h // g, *bias_bhqk.shape[2:])
    all_logits.append(jnp.where(mask_b1qk[:, :, None], logits, NEG_INF))
  return jax.nn.softmax(jnp.concatenate(all_logits, axis=-1), axis=-1)


def attention_probs(q_bqhd, k_bkgd, mask_b1qk, bias_bhqk, scale):
  """The attention weights [batch, heads, q, k] that every implementation applies (for
  analysis: `Attention` sows them when the 'intermediates' collection is mutable)."""
  b, q_len, h, _ = q_bqhd.shape
  probs = _probs_over_parts(q_bqhd, [(k_bkgd, None, mask_b1qk, bias_bhqk)], scale)
  return probs.reshape(b, h, q_len, k_bkgd.shape[1])


def attention_over_parts(q_bqhd, parts, scale):
  """Attention over the concatenation of several (keys, values, mask, bias) parts
  without concatenating the keys: one softmax over all parts' logits. Cached
  decoding reads the cache as it was and the new chunk as two parts (`Attention`)."""
  b, q_len, h, d = q_bqhd.shape
  probs = _probs_over_parts(q_bqhd, parts, scale)
  out, offset = 0, 0
  for k_bkgd, v_bkgd, _, _ in parts:
    length = k_bkgd.shape[1]
    out += jnp.einsum('bgrqk,bkgd->bqgrd', probs[..., offset:offset + length].astype(
        v_bkgd.dtype), v_bkgd)
    offset += length
  return out.reshape(b, q_len, h, d)


def dot_product_attention(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, bias_bhqk, scale,
                          lower_triangular=False):
  """`jax.nn.dot_product_attention` with its default (XLA) implementation everywhere;
  'cudnn' below asks for cuDNN's fused kernel on GPUs."""
  del lower_triangular
  if bias_bhqk is not None:
    bias_bhqk = bias_bhqk.astype(q_bqhd.dtype)
  return jax.nn.dot_product_attention(q_bqhd, k_bkgd, v_bkgd, bias=bias_bhqk,
                                      mask=mask_b1qk, scale=scale)


# ----------------------------------------------------------- blocked causal attention
#
# XLA:CPU's autodiff of the reference materializes the fp32 [b, h, q, k] logits and
# probabilities and makes about ten elementwise passes over them (forward and backward).
# `blocked_attention` does two things about it (benchmarks/profile_train_step.py):
#   1. Query block i reads only keys [0, end of block i] when the mask allows nothing
#      above the block diagonal (causal attention; checked on the mask at run time, so
#      packed rows, padding and prefix-LM batches stay exact): 37.5% fewer logits at 4
#      blocks.
#   2. A hand-written backward (the FlashAttention one: dS = P * (dP - rowsum(dO * O)))
#      instead of differentiating max / exp / sum / divide.
# Probabilities are kept for the backward (no recompute): memory is not what binds on CPU.
# With a position bias the reference path runs (its gradient would be needed here).
# Up to TILED_MAX_BLOCKS blocks (and with enough batch x heads) the causal case runs
# as tiles (`_tiled`, below).

ATTENTION_BLOCK = 64  # query rows per block; at most 16 blocks
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
# projections' [b, q, h, d] layout XLA:CPU transposed each block's slices for every dot
# (about a third of the attention's time at the benchmark's shape).
@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _blocked(q, k, v, mask, scale, blocks):
  return _blocked_fwd(q, k, v, mask, scale, blocks)[0]


def _blocked_fwd(q, k, v, mask, scale, blocks):
  # Every block's operands, then every block's logits, pass one optimization barrier on
  # CPU. XLA:CPU runs a dot with batch dimensions on one thread, and its executor keeps a
  # node's successors that become ready one by one on that node's thread: the blocks'
  # query-key dots ran one after another while the other thread idled (3.7 ms a layer in
  # the CPU benchmark's step). Ready together, they are dealt to both threads (the
  # layer's attention 11.7 -> 10.9 ms in the step's trace; the step 1.015, 1.004, 1.002,
  # 1.014 times as fast in turns; either barrier alone: 0.984; 0.992, 0.989).
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
  # transposed (attention alone, fwd + bwd at the CPU benchmark's shape, old and new in
  # turns: 26.9 -> 22.1 and 23.9 -> 20.7 ms; about 1% of that train step, 3% at context 1024).
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
    # transposed-operand dots as Eigen DotThunks, which have no bf16 x bf16 -> fp32 (the
    # shrunk 350M config of tests/benchmarks/test_benchmark_scripts.py failed with it).
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
# tile. More, smaller ops: in turns in the CPU benchmark's step (context 256, 4 tiles)
# 1.031 and 1.031 times as fast as the blocked path (a prototype: 1.027, 1.038), and
# 1.010 at context 128 with batch 32; slower with more tiles (context 512: 0.947 with 8
# tiles, 0.967 with 4 of 128 rows; context 1024: 0.944, 0.984, 0.939 with 16, 8, 4 tiles),
# so longer contexts keep the blocked path. Smaller dots lose too: at context 256 with 4
# heads, batch 4 gave 0.978 and 0.966, batch 8 1.019, 1.005, 1.037, batch 32 1.014, 1.035.
# (The batch is the traced one: under data parallelism a device's share is smaller.)
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


def blocked_attention(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, bias_bhqk, scale,
                      lower_triangular=False):
  """Same result as `einsum_attention` on every row that attends to something (a fully
  masked padding row averages fewer values), faster to train on CPU (see above); blocks
  run as tiles where `TILED_MAX_BLOCKS` and `TILED_MIN_BATCH_HEADS` allow. With
  `lower_triangular` the blocks are used without checking the mask at run time (the
  check is a `lax.cond`, 10-15% of the attention's fwd+bwd at the benchmark's shape)."""
  if bias_bhqk is not None:
    return einsum_attention(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, bias_bhqk, scale)
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


def _blocked_attention(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, scale, blocks):
  """`_blocked` in its [b, g, r, q, d] layout, from and back to [b, q, h, d]."""
  b, q_len, h, d = q_bqhd.shape
  g = k_bkgd.shape[2]
  q = q_bqhd.reshape(b, q_len, g, h // g, d).transpose(0, 2, 3, 1, 4)
  k, v = k_bkgd.transpose(0, 2, 1, 3), v_bkgd.transpose(0, 2, 1, 3)
  out = _blocked(q, k, v, mask_b1qk[:, :, None], scale, blocks)
  return out.transpose(0, 3, 1, 2, 4).reshape(b, q_len, h, d)


# ---------------------------------------------------------------- cuDNN flash attention
#
# On a GPU with bf16/fp16 activations, `jax.nn.dot_product_attention(implementation=
# 'cudnn')` runs cuDNN's fused (FlashAttention-style) kernels, forward and backward. cuDNN
# takes a mask only as an additive bias, which it reads for every head, and it skips the
# blocks above the diagonal only for its own causal mask. So the mask picks one of three
# calls at run time (`lax.switch`, one per layer):
#   0. exactly causal (one segment per row, no padding): the causal kernel, no bias;
#   1. nothing above the diagonal (packed rows, padding): causal kernel plus the mask as bias;
#   2. anything else (bidirectional encoder, prefix LM, cross-attention): the mask as bias.
# Elsewhere (CPU, TPU, fp32, a position bias, head dim over 128 or not a multiple of 8, odd
# lengths) it is `blocked_attention`. Checked against the reference on a GPU by
# benchmarks/attention_check.py.


def _cudnn_usable(q_bqhd, k_bkgd, bias_bhqk) -> bool:
  # cuDNN's flash attention with a bias needs even sequence lengths; lax.switch traces
  # every branch, so the exactly causal case needs them too.
  return (bias_bhqk is None and jax.default_backend() == 'gpu'
          and q_bqhd.dtype in (jnp.bfloat16, jnp.float16) and q_bqhd.shape[-1] <= 128
          and q_bqhd.shape[-1] % 8 == 0 and q_bqhd.shape[1] % 2 == 0
          and k_bkgd.shape[1] % 2 == 0)


def cudnn_attention(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, bias_bhqk, scale,
                    lower_triangular=False):
  """cuDNN fused attention where it applies (see above), else `blocked_attention`."""
  if not _cudnn_usable(q_bqhd, k_bkgd, bias_bhqk):
    return blocked_attention(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, bias_bhqk, scale,
                             lower_triangular)
  call = functools.partial(jax.nn.dot_product_attention, q_bqhd, k_bkgd, v_bkgd,
                           scale=scale, implementation='cudnn')
  causal_only = lambda: call(is_causal=True)
  causal_masked = lambda: call(mask=mask_b1qk, is_causal=True)
  masked = lambda: call(mask=mask_b1qk)
  q_len, k_len = q_bqhd.shape[1], k_bkgd.shape[1]
  if q_len != k_len:
    return masked()
  return jax.lax.switch(cudnn_branch(mask_b1qk), (causal_only, causal_masked, masked))


def cudnn_branch(mask_b1qk):
  """0: the mask is exactly causal; 1: nothing above the diagonal; 2: anything else."""
  lower = jnp.tril(jnp.ones(mask_b1qk.shape[-2:], bool))
  return jnp.where(jnp.all(mask_b1qk == lower), 0,
                   jnp.where(jnp.any(mask_b1qk & ~lower), 2, 1))


ATTENTION_IMPLS = {'einsum': einsum_attention, 'dot_product': dot_product_attention,
                   'blocked': blocked_attention, 'cudnn': cudnn_attention}


class Attention(nn.Module):
  """Self- or cross-attention with `num_kv_heads` key/value heads.

  `bias_module` (ALiBi or T5 relative bias) maps (query positions, key
  positions) to an additive [batch, heads, q, k] bias; RoPE rotates q and k.

  Cached decoding (`decode=True`): self-attention writes the new chunk's keys,
  values and metadata at `cache_index` and attends over the whole cache, so a
  prompt can be prefilled in one (bidirectional-prefix) pass and then extended
  token by token. Cross-attention caches the encoder's keys and values on the
  first call (which passes `kv`) and reuses them when `kv` is None.

  Cached keys and values are stored in the layouts the attention dots read
  (`_to_cache`): stored [batch, length, kv_heads, head_dim], XLA:CPU transposed
  the whole cache of every layer at every decode step.
  """
  config: TransformerConfig
  causal: bool = False
  is_cross: bool = False
  bias_module: Optional[nn.Module] = None

  @nn.compact
  def __call__(self, x_bqd, q_info: SeqInfo, kv_bkd=None, kv_info: SeqInfo = None,
               decode: bool = False):
    cfg = self.config
    h, g, d = cfg.num_heads, cfg.kv_heads, cfg.dims_per_head
    query = layers.dense(cfg, (h, d), [axes.EMBED], [axes.HEADS, axes.HEAD_DIM], name='query')
    key = layers.dense(cfg, (g, d), [axes.EMBED], [axes.KV_HEADS, axes.HEAD_DIM], name='key')
    value = layers.dense(cfg, (g, d), [axes.EMBED], [axes.KV_HEADS, axes.HEAD_DIM], name='value')
    out = layers.dense(cfg, cfg.d_model, [axes.HEADS, axes.HEAD_DIM], [axes.EMBED],
                       axis=(-2, -1), name='out', std=layers.output_std(cfg))

    if self.is_cross:
      q = nn.with_logical_constraint(query(x_bqd), axes.ACT_BLHD)
    q_len = x_bqd.shape[1]
    q_index = jnp.broadcast_to(jnp.arange(q_len, dtype=jnp.int32), q_info.segment_ids.shape)

    if self.is_cross:
      k, v, kv_info = self._cross_keys_values(key, value, kv_bkd, kv_info, decode)
      k_index = None
    else:
      q, k, v = _fused_projections(x_bqd, (query, key, value))
      q = nn.with_logical_constraint(q, axes.ACT_BLHD)
      if cfg.position == 'rope':
        q = layers.apply_rope(q, q_info.positions, cfg.rope_theta)
        k = layers.apply_rope(k, q_info.positions, cfg.rope_theta)
      kv_info = q_info
      k_index = q_index
      if decode and self.has_variable('cache', 'cached_key'):
        return out(self._attend_and_update_cache(q, k, v, q_info))
      elif decode:  # `init` with decode=True: allocate the cache, attend as usual.
        self._allocate_cache(k, v, q_info)
    k = nn.with_logical_constraint(k, axes.ACT_BLKD)
    v = nn.with_logical_constraint(v, axes.ACT_BLKD)

    mask, bias = self._mask_and_bias(q_info, q_index, kv_info, k_index)
    # Causal self-attention without a prefix allows nothing above the diagonal, whatever
    # the segments and padding: known here, at trace time.
    lower = self.causal and not self.is_cross and q_info.prefix is None
    if self.is_mutable_collection('intermediates'):  # analysis only; not in a train step
      self.sow('intermediates', 'attention_probs',
               attention_probs(q, k, mask, bias, self._scale()))
    attn_bqhd = ATTENTION_IMPLS[cfg.attention_impl](q, k, v, mask, bias, self._scale(),
                                                    lower_triangular=lower)
    attn_bqhd = nn.with_logical_constraint(attn_bqhd, axes.ACT_BLHD)
    return out(attn_bqhd)

  def _mask_and_bias(self, q_info: SeqInfo, q_index, kv_info: SeqInfo, k_index):
    """The boolean mask [b, 1, q, k] and the position bias [b, h, q, k] (or None)."""
    mask = make_mask(q_info.segment_ids, kv_info.segment_ids, causal=self.causal,
                     q_index=q_index, k_index=k_index, q_prefix=q_info.prefix,
                     k_prefix=kv_info.prefix)
    bias = None
    if self.bias_module is not None:
      bias = self.bias_module(q_info.positions, kv_info.positions)
    return mask, bias

  def _scale(self):
    return self.config.dims_per_head ** -0.5 if self.config.scale_queries else 1.0

  def _allocate_cache(self, k, v, info: SeqInfo):
    b, length = info.segment_ids.shape
    # 'cached_' because a variable may not share a name with the 'key' / 'value'
    # projections (flax NameInUseError).
    self.variable('cache', 'cached_key', jnp.zeros, _to_cache(k, True).shape, k.dtype)
    self.variable('cache', 'cached_value', jnp.zeros, _to_cache(v, False).shape, v.dtype)
    self.variable('cache', 'segment_ids', jnp.zeros, (b, length), jnp.int32)
    self.variable('cache', 'positions', jnp.zeros, (b, length), jnp.int32)
    self.variable('cache', 'prefix', jnp.zeros, (b, length), jnp.bool_)
    self.variable('cache', 'index', lambda: jnp.zeros((), jnp.int32))

  def _attend_and_update_cache(self, q, k, v, info: SeqInfo):
    """Attends over the cache as it was plus the new chunk (two parts of one
    softmax), then writes the chunk's keys, values and metadata at the cache index.

    Reading the cache before the write, not after, is what keeps a decode step's
    cost flat in the cache size on CPU: when the dots read the updated cache,
    XLA:CPU duplicated the update into the dots' operands and copied every layer's
    whole cache at every step (research/decoding/api.py has the other half).
    """
    names = ('cached_key', 'cached_value', 'segment_ids', 'positions', 'prefix')
    cached = {n: self.variable('cache', n) for n in names}
    index = self.variable('cache', 'index')
    start = index.value
    b, q_len = info.segment_ids.shape
    cache_len = cached['segment_ids'].value.shape[1]
    q_index = jnp.broadcast_to(start + jnp.arange(q_len, dtype=jnp.int32), (b, q_len))
    old_index = jnp.broadcast_to(jnp.arange(cache_len, dtype=jnp.int32), (b, cache_len))
    old = SeqInfo(cached['segment_ids'].value, cached['positions'].value,
                  cached['prefix'].value if info.prefix is not None else None)
    parts = []
    for kv_info, k_index, keys, values in (
        (old, old_index, _from_cache(cached['cached_key'].value, True),
         _from_cache(cached['cached_value'].value, False)),
        (info, q_index, k, v)):
      parts.append((keys, values, *self._mask_and_bias(info, q_index, kv_info, k_index)))
    attn_bqhd = attention_over_parts(q, parts, self._scale())

    prefix = info.prefix
    if prefix is None:
      prefix = jnp.zeros(info.segment_ids.shape, jnp.bool_)
    new = {'cached_key': _to_cache(k, True), 'cached_value': _to_cache(v, False),
           'segment_ids': info.segment_ids.astype(jnp.int32),
           'positions': info.positions.astype(jnp.int32), 'prefix': prefix}
    for n in names:
      starts = {'cached_key': (0, 0, start, 0), 'cached_value': (0, 0, 0, start)}.get(
          n, (0, start))  # metadata: [b, length]
      cached[n].value = jax.lax.dynamic_update_slice(
          cached[n].value, new[n].astype(cached[n].value.dtype), starts)
    index.value = start + q_len
    return attn_bqhd

  def _cross_keys_values(self, key, value, kv_bkd, kv_info, decode):
    if decode and kv_bkd is None:
      if not self.has_variable('cache', 'cross_key'):
        raise ValueError('cross-attention cache is empty: the first decode call '
                         'must pass the encoder output')
      return (_from_cache(self.get_variable('cache', 'cross_key'), True),
              _from_cache(self.get_variable('cache', 'cross_value'), False),
              SeqInfo(self.get_variable('cache', 'cross_segment_ids'),
                      self.get_variable('cache', 'cross_positions')))
    k, v = key(kv_bkd), value(kv_bkd)
    if decode:
      self.put_variable('cache', 'cross_key', _to_cache(k, True))
      self.put_variable('cache', 'cross_value', _to_cache(v, False))
      self.put_variable('cache', 'cross_segment_ids', kv_info.segment_ids)
      self.put_variable('cache', 'cross_positions', kv_info.positions)
    return k, v, kv_info


def _fused_projections(x_bqd, projections):
  """Self-attention's query, key and value projections as one [d_model, (h + 2g) d] dot.

  The parameters stay three DenseGenerals (checkpoints, logical axes and HF conversion
  see no difference); one wide matmul instead of three narrow ones is what XLA:CPU runs
  faster (benchmarks/profile_train_step.py: the three cost 1.4x the MLP's input
  projection per FLOP).
  """
  weights = [p(x_bqd, weights_only=True) for p in projections]
  heads = [w.shape[1] for w, _ in weights]
  d_model, d = weights[0][0].shape[0], weights[0][0].shape[2]
  kernel = jnp.concatenate([w.reshape(d_model, -1) for w, _ in weights], axis=1)
  y = layers.matmul_trailing(x_bqd.astype(kernel.dtype), kernel, 1)
  if weights[0][1] is not None:
    y = y + jnp.concatenate([b.reshape(-1) for _, b in weights])
  splits = [sum(heads[:i]) * d for i in (1, 2)]
  return tuple(part.reshape(*x_bqd.shape[:2], n, d)
               for part, n in zip(jnp.split(y, splits, axis=-1), heads))


# Cache layouts, chosen from XLA:CPU's compiled decode step (the layouts its
# dot emitter reads without a copy): keys [batch, kv_heads, length, head_dim],
# values [batch, kv_heads, head_dim, length].
def _to_cache(x_bkgd, is_key: bool):
  return jnp.transpose(x_bkgd, (0, 2, 1, 3) if is_key else (0, 2, 3, 1))


def _from_cache(x, is_key: bool):
  """Back to [batch, length, kv_heads, head_dim]; XLA folds this transpose into the
  attention dots instead of copying the cache."""
  return jnp.transpose(x, (0, 2, 1, 3) if is_key else (0, 3, 1, 2))
