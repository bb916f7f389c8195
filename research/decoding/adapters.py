"""How each model family is driven step by step: one adapter per (family, cache).

An adapter turns a batch of left-padded prompts into (first logits, state,
history) and advances the state by one token per row. The state is a pytree
whose every array of rank >= 1 has the batch on axis 0, so beam search can
reorder it with one gather (`reorder`) whatever the family.

Cached adapters use the models' KV cache (research/models/attention.py): the
decoder-only prompt is prefilled in one call (bidirectionally for a prefix LM)
and every step writes one token; the encoder-decoder runs the encoder once and
the first decoder call caches the cross-attention keys and values. Only
num_kv_heads heads are cached. Uncached adapters recompute the full forward
pass over a fixed-size buffer each step: the reference for the cache and the
baseline of benchmarks/decode.py.
"""
import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.decoding.processors import History
from research.models.attention import SeqInfo


class Prompts(NamedTuple):
  """Left-padded prompts: every row's last real token is at column -1."""
  tokens: jax.Array  # [batch, prompt_len] int32
  lengths: jax.Array  # [batch] int32, >= 1

  def segment_ids(self):
    width = self.tokens.shape[1]
    return (jnp.arange(width)[None, :] >= width - self.lengths[:, None]).astype(jnp.int32)

  def positions(self):
    """0 at each row's first real token (padding slots get 0; they are masked)."""
    width = self.tokens.shape[1]
    return jnp.maximum(jnp.arange(width)[None, :] - (width - self.lengths[:, None]),
                       0).astype(jnp.int32)


def reorder(state, rows_n):
  """Gathers every batched array of `state` along axis 0 (beam reordering)."""
  return jax.tree.map(lambda x: x[rows_n] if x.ndim else x, state)


def _empty_cache(module, *args, **kwargs):
  """Zeros shaped like the cache that `init(..., decode=True)` allocates.

  Behind an optimization barrier: otherwise XLA constant-folds the prefill's attention
  over the empty cache (17 s of compile per model shape in the emergence probe).
  """
  shapes = jax.eval_shape(functools.partial(module.init, decode=True, **kwargs),
                          jax.random.PRNGKey(0), *args)['cache']
  return jax.lax.optimization_barrier(
      jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), nn.meta.unbox(shapes)))


class DecoderCached:
  """Causal or prefix decoder over the KV cache."""

  def __init__(self, module, config):
    self.module, self.config = module, config

  def _apply(self, params, cache, tokens, segment_ids, positions, prefix):
    logits, variables = self.module.apply(
        {'params': params, 'cache': cache}, decoder_input_tokens=tokens,
        decoder_segment_ids=segment_ids, decoder_positions=positions,
        decoder_causal_attention=prefix, decode=True, mutable=['cache'])
    return logits, variables['cache']

  def init(self, params, prompts: Prompts, max_new_tokens: int):
    b, p = prompts.tokens.shape
    cache = _empty_cache(self.module, decoder_input_tokens=jnp.zeros(
        (b, p + max_new_tokens), jnp.int32))
    segment_ids = prompts.segment_ids()
    prefix = segment_ids if self.config.prefix_lm else None
    logits_bpv, cache = self._apply(params, cache, prompts.tokens, segment_ids,
                                    prompts.positions(), prefix)
    state = {'cache': cache, 'positions': prompts.lengths.astype(jnp.int32)}
    return logits_bpv[:, -1], state, _prompt_history(prompts, max_new_tokens)

  def step(self, params, state, token_b):
    b = token_b.shape[0]
    prefix = jnp.zeros((b, 1), jnp.int32) if self.config.prefix_lm else None
    logits_b1v, cache = self._apply(params, state['cache'], token_b[:, None],
                                    jnp.ones((b, 1), jnp.int32),
                                    state['positions'][:, None], prefix)
    return logits_b1v[:, 0], {'cache': cache, 'positions': state['positions'] + 1}


class DecoderUncached:
  """Full forward pass over a [batch, prompt + new] buffer at every step."""

  def __init__(self, module, config):
    self.module, self.config = module, config

  def _logits_at(self, params, state, index):
    prefix = state['prefix'] if self.config.prefix_lm else None
    logits_bsv = self.module.apply(
        {'params': params}, decoder_input_tokens=state['tokens'],
        decoder_segment_ids=state['segment_ids'], decoder_positions=state['positions'],
        decoder_causal_attention=prefix)
    return jax.lax.dynamic_index_in_dim(logits_bsv, index, axis=1, keepdims=False)

  def init(self, params, prompts: Prompts, max_new_tokens: int):
    pad = [(0, 0), (0, max_new_tokens)]
    segment_ids = jnp.pad(prompts.segment_ids(), pad)
    state = {'tokens': jnp.pad(prompts.tokens, pad), 'segment_ids': segment_ids,
             'positions': jnp.pad(prompts.positions(), pad),
             'prefix': segment_ids, 'next_position': prompts.lengths.astype(jnp.int32),
             'index': jnp.asarray(prompts.tokens.shape[1], jnp.int32)}
    logits_bv = self._logits_at(params, state, state['index'] - 1)
    return logits_bv, state, _prompt_history(prompts, max_new_tokens)

  def step(self, params, state, token_b):
    index = state['index']
    write = lambda buf, col: jax.lax.dynamic_update_slice(  # noqa: E731
        buf, col[:, None].astype(buf.dtype), (0, index))
    b = token_b.shape[0]
    state = dict(state, tokens=write(state['tokens'], token_b),
                 segment_ids=write(state['segment_ids'], jnp.ones((b,), jnp.int32)),
                 positions=write(state['positions'], state['next_position']),
                 prefix=write(state['prefix'], jnp.zeros((b,), jnp.int32)),
                 next_position=state['next_position'] + 1, index=index + 1)
    return self._logits_at(params, state, index), state


