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
from research.models.kernels import NEG_INF
from research.models.kernels import cpu_attention
from research.models.kernels import cpu_matmul
from research.models.kernels import gpu_attention



class SeqInfo(NamedTuple):
  """Per-token metadata of one side of an attention: [batch, length] arrays."""
  segment_ids: jax.Array  # 0 = padding
  positions: jax.Array
  prefix: Optional[jax.Array] = None  # bool: bidirectional prefix (prefix LM)
  # GLM's position within a blank (0 outside blanks); read by the embedding only.
  block_positions: Optional[jax.Array] = None


def make_mask(q_seg, k_seg, *, causal: bool, q_index=None, k_index=None,
              q_prefix=None, k_prefix=None, window=None):
  """Boolean mask [batch, 1, q, k]: same non-padding segment, and for causal
  attention key index <= query index unless both tokens lie in the prefix.

  With a `window` W (sliding-window attention; needs both indices), also
  |query index - key index| < W: a causal query sees the last W keys, itself included.
  Indices, not positions: they count the row's tokens (the cache's slots when decoding),
  and within a segment they differ by what the positions differ by."""
  mask = ((q_seg[:, :, None] == k_seg[:, None, :])
          & (q_seg[:, :, None] != 0) & (k_seg[:, None, :] != 0))
  if causal:
    allowed = k_index[:, None, :] <= q_index[:, :, None]
    if q_prefix is not None:
      allowed |= q_prefix[:, :, None] & k_prefix[:, None, :]
    mask &= allowed
  if window is not None:
    distance = q_index[:, :, None] - k_index[:, None, :]
    mask &= (distance < window) & (-distance < window)
  return mask[:, None]


def einsum_attention(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, bias_bhqk, scale,
                     lower_triangular=False, window=None):
  """The plain reference: softmax(q k^T * scale + bias) v in fp32, with query
  head h = g * (H // G) + r reading key/value head g (HF's repeat_kv order).

  Every implementation takes `lower_triangular`: the caller's promise that the mask allows
  nothing above the diagonal (causal self-attention without a prefix), which `blocked`
  uses to skip its run-time check; the others ignore it. A sliding window is already in
  the mask (`make_mask`); `window` (passed only when set) lets cuDNN skip the blocks
  outside it, the others ignore it."""
  del lower_triangular, window
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
                          lower_triangular=False, window=None):
  """`jax.nn.dot_product_attention` with its default (XLA) implementation everywhere;
  'cudnn' asks for cuDNN's fused kernel on GPUs. A window is in the mask already."""
  del lower_triangular, window
  if bias_bhqk is not None:
    bias_bhqk = bias_bhqk.astype(q_bqhd.dtype)
  return jax.nn.dot_product_attention(q_bqhd, k_bkgd, v_bkgd, bias=bias_bhqk,
                                      mask=mask_b1qk, scale=scale)


def _reference_with_bias(kernel):
  """An implementation from a kernel that takes no position bias: with a bias the
  reference runs instead (the kernels' hand-written backwards have no bias gradient)."""

  def attend(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, bias_bhqk, scale, lower_triangular=False,
             **window):
    if bias_bhqk is not None:
      return einsum_attention(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, bias_bhqk, scale)
    return kernel(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, scale, lower_triangular, **window)

  attend.__name__, attend.__doc__ = kernel.__name__, kernel.__doc__
  return attend


# Blocked causal attention and its tiles, trained faster than the reference on XLA:CPU
# (research/models/kernels/cpu_attention.py).
blocked_attention = _reference_with_bias(cpu_attention.blocked_attention)
# cuDNN's fused attention on GPUs in bf16/fp16, else `blocked_attention`
# (research/models/kernels/gpu_attention.py).
cudnn_attention = _reference_with_bias(gpu_attention.cudnn_attention)

# What attention_impl='auto' runs on each backend (`jax.default_backend()`): the kernels
# that were shaped for it; on any other backend XLA's own attention.
AUTO_ATTENTION_IMPLS = {'cpu': 'blocked', 'gpu': 'cudnn', 'tpu': 'dot_product'}
AUTO_ATTENTION_FALLBACK = 'dot_product'


