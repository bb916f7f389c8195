"""RoPE scaling (position interpolation, NTK-aware, YaRN) and sliding-window attention."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.models import attention, config, layers
from research.models.kernels import gpu_attention
from tests.models import helpers

KINDS = ('linear', 'ntk', 'yarn')


def _rope_inputs(seed=0, length=12, d=16):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(2, length, 3, d)), jnp.float32)
  positions = jnp.asarray(rng.integers(0, 500, size=(2, length)), jnp.int32)
  return x, positions


@pytest.mark.parametrize('kind', ('none',) + KINDS)
def test_rope_scaling_at_factor_one_is_exactly_rope(kind):
  x, positions = _rope_inputs()
  scaling = layers.rope_scaling(16, 10000.0, kind, 1.0, original_length=32)
  np.testing.assert_array_equal(layers.apply_rope(x, positions, 10000.0, scaling),
                                layers.apply_rope(x, positions, 10000.0))


@pytest.mark.parametrize('kind', [pytest.param('linear', marks=pytest.mark.slow),
                                  pytest.param('ntk', marks=pytest.mark.slow), 'yarn'])
def test_a_model_with_rope_scaling_at_factor_one_is_the_rope_model(kind):
  plain = helpers.tiny(position='rope')
  scaled = plain.replace(rope_scaling=kind, rope_scaling_factor=1.0, rope_original_length=8)
  feats = helpers.features(plain, length=16)
  params = helpers.init(plain, feats)
  np.testing.assert_array_equal(helpers.apply(scaled, params, feats),
                                helpers.apply(plain, params, feats))


@pytest.mark.parametrize('factor', [2.0, 3.0, 4.0, 8.0])
def test_linear_interpolation_on_scaled_positions_is_rope(factor):
  """Chen et al. 2023: position interpolation at factor s reads position s*i as i."""
  x, positions = _rope_inputs(length=10)
  scaling = layers.rope_scaling(16, 10000.0, 'linear', factor)
  scaled_positions = (positions * int(factor)).astype(jnp.int32)
  np.testing.assert_array_equal(layers.apply_rope(x, scaled_positions, 10000.0, scaling),
                                layers.apply_rope(x, positions, 10000.0))


def test_a_linearly_interpolated_model_on_scaled_positions_is_the_rope_model():
  plain = helpers.tiny(position='rope')
  scaled = plain.replace(rope_scaling='linear', rope_scaling_factor=4.0)
  feats = helpers.features(plain, length=12)
  params = helpers.init(plain, feats)
  positions = jnp.broadcast_to(jnp.arange(12, dtype=jnp.int32), (2, 12))
  out_plain = helpers.apply(plain, params, {**feats, 'decoder_positions': positions})
  out_scaled = helpers.apply(scaled, params, {**feats, 'decoder_positions': 4 * positions})
  np.testing.assert_array_equal(out_scaled, out_plain)
  # ... and on the unscaled positions it is a different function.
  assert np.abs(np.asarray(helpers.apply(scaled, params, {
      **feats, 'decoder_positions': positions})) - np.asarray(out_plain)).max() > 1e-4


def _hf_rope(rope_type, d, heads, max_positions, seq_len=None, **parameters):
  """(inv_freq, attention_factor) from Hugging Face transformers' ROPE_INIT_FUNCTIONS."""
  transformers = pytest.importorskip('transformers')
  from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
  hf_config = transformers.LlamaConfig(
      hidden_size=d * heads, num_attention_heads=heads, max_position_embeddings=max_positions,
      rope_parameters={'rope_type': rope_type, 'rope_theta': 10000.0, **parameters})
  inv_freq, factor = ROPE_INIT_FUNCTIONS[rope_type](hf_config, None, seq_len=seq_len)
  return inv_freq.numpy(), factor


@pytest.mark.parametrize('d,factor,original', [(16, 4.0, 32), (64, 8.0, 128), (16, 2.5, 64),
                                               (128, 16.0, 2048)])
def test_yarn_matches_hugging_face(d, factor, original):
  ours = layers.rope_scaling(d, 10000.0, 'yarn', factor, original_length=original)
  inv_freq, attention_factor = _hf_rope('yarn', d, 4, int(original * factor), factor=factor,
                                        original_max_position_embeddings=original)
  np.testing.assert_allclose(ours.inv_freq(d), inv_freq, rtol=1e-6)
  np.testing.assert_allclose(ours.attention_factor, attention_factor, rtol=1e-12)
  assert ours.attention_factor == pytest.approx(0.1 * np.log(factor) + 1)
  # The ramp: the highest frequencies extrapolate, the lowest interpolate by `factor`.
  plain = layers.rope_scaling(d, 10000.0).inv_freq(d)
  ratio = np.asarray(ours.inv_freq(d) / plain)
  assert ratio[0] == 1.0 and ratio[-1] == pytest.approx(1 / factor)