class EncoderDecoderCached:
  """Encoder once; decoder over the self-attention and cross-attention caches."""

  def __init__(self, module, config):
    self.module, self.config = module, config

  def _encode(self, params, prompts):
    return self.module.apply({'params': params}, prompts.tokens, prompts.segment_ids(),
                             prompts.positions(), method='encode')

  def _decode(self, params, cache, encoded, encoded_info, token_b, position_b):
    b = token_b.shape[0]
    logits_b1v, variables = self.module.apply(
        {'params': params, 'cache': cache}, encoded, encoded_info, token_b[:, None],
        jnp.ones((b, 1), jnp.int32), position_b[:, None], decode=True,
        mutable=['cache'], method='decode')
    return logits_b1v[:, 0], variables['cache']

  def init(self, params, prompts: Prompts, max_new_tokens: int):
    b = prompts.tokens.shape[0]
    # The start token and every generated token but the last are written.
    cache = _empty_cache(self.module, encoder_input_tokens=prompts.tokens,
                         decoder_input_tokens=jnp.zeros((b, max_new_tokens + 1), jnp.int32))
    encoded, encoded_info = self._encode(params, prompts)
    start_b = jnp.full((b,), self.config.decoder_start_id, jnp.int32)
    logits_bv, cache = self._decode(params, cache, encoded, encoded_info, start_b,
                                    jnp.zeros((b,), jnp.int32))
    state = {'cache': cache, 'positions': jnp.ones((b,), jnp.int32)}
    return logits_bv, state, _empty_history(b, max_new_tokens)

  def step(self, params, state, token_b):
    logits_bv, cache = self._decode(params, state['cache'], None, None, token_b,
                                    state['positions'])
    return logits_bv, {'cache': cache, 'positions': state['positions'] + 1}


class EncoderDecoderUncached:
  """Encoder once; the full decoder over a [batch, 1 + new] buffer every step."""

  def __init__(self, module, config):
    self.module, self.config = module, config

  def _logits_at(self, params, state, index):
    logits_bsv = self.module.apply(
        {'params': params}, state['encoded'],
        SeqInfo(state['encoder_segment_ids'], state['encoder_positions']),
        state['tokens'], state['segment_ids'], method='decode')
    return jax.lax.dynamic_index_in_dim(logits_bsv, index, axis=1, keepdims=False)

  def init(self, params, prompts: Prompts, max_new_tokens: int):
    b = prompts.tokens.shape[0]
    encoded, info = self.module.apply({'params': params}, prompts.tokens,
                                      prompts.segment_ids(), prompts.positions(),
                                      method='encode')
    tokens = jnp.zeros((b, max_new_tokens + 1), jnp.int32).at[:, 0].set(
        self.config.decoder_start_id)
    state = {'encoded': encoded, 'encoder_segment_ids': info.segment_ids,
             'encoder_positions': info.positions, 'tokens': tokens,
             'segment_ids': jnp.zeros_like(tokens).at[:, 0].set(1),
             'index': jnp.asarray(1, jnp.int32)}
    return self._logits_at(params, state, 0), state, _empty_history(b, max_new_tokens)

  def step(self, params, state, token_b):
    index = state['index']
    write = lambda buf, col: jax.lax.dynamic_update_slice(  # noqa: E731
        buf, col[:, None].astype(buf.dtype), (0, index))
    state = dict(state, tokens=write(state['tokens'], token_b),
                 segment_ids=write(state['segment_ids'], jnp.ones_like(token_b)),
                 index=index + 1)
    return self._logits_at(params, state, index), state


def _prompt_history(prompts: Prompts, max_new_tokens: int) -> History:
  pad = [(0, 0), (0, max_new_tokens)]
  return History(jnp.pad(prompts.tokens.astype(jnp.int32), pad),
                 jnp.pad(prompts.segment_ids().astype(jnp.bool_), pad),
                 jnp.asarray(prompts.tokens.shape[1], jnp.int32))


def _empty_history(batch: int, max_new_tokens: int) -> History:
  return History(jnp.zeros((batch, max_new_tokens), jnp.int32),
                 jnp.zeros((batch, max_new_tokens), jnp.bool_), jnp.asarray(0, jnp.int32))


# (family, use_cache) -> adapter class.
ADAPTERS = {
    ('decoder', True): DecoderCached,
    ('decoder', False): DecoderUncached,
    ('encoder_decoder', True): EncoderDecoderCached,
    ('encoder_decoder', False): EncoderDecoderUncached,
}


def make_adapter(module, model_config, decode_config):
  return ADAPTERS[(model_config.family, decode_config.use_cache)](module, decode_config)
