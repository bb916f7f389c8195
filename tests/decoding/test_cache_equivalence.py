"""Cached decoding gives the full forward pass's logits at every step.

Each family runs a batch of prompts of different lengths (left-padded, so the
cache holds padding) and compares every step's logits with one uncached
forward pass over the unpadded row, within 1e-5 in fp32.
"""
import jax
import numpy as np
import pytest

from research import decoding
from research import models
from research.decoding import adapters
from tests.decoding import helpers

PROMPTS = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
STEPS = 8

CASES = {
    'causal_rope_mha': (dict(family='decoder', position='rope'), False),
    'prefix_alibi': (dict(family='decoder', position='alibi'), True),
    'causal_learned_gqa': (dict(family='decoder', position='learned', num_kv_heads=2), False),
    'causal_sinusoidal_mqa': (dict(family='decoder', position='sinusoidal', num_kv_heads=1,
                                   norm='layernorm'), False),
    'encoder_decoder_t5_gqa': (dict(family='encoder_decoder', position='t5_relative',
                                    num_kv_heads=2), False),
    # Long context (docs/long_context.md): RoPE scaling as if trained at 4 tokens and used
    # at 4x; sliding windows shorter than the rows, so the cache holds keys outside them.
    'causal_rope_linear': (dict(family='decoder', position='rope', rope_scaling='linear',
                                rope_scaling_factor=4.0, rope_original_length=4), False),
    'causal_rope_ntk': (dict(family='decoder', position='rope', rope_scaling='ntk',
                             rope_scaling_factor=4.0), False),
    'prefix_rope_yarn': (dict(family='decoder', position='rope', rope_scaling='yarn',
                              rope_scaling_factor=4.0, rope_original_length=4), True),
    'causal_rope_window': (dict(family='decoder', position='rope', attention_window=3,
                                num_kv_heads=2), False),
    'prefix_alibi_window': (dict(family='decoder', position='alibi', attention_window=4),
                            True),
    'encoder_decoder_t5_window': (dict(family='encoder_decoder', position='t5_relative',
                                       attention_window=2), False),
}


def _check_against_full_forward(config, params, out, prefix_lm, tol=1e-5):
  lengths = np.asarray(out.lengths[:, 0])
  generated = [np.asarray(out.tokens[i, 0, :n]) for i, n in enumerate(lengths)]
  reference = helpers.full_forward_logits(config, params, PROMPTS, generated, prefix_lm)
  for row, n in enumerate(lengths):
    np.testing.assert_allclose(np.asarray(out.logits[row, :n]), reference[row, :n],
                               atol=tol, rtol=0, err_msg=f'row {row}')
  return int(lengths.sum())


SLOW_CASES = ('causal_sinusoidal_mqa', 'causal_rope_linear', 'causal_rope_ntk',
              'prefix_alibi_window', 'encoder_decoder_t5_window')


@pytest.mark.parametrize('case', [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_CASES
                                  else c for c in sorted(CASES)])
def test_cached_logits_equal_full_forward_every_step(case):
  overrides, prefix_lm = CASES[case]
  config, params = helpers.tiny_model(**overrides)
  decode_config = decoding.DecodeConfig(max_new_tokens=STEPS, prefix_lm=prefix_lm,
                                        return_logits=True)
  out = decoding.generate(config, params, PROMPTS, decode_config)
  # Every row should run several steps, or the comparison says little.
  assert _check_against_full_forward(config, params, out, prefix_lm) >= 2 * STEPS


@pytest.mark.parametrize('family', ['decoder', pytest.param('encoder_decoder',
                                                            marks=pytest.mark.slow)])
def test_cache_holds_only_kv_heads(family):
  config, params = helpers.tiny_model(family=family, num_kv_heads=1)
  decode_config = decoding.DecodeConfig(max_new_tokens=4)
  adapter = adapters.make_adapter(models.build(config), config, decode_config)
  init = jax.jit(adapter.init, static_argnums=2)
  _, state, _ = init(params, decoding.pad_prompts(PROMPTS), 4)
  flat = jax.tree_util.tree_flatten_with_path(state['cache'])[0]
  kv = [(jax.tree_util.keystr(path), leaf.shape) for path, leaf in flat
        if leaf.ndim == 4]
  assert kv, 'no key/value caches found'
  # Layouts (research/models/attention.py `_to_cache`): keys [b, kv_heads, length,
  # head_dim], values [b, kv_heads, head_dim, length].
  for name, shape in kv:
    assert shape[1] == config.kv_heads, name
    assert (shape[3] if 'key' in name else shape[2]) == config.dims_per_head, name
  self_len = [shape[2] for name, shape in kv if 'cached_key' in name]
  expected = 5 + 4 if family == 'decoder' else 4 + 1  # prompt + new / start + new
  assert set(self_len) == {expected}


@pytest.mark.parametrize('family', ['decoder', pytest.param('encoder_decoder',
                                                            marks=pytest.mark.slow)])
def test_uncached_reference_decoding_matches_cache(family):
  config, params = helpers.tiny_model(family=family, num_kv_heads=2, seed=3)
  cached = decoding.DecodeConfig(max_new_tokens=STEPS, return_logits=True)
  out_cached = decoding.generate(config, params, PROMPTS, cached)
  out_full = decoding.generate(config, params, PROMPTS, cached.replace(use_cache=False))
  np.testing.assert_array_equal(out_cached.tokens, out_full.tokens)
  np.testing.assert_allclose(out_cached.logits, out_full.logits, atol=1e-5, rtol=0)