@pytest.mark.parametrize('d,factor', [(16, 4.0), (64, 8.0), (32, 2.0)])
def test_ntk_matches_hugging_face(d, factor):
  """HF's dynamic NTK at factor 1 and sequence length s * L is the static base
  theta * s^(d/(d-2))."""
  ours = layers.rope_scaling(d, 10000.0, 'ntk', factor)
  inv_freq, attention_factor = _hf_rope('dynamic', d, 4, 32, seq_len=int(32 * factor),
                                        factor=1.0)
  np.testing.assert_allclose(ours.inv_freq(d), inv_freq, rtol=1e-6)
  assert attention_factor == ours.attention_factor == 1.0
  # The lowest frequency is interpolated by exactly `factor`, the highest left alone.
  plain = np.asarray(layers.rope_scaling(d, 10000.0).inv_freq(d))
  np.testing.assert_allclose(np.asarray(ours.inv_freq(d))[[0, -1]],
                             [plain[0], plain[-1] / factor], rtol=1e-5)


def test_linear_matches_hugging_face():
  ours = layers.rope_scaling(16, 10000.0, 'linear', 4.0)
  inv_freq, _ = _hf_rope('linear', 16, 4, 32, factor=4.0)
  np.testing.assert_allclose(np.asarray(ours.inv_freq(16)) / ours.position_divisor,
                             inv_freq, rtol=1e-6)


@pytest.mark.parametrize('fields,message', [
    (dict(rope_scaling='linear', rope_scaling_factor=0.0), 'rope_scaling_factor must be > 0, got 0.0'),
    (dict(rope_scaling='yarn', rope_scaling_factor=-2.0), 'rope_scaling_factor must be > 0, got -2.0'),
    (dict(rope_scaling='log'), "rope_scaling='log' is not one of none, linear, ntk, yarn"),
    (dict(rope_scaling='ntk', position='alibi'), "needs position='rope'"),
    (dict(attention_window=65), 'attention_window=65 is larger than the context max_length=64'),
    (dict(attention_window=0), 'attention_window must be positive or None, got 0'),
    (dict(yarn_beta_fast=1.0, yarn_beta_slow=2.0), '0 < beta_slow < beta_fast'),
    (dict(block_positions=True, family='encoder'), "block_positions (GLM 2D positions) needs"),
])
def test_bad_long_context_fields_are_one_line_naming_the_value(fields, message):
  with pytest.raises(config.ConfigError) as error:
    helpers.tiny(**fields)
  line = str(error.value).splitlines()[0]  # gin appends its call site on the next lines
  assert message in line and '\n' not in line


@pytest.mark.parametrize('impl', ['einsum', 'blocked',
                                  pytest.param('dot_product', marks=pytest.mark.slow)])
def test_a_window_of_the_full_length_is_full_attention(impl):
  plain = helpers.tiny(position='rope', attention_impl=impl)
  windowed = plain.replace(attention_window=plain.max_length)
  feats = helpers.features(plain, length=plain.max_length)
  params = helpers.init(plain, feats)
  np.testing.assert_array_equal(helpers.apply(windowed, params, feats),
                                helpers.apply(plain, params, feats))


@pytest.mark.parametrize('impl,prefix', [('einsum', False), ('blocked', True),
                                         pytest.param('blocked', False, marks=pytest.mark.slow),
                                         pytest.param('einsum', True, marks=pytest.mark.slow)])
def test_a_windowed_query_sees_exactly_the_last_w_tokens(impl, prefix):
  """One layer: token t reaches the outputs t .. t + W - 1 and no others (in a
  bidirectional prefix also the W - 1 before it)."""
  window = 3
  cfg = helpers.tiny(position='rope', num_layers=1, attention_window=window,
                     attention_impl=impl)
  feats = helpers.features(cfg, length=12)
  if prefix:
    feats['decoder_causal_attention'] = jnp.asarray(np.arange(12)[None].repeat(2, 0) < 6,
                                                    jnp.int32)
  params = helpers.init(cfg, feats)
  base = np.asarray(helpers.apply(cfg, params, feats))
  for t in (0, 4, 9):
    changed = dict(feats)
    changed['decoder_input_tokens'] = feats['decoder_input_tokens'].at[:, t].add(1)
    delta = np.abs(np.asarray(helpers.apply(cfg, params, changed)) - base).max(axis=(0, 2))
    lo = max(t - window + 1, 0) if prefix and t < 6 else t
    hi = t + window
    expected = (np.arange(12) >= lo) & (np.arange(12) < hi)
    np.testing.assert_array_equal(delta > 0, expected, err_msg=f't={t}')


