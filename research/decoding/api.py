"""`generate`: the one entry point notebooks, probes and scripts call.

    out = decoding.generate(model_config, params, [[5, 6, 7], [8]],
                            decoding.DecodeConfig(strategy='beam', beam_width=4))
    out.best  # [batch, max_new_tokens], pad after EOS

Inputs are checked in Python first (one-line `DecodingError`), then the decode
loop of the strategy runs jitted, compiled once per (model config, decode
config, prompt shape).
"""
import functools
from typing import NamedTuple, Callable, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research import models
from research.decoding import adapters
from research.decoding import beam
from research.decoding import exhaustive
from research.decoding import sampling
from research.decoding.adapters import Prompts
from research.decoding.config import DecodeConfig, DecodingError
from research.decoding.config import check_against_model, check_prompts


class Strategy(NamedTuple):
  run: Callable
  jitted: bool  # False: an oracle that runs eagerly over unpadded prompts


def _exhaustive(module, model_config, params, prompts: Prompts, config, rng):
  del rng
  tokens, lengths = np.asarray(prompts.tokens), np.asarray(prompts.lengths)
  unpadded = [row[len(row) - n:] for row, n in zip(tokens, lengths)]
  return exhaustive.exhaustive_search(module, model_config, params, unpadded, config)


STRATEGIES = {
    'greedy': Strategy(sampling.decode_loop, jitted=True),
    'sample': Strategy(sampling.decode_loop, jitted=True),
    'beam': Strategy(beam.beam_search, jitted=True),
    'exhaustive': Strategy(_exhaustive, jitted=False),
}


def pad_prompts(prompts: Sequence[Sequence[int]], pad_id: int = 0,
                width: Optional[int] = None) -> Prompts:
  """Left-pads token lists to `width` (default: the longest)."""
  lengths = [len(p) for p in prompts]
  width = max(lengths, default=0) if width is None else width
  tokens = np.full((len(prompts), max(width, 1)), pad_id, np.int32)
  for row, prompt in enumerate(prompts):
    if len(prompt):
      tokens[row, tokens.shape[1] - len(prompt):] = np.asarray(prompt, np.int32)
  return Prompts(jnp.asarray(tokens), jnp.asarray(lengths, jnp.int32))


def compiler_options() -> dict:
  """XLA options for jitted decode loops (pass as `jax.jit(..., compiler_options=)`).

  On CPU, copy insertion with region analysis lets the while loop update each
  layer's KV cache in place; without it XLA:CPU copied every cache buffer at every
  step, so a step cost grew with the cache size (benchmarks/decode.py). The model
  half of the fix is in research/models/attention.py (`_attend_and_update_cache`).
  """
  if jax.default_backend() == 'cpu':
    return {'xla_cpu_copy_insertion_use_region_analysis': True}
  return {}


def _decode(model_config, config, params, prompts, rng):
  module = models.build(model_config)
  adapter = adapters.make_adapter(module, model_config, config)
  return STRATEGIES[config.strategy].run(adapter, params, prompts, config, rng)


@functools.cache
def _decode_jitted():
  return jax.jit(_decode, static_argnums=(0, 1), compiler_options=compiler_options())


def generate(model_config: models.TransformerConfig, params,
             prompts: Union[Sequence[Sequence[int]], Prompts],
             config: DecodeConfig = DecodeConfig(),
             rng: Optional[jax.Array] = None) -> sampling.DecodeOutput:
  """Continuations of `prompts` (token lists, or left-padded `Prompts`).

  For the encoder-decoder family the prompts are the encoder inputs and the
  decoder starts from `config.decoder_start_id`. `rng` is required to sample.
  """
  check_against_model(config, model_config)
  if not isinstance(prompts, Prompts):
    if isinstance(prompts, (str, bytes)) or any(isinstance(p, (str, bytes))
                                                for p in prompts):
      raise DecodingError('prompts must be token ids, not text: encode them with the '
                          'tokenizer first')
    lengths = [len(p) for p in prompts]
    check_prompts(config, model_config, lengths)
    prompts = pad_prompts(prompts, config.pad_id)
  else:
    check_prompts(config, model_config, [int(n) for n in np.asarray(prompts.lengths)])
    if max(np.asarray(prompts.lengths)) > prompts.tokens.shape[1]:
      raise DecodingError('Prompts.lengths exceed the width of Prompts.tokens')
  tokens = np.asarray(prompts.tokens)
  if tokens.size and (tokens.min() < 0 or tokens.max() >= model_config.vocab_size):
    raise DecodingError(f'prompt token ids must lie in [0, {model_config.vocab_size}), '
                        f'got ids from {tokens.min()} to {tokens.max()}')
  if config.strategy == 'sample' and rng is None:
    raise DecodingError("strategy='sample' needs an explicit PRNG key: pass rng=")
  rng = jax.random.PRNGKey(0) if rng is None else rng
  params = nn.meta.unbox(params)
  strategy = STRATEGIES[config.strategy]
  if strategy.jitted:
    return _decode_jitted()(model_config, config, params, prompts, rng)
  return strategy.run(models.build(model_config), model_config, params, prompts, config,
                      rng)
