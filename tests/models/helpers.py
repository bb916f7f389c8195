"""Tiny configs and feature builders shared by the model tests."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research import models


def tiny(**overrides) -> models.TransformerConfig:
  base = dict(vocab_size=64, d_model=32, num_layers=2, num_heads=4, d_ff=64,
              max_length=64)
  base.update(overrides)
  return models.TransformerConfig(**base)


def features(cfg, batch=2, length=8, target_length=6, seed=0):
  rng = np.random.default_rng(seed)
  tokens = lambda n: jnp.asarray(rng.integers(1, cfg.vocab_size, (batch, n)), jnp.int32)
  if cfg.family == 'decoder':
    return {'decoder_input_tokens': tokens(length)}
  if cfg.family == 'encoder':
    return {'encoder_input_tokens': tokens(length)}
  return {'encoder_input_tokens': tokens(length),
          'decoder_input_tokens': tokens(target_length)}


def init(cfg, feats, seed=0):
  module = models.build(cfg)
  variables = jax.jit(lambda key, f: module.init(key, **f))(jax.random.key(seed), feats)
  return nn.unbox(variables['params'])


@functools.lru_cache(maxsize=None)
def _jitted_apply(cfg, static_kwargs):
  module = models.build(cfg)
  return jax.jit(lambda params, feats: module.apply({'params': params}, **feats,
                                                    **dict(static_kwargs)))


def apply(cfg, params, feats, **kwargs):
  """Jitted forward pass (eager linen is slow); kwargs are static flags."""
  return _jitted_apply(cfg, tuple(sorted(kwargs.items())))(params, feats)


def token_key(cfg):
  return 'decoder_input_tokens' if cfg.family == 'decoder' else (
      'encoder_input_tokens' if cfg.family == 'encoder' else 'decoder_input_tokens')