def test_make_mask_window_against_loops():
  rng = np.random.default_rng(0)
  seg = jnp.asarray([[1, 1, 1, 1, 2, 2, 2, 0], [1] * 8])
  idx = jnp.broadcast_to(jnp.arange(8), (2, 8))
  prefix = jnp.asarray(rng.random((2, 8)) < 0.4)
  for causal in (True, False):
    mask = np.asarray(attention.make_mask(seg, seg, causal=causal, q_index=idx, k_index=idx,
                                          q_prefix=prefix, k_prefix=prefix, window=3))[:, 0]
    for b in range(2):
      for i in range(8):
        for j in range(8):
          same = seg[b, i] == seg[b, j] != 0
          seen = (j <= i or bool(prefix[b, i] and prefix[b, j])) if causal else True
          assert mask[b, i, j] == (same and seen and abs(i - j) < 3), (causal, b, i, j)


@pytest.mark.parametrize('length,batch', [pytest.param(256, 2, marks=pytest.mark.slow),
                                          (128, 8)])
def test_blocked_and_tiled_attention_honour_a_window_values_and_gradients(length, batch):
  """4 blocks at 256 (batch x heads 8), 2 tiles at 128 (32): the window's mask against
  the reference, forward and hand-written backward."""
  rng = np.random.default_rng(1)
  q, k, v = (jnp.asarray(rng.normal(size=(batch, length, h, 8)), jnp.float32)
             for h in (4, 2, 2))
  seg = jnp.ones((batch, length), jnp.int32)
  idx = jnp.broadcast_to(jnp.arange(length), (batch, length))
  mask = attention.make_mask(seg, seg, causal=True, q_index=idx, k_index=idx, window=40)
  weight = jnp.asarray(rng.normal(size=(batch, length, 4, 8)), jnp.float32)
  impls = {
      'einsum': lambda q, k, v: attention.einsum_attention(q, k, v, mask, None, 8 ** -0.5),
      'blocked': lambda q, k, v: attention.blocked_attention(
          q, k, v, mask, None, 8 ** -0.5, lower_triangular=True, window=40),
      'cudnn': lambda q, k, v: attention.cudnn_attention(  # off GPU: blocked
          q, k, v, mask, None, 8 ** -0.5, lower_triangular=True, window=40)}
  outs = {name: np.asarray(f(q, k, v)) for name, f in impls.items()}
  full = np.asarray(attention.einsum_attention(q, k, v, attention.make_mask(
      seg, seg, causal=True, q_index=idx, k_index=idx), None, 8 ** -0.5))
  assert np.abs(outs['einsum'][:, 40:] - full[:, 40:]).max() > 1e-3  # the window matters
  # The first W queries see every earlier key anyway.
  np.testing.assert_array_equal(outs['einsum'][:, :40], full[:, :40])
  for name in ('blocked', 'cudnn'):
    np.testing.assert_allclose(outs[name], outs['einsum'], rtol=1e-5, atol=1e-6, err_msg=name)
  grads = {name: jax.grad(lambda q, k, v, f=f: jnp.sum(f(q, k, v) * weight),
                          argnums=(0, 1, 2))(q, k, v) for name, f in impls.items()}
  for name, ref, got in zip('qkv', grads['einsum'], grads['blocked']):
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=2e-5, err_msg=f'd{name}')


def test_cudnn_branch_with_a_window():
  """The band of the last W keys is cuDNN's causal call with local_window_size; padding
  inside it needs the mask as well; a prefix reaching above the diagonal the masked call."""
  n, w = 8, 3
  seg = jnp.ones((1, n), jnp.int32)
  idx = jnp.arange(n)[None]
  band = attention.make_mask(seg, seg, causal=True, q_index=idx, k_index=idx, window=w)
  assert int(gpu_attention.cudnn_branch(band, w)) == 0
  assert int(gpu_attention.cudnn_branch(band)) == 1  # without the window: not exactly causal
  padded = seg.at[0, -2:].set(0)
  assert int(gpu_attention.cudnn_branch(attention.make_mask(
      padded, padded, causal=True, q_index=idx, k_index=idx, window=w), w)) == 1
  prefix = jnp.arange(n)[None] < 4
  assert int(gpu_attention.cudnn_branch(attention.make_mask(
      seg, seg, causal=True, q_index=idx, k_index=idx, q_prefix=prefix, k_prefix=prefix,
      window=w), w)) == 2
