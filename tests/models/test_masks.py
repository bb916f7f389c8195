"""Who sees whom: causal, prefix, encoder-decoder masks, and packing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.models.attention import make_mask
from tests.models import helpers

POSITIONS = ['rope', 'learned', 'sinusoidal', 'alibi', 't5_relative']


def _influence(cfg, params, feats, key, t):
  """|d logits / d embedding of token t| per output position, via perturbation."""
  base = helpers.apply(cfg, params, feats)
  changed = dict(feats)
  changed[key] = feats[key].at[:, t].set((feats[key][:, t] % (cfg.vocab_size - 1)) + 1)
  delta = jnp.abs(helpers.apply(cfg, params, changed) - base).max(axis=(0, 2))
  return np.asarray(delta)


@pytest.mark.parametrize('position', POSITIONS)
def test_causal_decoder_never_looks_ahead(position):
  cfg = helpers.tiny(position=position)
  feats = helpers.features(cfg)
  params = helpers.init(cfg, feats)
  for t in (0, 3, 7):
    delta = _influence(cfg, params, feats, 'decoder_input_tokens', t)
    assert np.all(delta[:t] == 0), (t, delta)
    assert np.all(delta[t:] > 0), (t, delta)


@pytest.mark.parametrize('position', ['rope', 'alibi', 't5_relative'])
def test_prefix_decoder_is_bidirectional_in_prefix_only(position):
  cfg = helpers.tiny(position=position)
  feats = helpers.features(cfg)
  prefix_len = 4
  feats['decoder_causal_attention'] = jnp.asarray(
      np.arange(8)[None].repeat(2, 0) < prefix_len, jnp.int32)
  params = helpers.init(cfg, feats)
  # A prefix token influences every prefix position (and everything after).
  for t in range(prefix_len):
    delta = _influence(cfg, params, feats, 'decoder_input_tokens', t)
    assert np.all(delta > 0), (t, delta)
  # A target token influences no position before it.
  for t in range(prefix_len, 8):
    delta = _influence(cfg, params, feats, 'decoder_input_tokens', t)
    assert np.all(delta[:t] == 0) and np.all(delta[t:] > 0), (t, delta)


def test_encoder_decoder_visibility():
  cfg = helpers.tiny(family='encoder_decoder', position='t5_relative')
  feats = helpers.features(cfg)
  params = helpers.init(cfg, feats)
  # Every encoder token reaches every decoder position.
  for t in range(8):
    assert np.all(_influence(cfg, params, feats, 'encoder_input_tokens', t) > 0)
  # The decoder is causal.
  for t in (0, 2, 5):
    delta = _influence(cfg, params, feats, 'decoder_input_tokens', t)
    assert np.all(delta[:t] == 0) and np.all(delta[t:] > 0)
  # Inside the encoder every position sees every other.
  module = helpers.models.build(cfg)
  encode = lambda tokens: module.apply({'params': params}, tokens, method='encode')[0]
  tokens = feats['encoder_input_tokens']
  base = encode(tokens)
  for t in range(8):
    delta = jnp.abs(encode(tokens.at[:, t].add(1)) - base).max(axis=(0, 2))
    assert np.all(np.asarray(delta) > 0)


def test_encoder_only_is_bidirectional():
  cfg = helpers.tiny(family='encoder', position='learned', norm='layernorm',
                     norm_position='post', activation='gelu_exact', use_bias=True)
  feats = helpers.features(cfg)
  params = helpers.init(cfg, feats)
  for t in range(8):
    assert np.all(_influence(cfg, params, feats, 'encoder_input_tokens', t) > 0)


def _pack(a, b, total):
  """Concatenate two rows into one packed row with segment ids and positions."""
  pad = total - a.shape[-1] - b.shape[-1]
  tokens = jnp.concatenate([a, b, jnp.zeros((pad,), a.dtype)])
  segments = jnp.asarray([1] * a.shape[-1] + [2] * b.shape[-1] + [0] * pad, jnp.int32)
  positions = jnp.asarray(list(range(a.shape[-1])) + list(range(b.shape[-1])) + [0] * pad,
                          jnp.int32)
  return tokens[None], segments[None], positions[None]


@pytest.mark.parametrize('position', POSITIONS)
@pytest.mark.parametrize('impl', ['einsum', 'dot_product', 'blocked'])
def test_packing_decoder_equals_separate(position, impl):
  cfg = helpers.tiny(position=position, attention_impl=impl, num_kv_heads=2)
  rng = np.random.default_rng(1)
  a = jnp.asarray(rng.integers(1, 64, 5), jnp.int32)
  b = jnp.asarray(rng.integers(1, 64, 7), jnp.int32)
  params = helpers.init(cfg, {'decoder_input_tokens': a[None]})
  tokens, seg, pos = _pack(a, b, 14)
  # The second example is a prefix-LM example: packing must keep its prefix.
  prefix = jnp.asarray([[0] * 5 + [1] * 3 + [0] * 6], jnp.int32)
  packed = helpers.apply(cfg, params, {
      'decoder_input_tokens': tokens, 'decoder_segment_ids': seg,
      'decoder_positions': pos, 'decoder_causal_attention': prefix})
  alone_a = helpers.apply(cfg, params, {'decoder_input_tokens': a[None]})
  alone_b = helpers.apply(cfg, params, {'decoder_input_tokens': b[None],
                                        'decoder_causal_attention': prefix[:, 5:12]})
  np.testing.assert_allclose(packed[0, :5], alone_a[0], atol=1e-5)
  np.testing.assert_allclose(packed[0, 5:12], alone_b[0], atol=1e-5)
  assert np.all(np.isfinite(np.asarray(packed)))


def test_packing_encoder_decoder_equals_separate():
  cfg = helpers.tiny(family='encoder_decoder', position='t5_relative')
  rng = np.random.default_rng(2)
  ea, eb = (jnp.asarray(rng.integers(1, 64, n), jnp.int32) for n in (6, 4))
  da, db = (jnp.asarray(rng.integers(1, 64, n), jnp.int32) for n in (3, 5))
  params = helpers.init(cfg, {'encoder_input_tokens': ea[None],
                              'decoder_input_tokens': da[None]})
  e_tok, e_seg, e_pos = _pack(ea, eb, 12)
  d_tok, d_seg, d_pos = _pack(da, db, 9)
  packed = helpers.apply(cfg, params, {
      'encoder_input_tokens': e_tok, 'encoder_segment_ids': e_seg,
      'encoder_positions': e_pos, 'decoder_input_tokens': d_tok,
      'decoder_segment_ids': d_seg, 'decoder_positions': d_pos})
  for (e, d, lo, hi) in ((ea, da, 0, 3), (eb, db, 3, 8)):
    alone = helpers.apply(cfg, params, {'encoder_input_tokens': e[None],
                                        'decoder_input_tokens': d[None]})
    np.testing.assert_allclose(packed[0, lo:hi], alone[0], atol=1e-5)


def test_default_positions_restart_per_segment():
  cfg = helpers.tiny(position='learned')
  rng = np.random.default_rng(3)
  a = jnp.asarray(rng.integers(1, 64, 4), jnp.int32)
  b = jnp.asarray(rng.integers(1, 64, 4), jnp.int32)
  params = helpers.init(cfg, {'decoder_input_tokens': a[None]})
  tokens, seg, pos = _pack(a, b, 10)
  explicit = helpers.apply(cfg, params, {'decoder_input_tokens': tokens,
                                         'decoder_segment_ids': seg,
                                         'decoder_positions': pos})
  derived = helpers.apply(cfg, params, {'decoder_input_tokens': tokens,
                                        'decoder_segment_ids': seg})
  np.testing.assert_array_equal(explicit[:, :8], derived[:, :8])


def test_make_mask_against_loops():
  rng = np.random.default_rng(4)
  seg = rng.integers(0, 3, (2, 9))
  prefix = rng.integers(0, 2, (2, 9)).astype(bool)
  idx = np.broadcast_to(np.arange(9), (2, 9))
  mask = np.asarray(make_mask(jnp.asarray(seg), jnp.asarray(seg), causal=True,
                              q_index=jnp.asarray(idx), k_index=jnp.asarray(idx),
                              q_prefix=jnp.asarray(prefix), k_prefix=jnp.asarray(prefix)))
  for b in range(2):
    for q in range(9):
      for k in range(9):
        want = (seg[b, q] == seg[b, k] != 0) and (k <= q or (prefix[b, q] and prefix[b, k]))
        assert mask[b, 0, q, k] == want
