"""Tiny models and plain full-forward references shared by the decoding tests."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research import models


def tiny_model(family='decoder', seed=0, **overrides):
  """(config, params) of a 2-layer model small enough to compile in seconds."""
  fields = dict(family=family, vocab_size=64, d_model=32, num_layers=2, num_heads=4,
                d_ff=64, max_length=48, init_std=0.1)
  fields.update(overrides)
  config = models.TransformerConfig(**fields)
  module = models.build(config)
  names = {'decoder': ['decoder_input_tokens'], 'encoder': ['encoder_input_tokens'],
           'encoder_decoder': ['encoder_input_tokens', 'decoder_input_tokens']}[family]
  dummy = {name: jnp.ones((1, 4), jnp.int32) for name in names}
  params = nn.meta.unbox(jax.jit(module.init)(jax.random.PRNGKey(seed), **dummy)['params'])
  return config, params


def full_forward_logits(config, params, prompts, generated, prefix_lm=False, start_id=0):
  """[batch, steps, vocab]: the logits that predicted each generated token, from
  one uncached forward pass over right-padded rows (prompt then continuation).

  `generated[i]` holds row i's tokens (any length <= steps); slots past a row's
  length are left zero.
  """
  module = models.build(config)
  steps = max(len(g) for g in generated)
  b = len(prompts)
  if config.family == 'decoder':
    width = max(len(p) for p in prompts) + steps
    tokens = np.zeros((b, width), np.int32)
    segments = np.zeros((b, width), np.int32)
    prefix = np.zeros((b, width), np.int32)
    for i, (p, g) in enumerate(zip(prompts, generated)):
      row = list(p) + list(g)
      tokens[i, :len(row)] = row
      segments[i, :len(row)] = 1
      prefix[i, :len(p)] = 1
    logits = jax.jit(module.apply)({'params': params}, decoder_input_tokens=tokens,
                                   decoder_segment_ids=segments,
                                   decoder_causal_attention=prefix if prefix_lm else None)
    logits = np.asarray(logits)
    out = np.zeros((b, steps, config.vocab_size), np.float32)
    for i, (p, g) in enumerate(zip(prompts, generated)):
      out[i, :len(g)] = logits[i, len(p) - 1:len(p) - 1 + len(g)]
    return out
  enc_width = max(len(p) for p in prompts)
  enc = np.zeros((b, enc_width), np.int32)
  enc_seg = np.zeros((b, enc_width), np.int32)
  dec = np.zeros((b, steps), np.int32)
  dec_seg = np.zeros((b, steps), np.int32)
  for i, (p, g) in enumerate(zip(prompts, generated)):
    enc[i, :len(p)], enc_seg[i, :len(p)] = p, 1
    row = [start_id] + list(g)[:-1]
    dec[i, :len(row)], dec_seg[i, :len(row)] = row, 1
  logits = jax.jit(module.apply)({'params': params}, encoder_input_tokens=enc,
                                 decoder_input_tokens=dec, encoder_segment_ids=enc_seg,
                                 decoder_segment_ids=dec_seg)
  out = np.asarray(logits) * dec_seg[:, :, None]
  return out


def ngrams(sequence, n):
  return [tuple(sequence[i:i + n]) for i in range(len(sequence) - n + 1)]
