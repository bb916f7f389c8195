"""Multi-head / grouped-query / multi-query attention with masks and a KV cache.

The mask is a function of per-token metadata only (segment id, index, prefix
flag), so training (packed rows), prefix-LM and cached decoding share one
code path: cached keys keep their metadata beside them.
"""
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


def einsum_attention(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, bias_bhqk, scale):
  """The plain reference: softmax(q k^T * scale + bias) v in fp32, with query
  head h = g * (H // G) + r reading key/value head g (HF's repeat_kv order)."""
  b, q_len, h, d = q_bqhd.shape
  g = k_bkgd.shape[2]
  q = q_bqhd.reshape(b, q_len, g, h // g, d)
  logits = jnp.einsum('bqgrd,bkgd->bgrqk', q, k_bkgd,
                      preferred_element_type=jnp.float32) * scale
  if bias_bhqk is not None:
    logits += bias_bhqk.reshape(bias_bhqk.shape[0], g, h // g, *bias_bhqk.shape[2:])
  logits = jnp.where(mask_b1qk[:, :, None], logits, NEG_INF)
  probs = jax.nn.softmax(logits, axis=-1).astype(v_bkgd.dtype)
  out = jnp.einsum('bgrqk,bkgd->bqgrd', probs, v_bkgd)
  return out.reshape(b, q_len, h, d)


def dot_product_attention(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, bias_bhqk, scale):
  """`jax.nn.dot_product_attention`: XLA on CPU, cuDNN flash attention on GPU."""
  if bias_bhqk is not None:
    bias_bhqk = bias_bhqk.astype(q_bqhd.dtype)
  return jax.nn.dot_product_attention(q_bqhd, k_bkgd, v_bkgd, bias=bias_bhqk,
                                      mask=mask_b1qk, scale=scale)


ATTENTION_IMPLS = {'einsum': einsum_attention, 'dot_product': dot_product_attention}


class Attention(nn.Module):
  """Self- or cross-attention with `num_kv_heads` key/value heads.

  `bias_module` (ALiBi or T5 relative bias) maps (query positions, key
  positions) to an additive [batch, heads, q, k] bias; RoPE rotates q and k.

  Cached decoding (`decode=True`): self-attention writes the new chunk's keys,
  values and metadata at `cache_index` and attends over the whole cache, so a
  prompt can be prefilled in one (bidirectional-prefix) pass and then extended
  token by token. Cross-attention caches the encoder's keys and values on the
  first call (which passes `kv`) and reuses them when `kv` is None.
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

    q = nn.with_logical_constraint(query(x_bqd), axes.ACT_BLHD)
    q_len = x_bqd.shape[1]
    q_index = jnp.broadcast_to(jnp.arange(q_len, dtype=jnp.int32), q_info.segment_ids.shape)

    if self.is_cross:
      k, v, kv_info = self._cross_keys_values(key, value, kv_bkd, kv_info, decode)
      k_index = None
    else:
      k, v = key(x_bqd), value(x_bqd)
      if cfg.position == 'rope':
        q = layers.apply_rope(q, q_info.positions, cfg.rope_theta)
        k = layers.apply_rope(k, q_info.positions, cfg.rope_theta)
      kv_info = q_info
      k_index = q_index
      if decode and self.has_variable('cache', 'cached_key'):
        k, v, kv_info, q_index, k_index = self._update_cache(k, v, q_info)
      elif decode:  # `init` with decode=True: allocate the cache, attend as usual.
        self._allocate_cache(k, v, q_info)
    k = nn.with_logical_constraint(k, axes.ACT_BLKD)
    v = nn.with_logical_constraint(v, axes.ACT_BLKD)

    mask = make_mask(q_info.segment_ids, kv_info.segment_ids, causal=self.causal,
                     q_index=q_index, k_index=k_index, q_prefix=q_info.prefix,
                     k_prefix=kv_info.prefix)
    bias = None
    if self.bias_module is not None:
      bias = self.bias_module(q_info.positions, kv_info.positions)
    scale = d ** -0.5 if cfg.scale_queries else 1.0
    attn_bqhd = ATTENTION_IMPLS[cfg.attention_impl](q, k, v, mask, bias, scale)
    attn_bqhd = nn.with_logical_constraint(attn_bqhd, axes.ACT_BLHD)
    return out(attn_bqhd)

  def _allocate_cache(self, k, v, info: SeqInfo):
    b, length = info.segment_ids.shape
    # 'cached_' because a variable may not share a name with the 'key' / 'value'
    # projections (flax NameInUseError).
    self.variable('cache', 'cached_key', jnp.zeros, k.shape, k.dtype)
    self.variable('cache', 'cached_value', jnp.zeros, v.shape, v.dtype)
    self.variable('cache', 'segment_ids', jnp.zeros, (b, length), jnp.int32)
    self.variable('cache', 'positions', jnp.zeros, (b, length), jnp.int32)
    self.variable('cache', 'prefix', jnp.zeros, (b, length), jnp.bool_)
    self.variable('cache', 'index', lambda: jnp.zeros((), jnp.int32))

  def _update_cache(self, k, v, info: SeqInfo):
    """Writes a chunk at cache_index; returns the full cache as keys/values."""
    names = ('cached_key', 'cached_value', 'segment_ids', 'positions', 'prefix')
    cached = {n: self.variable('cache', n) for n in names}
    index = self.variable('cache', 'index')
    start = index.value
    prefix = info.prefix
    if prefix is None:
      prefix = jnp.zeros(info.segment_ids.shape, jnp.bool_)
    new = {'cached_key': k, 'cached_value': v, 'segment_ids': info.segment_ids.astype(jnp.int32),
           'positions': info.positions.astype(jnp.int32), 'prefix': prefix}
    for n in names:
      starts = (0, start) + (0,) * (new[n].ndim - 2)
      cached[n].value = jax.lax.dynamic_update_slice(
          cached[n].value, new[n].astype(cached[n].value.dtype), starts)
    index.value = start + k.shape[1]
    b, q_len = info.segment_ids.shape
    cache_len = cached['cached_key'].value.shape[1]
    q_index = jnp.broadcast_to(start + jnp.arange(q_len, dtype=jnp.int32), (b, q_len))
    k_index = jnp.broadcast_to(jnp.arange(cache_len, dtype=jnp.int32), (b, cache_len))
    kv_info = SeqInfo(cached['segment_ids'].value, cached['positions'].value,
                      cached['prefix'].value if info.prefix is not None else None)
    return cached['cached_key'].value, cached['cached_value'].value, kv_info, q_index, k_index

  def _cross_keys_values(self, key, value, kv_bkd, kv_info, decode):
    if decode and kv_bkd is None:
      if not self.has_variable('cache', 'cross_key'):
        raise ValueError('cross-attention cache is empty: the first decode call '
                         'must pass the encoder output')
      return (self.get_variable('cache', 'cross_key'),
              self.get_variable('cache', 'cross_value'),
              SeqInfo(self.get_variable('cache', 'cross_segment_ids'),
                      self.get_variable('cache', 'cross_positions')))
    k, v = key(kv_bkd), value(kv_bkd)
    if decode:
      self.put_variable('cache', 'cross_key', k)
      self.put_variable('cache', 'cross_value', v)
      self.put_variable('cache', 'cross_segment_ids', kv_info.segment_ids)
      self.put_variable('cache', 'cross_positions', kv_info.positions)
    return k, v, kv_info