def auto_impl() -> str:
  """The implementation that 'auto' names on the default backend."""
  return AUTO_ATTENTION_IMPLS.get(jax.default_backend(), AUTO_ATTENTION_FALLBACK)


def auto_attention(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, bias_bhqk, scale,
                   lower_triangular=False, **window):
  """The implementation `auto_impl` names, chosen at trace time (looked up in
  `ATTENTION_IMPLS` at every call, so a replaced entry is what runs)."""
  return ATTENTION_IMPLS[auto_impl()](q_bqhd, k_bkgd, v_bkgd, mask_b1qk, bias_bhqk, scale,
                                      lower_triangular=lower_triangular, **window)


# Every implementation takes (q [b, q, h, d], k and v [b, k, g, d], mask [b, 1, q, k],
# bias [b, h, q, k] or None, scale, lower_triangular=, and window= when a sliding window
# is set) and returns [b, q, h, d]; the names
# are TransformerConfig.attention_impl's choices (config.ATTENTION_IMPLS).
ATTENTION_IMPLS = {'auto': auto_attention, 'einsum': einsum_attention,
                   'dot_product': dot_product_attention, 'blocked': blocked_attention,
                   'cudnn': cudnn_attention}


def implementation(name: str):
  """The implementation called `name`; a ValueError naming the choices if none is."""
  if name not in ATTENTION_IMPLS:
    raise ValueError(f'unknown attention implementation {name!r}: choose one of '
                     f'{", ".join(ATTENTION_IMPLS)}')
  return ATTENTION_IMPLS[name]


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
               decode: bool = False, deterministic: bool = True, prefix_kv=None):
    """`prefix_kv` (prefix tuning with a reparameterization MLP: the stack computes every
    layer's (keys [n, g, d], values [n, g, d])) is attended by every query, as are this
    layer's own `prefix_key` / `prefix_value` parameters under P-tuning v2."""
    cfg = self.config
    h, g, d = cfg.num_heads, cfg.kv_heads, cfg.dims_per_head
    query = layers.dense(cfg, (h, d), [axes.EMBED], [axes.HEADS, axes.HEAD_DIM], name='query')
    key = layers.dense(cfg, (g, d), [axes.EMBED], [axes.KV_HEADS, axes.HEAD_DIM], name='key')
    value = layers.dense(cfg, (g, d), [axes.EMBED], [axes.KV_HEADS, axes.HEAD_DIM], name='value')
    out = layers.dense(cfg, cfg.d_model, [axes.HEADS, axes.HEAD_DIM], [axes.EMBED],
                       axis=(-2, -1), name='out', std=layers.output_std(cfg))

    if self.is_cross:
      q = nn.with_logical_constraint(query(x_bqd, deterministic=deterministic),
                                     axes.ACT_BLHD)
    q_len = x_bqd.shape[1]
    q_index = jnp.broadcast_to(jnp.arange(q_len, dtype=jnp.int32), q_info.segment_ids.shape)

    if self.is_cross:
      k, v, kv_info = self._cross_keys_values(key, value, kv_bkd, kv_info, decode,
                                              deterministic)
      k_index = None
    else:
      if cfg.peft_method == 'lora' and cfg.peft.lora_dropout and not deterministic:
        # LoRA dropout acts on each projection's input: no fused dot.
        q, k, v = (p(x_bqd, deterministic=False) for p in (query, key, value))
      else:
        q, k, v = _fused_projections(x_bqd, (query, key, value))
      q = nn.with_logical_constraint(q, axes.ACT_BLHD)
      if cfg.position == 'rope':
        scaling = layers.config_rope_scaling(cfg)
        q = layers.apply_rope(q, q_info.positions, cfg.rope_theta, scaling)
        k = layers.apply_rope(k, q_info.positions, cfg.rope_theta, scaling)
      kv_info = q_info
      k_index = q_index
      prefix_part = self._prefix_part(q_info, prefix_kv, k.dtype)
      if decode and self.has_variable('cache', 'cached_key'):
        return out(self._attend_and_update_cache(q, k, v, q_info, prefix_part),
                   deterministic=deterministic)
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
    window = {} if self._window() is None else {'window': self._window()}
    if not self.is_cross and prefix_part is not None:
      # Prefix keys join the softmax as a part of their own (no position, no bias).
      attn_bqhd = attention_over_parts(q, [prefix_part, (k, v, mask, bias)], self._scale())
    else:
      attn_bqhd = implementation(cfg.attention_impl)(q, k, v, mask, bias, self._scale(),
                                                     lower_triangular=lower, **window)
    attn_bqhd = nn.with_logical_constraint(attn_bqhd, axes.ACT_BLHD)
    return out(attn_bqhd, deterministic=deterministic)

  def _prefix_part(self, q_info: SeqInfo, prefix_kv, dtype):
    """(keys, values, mask, None) of the prefix (prefix tuning / P-tuning v2), or None.

    Li & Liang 2021 and Liu et al. 2022: n learned key and value vectors per layer that
    every (non-padding) query attends to, before its own context. They are parameters,
    not cache entries: cached decoding attends to them exactly as the full forward does.
    """
    cfg = self.config
    if cfg.peft_method not in ('prefix', 'ptuning_v2'):
      return None
    n, g, d = cfg.peft.prefix_length, cfg.kv_heads, cfg.dims_per_head
    if prefix_kv is None:
      if cfg.peft.uses_prefix_projection:
        raise ValueError('prefix tuning with prefix_projection: the stack passes prefix_kv')
      init = layers.normal_init(cfg.init_std, (None, axes.KV_HEADS, axes.HEAD_DIM))
      prefix_kv = tuple(self.param(name, init, (n, g, d), layers.dtype(cfg.param_dtype))
                        for name in ('prefix_key', 'prefix_value'))
    b = q_info.segment_ids.shape[0]
    keys, values = (jnp.broadcast_to(jnp.asarray(p, dtype)[None], (b, n, g, d))
                    for p in prefix_kv)
    mask = jnp.broadcast_to((q_info.segment_ids != 0)[:, None, :, None],
                            (b, 1, q_info.segment_ids.shape[1], n))
    return keys, values, mask, None

  def _mask_and_bias(self, q_info: SeqInfo, q_index, kv_info: SeqInfo, k_index):
    """The boolean mask [b, 1, q, k] and the position bias [b, h, q, k] (or None)."""
    mask = make_mask(q_info.segment_ids, kv_info.segment_ids, causal=self.causal,
                     q_index=q_index, k_index=k_index, q_prefix=q_info.prefix,
                     k_prefix=kv_info.prefix, window=self._window())
    bias = None
    if self.bias_module is not None:
      bias = self.bias_module(q_info.positions, kv_info.positions)
    return mask, bias

  def _window(self):
    """The sliding window of self-attention (None: attend to everything allowed)."""
    return None if self.is_cross else self.config.attention_window

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

  def _attend_and_update_cache(self, q, k, v, info: SeqInfo, prefix_part=None):
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
    parts = [] if prefix_part is None else [prefix_part]
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

  def _cross_keys_values(self, key, value, kv_bkd, kv_info, decode, deterministic=True):
    if decode and kv_bkd is None:
      if not self.has_variable('cache', 'cross_key'):
        raise ValueError('cross-attention cache is empty: the first decode call '
                         'must pass the encoder output')
      return (_from_cache(self.get_variable('cache', 'cross_key'), True),
              _from_cache(self.get_variable('cache', 'cross_value'), False),
              SeqInfo(self.get_variable('cache', 'cross_segment_ids'),
                      self.get_variable('cache', 'cross_positions')))
    k, v = (key(kv_bkd, deterministic=deterministic),
            value(kv_bkd, deterministic=deterministic))
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
  y = cpu_matmul.matmul_trailing(x_bqd.astype(kernel.dtype), kernel, 1)
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
