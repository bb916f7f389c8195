"""Attention variants against plain references: GQA/MQA, RoPE, implementations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.models import attention, config, layers
from research.models.kernels import cpu_attention, gpu_attention
from tests.models import helpers


def _expand_kv_heads(params, num_heads, num_kv_heads):
  """MHA weights whose key/value heads repeat each GQA head num_heads/num_kv_heads
  times, in HF's repeat_kv order (query head h reads kv head h // group)."""
  group = num_heads // num_kv_heads

  def expand(tree):
    if isinstance(tree, dict):
      out = {}
      for name, sub in tree.items():
        if name in ('key', 'value'):
          out[name] = {k: jnp.repeat(v, group, axis=1 if k == 'kernel' else 0)
                       for k, v in sub.items()}
        else:
          out[name] = expand(sub)
      return out
    return tree
  return expand(params)


@pytest.mark.parametrize('num_kv_heads', [1, 2])
@pytest.mark.parametrize('family', ['decoder', 'encoder_decoder'])
def test_gqa_equals_mha_with_repeated_heads(num_kv_heads, family):
  gqa = helpers.tiny(family=family, num_kv_heads=num_kv_heads, use_bias=True)
  mha = gqa.replace(num_kv_heads=None)
  feats = helpers.features(gqa)
  params = helpers.init(gqa, feats)
  # Non-zero biases, so the bias expansion is checked too.
  params = jax.tree.map(lambda x: x + 0.01 * jnp.arange(x.size).reshape(x.shape) / x.size,
                        params)
  expanded = _expand_kv_heads(params, 4, num_kv_heads)
  assert expanded['token_embed']['embedding'].shape == params['token_embed']['embedding'].shape
  np.testing.assert_allclose(helpers.apply(gqa, params, feats),
                             helpers.apply(mha, expanded, feats), atol=1e-5)


def test_mqa_is_gqa_with_one_kv_head():
  cfg = helpers.tiny(num_kv_heads=1)
  params = helpers.init(cfg, helpers.features(cfg))
  kernel = params['decoder']['layers_0']['attn']['key']['kernel']
  assert kernel.shape == (32, 1, 8)


def test_rope_scores_depend_only_on_relative_position():
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(1, 1, 2, 16)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(1, 1, 2, 16)), jnp.float32)

  def score(pq, pk):
    rq = layers.apply_rope(q, jnp.asarray([[pq]]), 10000.0)
    rk = layers.apply_rope(k, jnp.asarray([[pk]]), 10000.0)
    return jnp.einsum('bqhd,bkhd->h', rq, rk)

  for shift in (1, 7, 100, 1000):
    np.testing.assert_allclose(score(3, 1), score(3 + shift, 1 + shift), rtol=1e-4,
                               atol=1e-4)
  assert not np.allclose(score(3, 1), score(3, 2), atol=1e-3)


def test_rope_model_is_shift_invariant():
  """Shifting every position of a RoPE model leaves its logits unchanged."""
  cfg = helpers.tiny(position='rope')
  feats = helpers.features(cfg)
  params = helpers.init(cfg, feats)
  pos = jnp.broadcast_to(jnp.arange(8), (2, 8))
  a = helpers.apply(cfg, params, {**feats, 'decoder_positions': pos})
  b = helpers.apply(cfg, params, {**feats, 'decoder_positions': pos + 37})
  np.testing.assert_allclose(a, b, atol=2e-5)


@pytest.mark.parametrize('bias', [False, True])
def test_einsum_and_dot_product_attention_agree(bias):
  rng = np.random.default_rng(1)
  q = jnp.asarray(rng.normal(size=(2, 5, 4, 8)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(2, 7, 2, 8)), jnp.float32)
  v = jnp.asarray(rng.normal(size=(2, 7, 2, 8)), jnp.float32)
  seg_q = jnp.asarray([[1, 1, 1, 2, 0], [1, 1, 1, 1, 1]])
  seg_k = jnp.asarray([[1, 1, 1, 2, 2, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
  mask = attention.make_mask(seg_q, seg_k, causal=False)
  b = jnp.asarray(rng.normal(size=(2, 4, 5, 7)), jnp.float32) if bias else None
  ref = attention.einsum_attention(q, k, v, mask, b, 8 ** -0.5)
  fast = attention.dot_product_attention(q, k, v, mask, b, 8 ** -0.5)
  np.testing.assert_allclose(ref, fast, atol=1e-5)


def _blocked_case(length, prefix_at=None, seed=3, kv_heads=2, batch=2):
  """q, k, v (4 query heads; GQA with the default 2 kv heads), a causal mask (even rows
  packed with padding, odd rows one sequence, with an optional bidirectional prefix), and
  a loss weight that ignores the padding rows."""
  rng = np.random.default_rng(seed)
  q, k, v = (jnp.asarray(rng.normal(size=(batch, length, h, 8)), jnp.float32)
             for h in (4, kv_heads, kv_heads))
  cut, pad = length * 5 // 8, length // 16
  seg = jnp.asarray([[1] * cut + [2] * (length - cut - pad) + [0] * pad, [1] * length]
                    * (batch // 2))
  idx = jnp.broadcast_to(jnp.arange(length), (batch, length))
  prefix = None
  if prefix_at is not None:
    prefix = jnp.zeros((batch, length), bool).at[1::2, :prefix_at].set(True)
  mask = attention.make_mask(seg, seg, causal=True, q_index=idx, k_index=idx,
                             q_prefix=prefix, k_prefix=prefix)
  weight = jnp.asarray(rng.normal(size=(batch, length, 4, 8)), jnp.float32)
  return q, k, v, mask, weight * (seg > 0)[:, :, None, None]


@pytest.mark.parametrize('length,prefix_at,batch', [
    (512, None, 2), (256, None, 2), (256, None, 8), (256, 100, 8), (128, None, 8),
    (40, None, 2)])
def test_blocked_attention_matches_einsum_values_and_gradients(length, prefix_at, batch):
  """Blocks (8 at 512; 4 at 256 with batch x heads 8), tiles (4 at 256, 2 at 128, batch x
  heads 32), neither at 40, the run-time fallback when a prefix reaches above the block
  diagonal, and the hand-written backwards against autodiff of the reference, on every
  non-padding row."""
  q, k, v, mask, weight = _blocked_case(length, prefix_at, batch=batch)
  losses = {impl: (lambda q, k, v, f=attention.ATTENTION_IMPLS[impl]: jnp.sum(
      f(q, k, v, mask, None, 8 ** -0.5) * weight)) for impl in ('einsum', 'blocked')}
  np.testing.assert_allclose(losses['blocked'](q, k, v), losses['einsum'](q, k, v),
                             rtol=1e-5)
  if prefix_at is None:  # the caller's promise: nothing above the diagonal, no run-time check
    losses['promised'] = lambda q, k, v: jnp.sum(attention.blocked_attention(
        q, k, v, mask, None, 8 ** -0.5, lower_triangular=True) * weight)
    np.testing.assert_allclose(losses['promised'](q, k, v), losses['einsum'](q, k, v),
                               rtol=1e-5)
  grads = {impl: jax.grad(f, argnums=(0, 1, 2))(q, k, v) for impl, f in losses.items()}
  for impl in grads.keys() - {'einsum'}:
    for ref, got in zip(grads['einsum'], grads[impl]):
      np.testing.assert_allclose(got, ref, atol=2e-5)
  assert len(cpu_attention._query_blocks(length, length)) == {512: 8, 256: 4, 128: 2,
                                                          40: 1}[length]


@pytest.mark.parametrize('length,batch', [(256, 8), (512, 2)])
def test_blocked_attention_in_bfloat16_keeps_the_reference_gradients(length, batch):
  """bf16 inputs (4 tiles at 256, 8 blocks at 512): outputs and gradients in bf16, dq, dk
  and dv summed over tiles or blocks in fp32, within 2% of the fp32 reference's largest
  entry (bf16 inputs through the einsum reference: 0.4-0.7%)."""
  q, k, v, mask, weight = _blocked_case(length, batch=batch)
  def loss(q, k, v, impl):
    return jnp.sum(attention.ATTENTION_IMPLS[impl](q, k, v, mask, None, 8 ** -0.5)
                   .astype(jnp.float32) * weight)
  ref = jax.grad(loss, argnums=(0, 1, 2))(q, k, v, 'einsum')
  half = [x.astype(jnp.bfloat16) for x in (q, k, v)]
  got = jax.grad(loss, argnums=(0, 1, 2))(*half, 'blocked')
  for r, g in zip(ref, got):
    assert g.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(g, np.float32), r, atol=0.02 * float(jnp.abs(r).max()))


def test_blocked_attention_checks_the_mask_only_where_a_prefix_may_reach_above():
  """A causal decoder's attention knows at trace time that its mask has nothing above the
  diagonal (no lax.cond in the step); a prefix-LM batch still checks at run time."""
  cfg = helpers.tiny(max_length=128, attention_impl='blocked')
  feats = helpers.features(cfg, length=128)
  params = helpers.init(cfg, feats)
  jaxpr = str(jax.make_jaxpr(lambda p: helpers.apply(cfg, p, feats))(params))
  assert 'cond[' not in jaxpr
  q, k, v, mask, _ = _blocked_case(128, prefix_at=100)
  jaxpr = str(jax.make_jaxpr(attention.blocked_attention, static_argnums=(4, 5))(
      q, k, v, mask, None, 0.3))
  assert 'cond[' in jaxpr


def test_blocked_attention_with_bias_is_the_reference():
  q, k, v, mask, _ = _blocked_case(128)
  bias = jnp.asarray(np.random.default_rng(4).normal(size=(2, 4, 128, 128)), jnp.float32)
  np.testing.assert_array_equal(attention.blocked_attention(q, k, v, mask, bias, 0.3),
                                attention.einsum_attention(q, k, v, mask, bias, 0.3))


def test_cudnn_branch_follows_the_mask():
  """cuDNN's causal kernel (branches 0 and 1) only where nothing lies above the diagonal,
  and no bias (branch 0) only for the exact causal mask."""
  t = 16
  idx = jnp.broadcast_to(jnp.arange(t), (2, t))
  ones = jnp.ones((2, t), jnp.int32)
  packed = jnp.asarray([[1] * 6 + [2] * 8 + [0] * 2, [1] * t])
  prefix = jnp.zeros((2, t), bool).at[1, :5].set(True)
  cases = [(ones, True, None, 0), (packed, True, None, 1), (packed, False, None, 2),
           (ones, False, None, 2), (ones, True, prefix, 2)]
  for seg, causal, pre, expected in cases:
    mask = attention.make_mask(seg, seg, causal=causal, q_index=idx, k_index=idx,
                               q_prefix=pre, k_prefix=pre)
    assert int(gpu_attention.cudnn_branch(mask)) == expected


def test_cudnn_attention_off_gpu_is_blocked():
  """Off a GPU (and in fp32) 'cudnn' is the blocked path; the GPU side is checked
  against the reference by benchmarks/attention_check.py."""
  q, k, v, mask, _ = _blocked_case(128)
  np.testing.assert_array_equal(attention.cudnn_attention(q, k, v, mask, None, 0.3),
                                attention.blocked_attention(q, k, v, mask, None, 0.3))


def test_blocked_attention_trains_a_decoder_like_the_reference():
  """Loss and every parameter gradient of a packed 2-block decoder batch agree."""
  from research.models import losses  # pylint: disable=g-import-not-at-top
  ref_cfg = helpers.tiny(num_kv_heads=2, max_length=128, attention_impl='einsum')
  feats = helpers.features(ref_cfg, length=128)
  seg = jnp.asarray([[1] * 70 + [2] * 50 + [0] * 8] * 2)
  feats.update(decoder_segment_ids=seg, decoder_positions=jnp.asarray(
      [list(range(70)) + list(range(50)) + [0] * 8] * 2))
  params = helpers.init(ref_cfg, feats)

  def loss(cfg):
    def f(p):
      logits = helpers.apply(cfg, p, feats)
      return losses.cross_entropy_loss(logits, feats['decoder_input_tokens'], seg > 0)[0]
    return jax.value_and_grad(f)(params)

  (ref_loss, ref_grads), (got_loss, got_grads) = (
      loss(ref_cfg), loss(ref_cfg.replace(attention_impl='blocked')))
  np.testing.assert_allclose(got_loss, ref_loss, rtol=1e-6)
  for ref, got in zip(jax.tree.leaves(ref_grads), jax.tree.leaves(got_grads)):
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_einsum_attention_matches_naive_loops():
  rng = np.random.default_rng(2)
  q = rng.normal(size=(1, 3, 4, 2)).astype(np.float32)
  k = rng.normal(size=(1, 3, 2, 2)).astype(np.float32)
  v = rng.normal(size=(1, 3, 2, 2)).astype(np.float32)
  seg = jnp.ones((1, 3), jnp.int32)
  idx = jnp.arange(3)[None]
  mask = attention.make_mask(seg, seg, causal=True, q_index=idx, k_index=idx)
  out = np.asarray(attention.einsum_attention(q, k, v, mask, None, 0.5))
  for h in range(4):
    g = h // 2
    for i in range(3):
      s = np.array([q[0, i, h] @ k[0, j, g] * 0.5 for j in range(i + 1)])
      p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
      np.testing.assert_allclose(out[0, i, h], p @ v[0, :i + 1, g], atol=1e-6)


def test_alibi_slopes_match_paper():
  # Press et al. 2022: 8 heads -> 1/2, 1/4, ..., 1/256.
  np.testing.assert_allclose(layers.alibi_slopes(8), [2.0 ** -(i + 1) for i in range(8)])
  assert layers.alibi_slopes(12).shape == (12,)


def test_t5_buckets_match_reference_values():
  # T5 _relative_position_bucket, 32 buckets, max distance 128; worked by hand,
  # e.g. -64 causal: 16 + int(log(64/16) / log(128/16) * 16) = 26.
  rel = jnp.asarray([-200, -64, -10, -1, 0, 1, 10, 64, 200])
  bidir = layers.t5_relative_bucket(rel, True, 32, 128)
  np.testing.assert_array_equal(bidir, [15, 14, 8, 1, 0, 17, 24, 30, 31])
  causal = layers.t5_relative_bucket(rel, False, 32, 128)
  np.testing.assert_array_equal(causal, [31, 26, 10, 1, 0, 0, 0, 0, 0])


def test_blocked_attention_releases_its_blocks_together_on_cpu():
  """On CPU the blocks' operands, then their logits, pass one optimization barrier each,
  so that XLA:CPU deals the blocks' single-threaded dots to every thread."""
  q, k, v, mask, _ = _blocked_case(512)
  run = lambda *a: attention.blocked_attention(*a, None, 0.3, lower_triangular=True)
  assert len(cpu_attention._query_blocks(512, 512)) == 8  # pylint: disable=protected-access
  assert str(jax.make_jaxpr(run)(q, k, v, mask)).count('optimization_barrier') == 2


@pytest.mark.parametrize('length,tiles,kv_heads', [(256, 4, 2), (192, 3, 4), (128, 2, 1)])
def test_short_causal_attention_runs_as_tiles(length, tiles, kv_heads):
  """Up to 4 blocks and with batch x heads at least 32, causal attention is a query-key
  and a probabilities-value dot per (query tile, earlier or same key tile) pair, each over
  whole tiles: no slices of the keys, no barriers; values and gradients as the
  reference's (GQA, MHA, MQA). With a smaller batch it stays blocked (two dots a block)."""
  run = lambda *a: attention.blocked_attention(*a, None, 0.3, lower_triangular=True)
  small = _blocked_case(length, kv_heads=kv_heads)[:4]
  jaxpr = str(jax.make_jaxpr(run)(*small))
  assert jaxpr.count('dot_general') == 2 * tiles and 'optimization_barrier' in jaxpr
  q, k, v, mask, weight = _blocked_case(length, kv_heads=kv_heads, batch=8)
  jaxpr = str(jax.make_jaxpr(run)(q, k, v, mask))
  pairs = tiles * (tiles + 1) // 2
  assert jaxpr.count('dot_general') == 2 * pairs
  assert 'optimization_barrier' not in jaxpr
  loss = lambda f: lambda q, k, v: jnp.sum(f(q, k, v, mask) * weight)
  ref = lambda q, k, v, mask: attention.einsum_attention(q, k, v, mask, None, 0.3)
  np.testing.assert_allclose(loss(run)(q, k, v), loss(ref)(q, k, v), rtol=1e-5)
  for got, want in zip(jax.grad(loss(run), argnums=(0, 1, 2))(q, k, v),
                       jax.grad(loss(ref), argnums=(0, 1, 2))(q, k, v)):
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_auto_is_the_default_and_on_cpu_is_blocked_to_the_bit():
  """'auto' (the default) runs the table's implementation for the backend at trace time:
  on CPU 'blocked', so a decoder's logits and gradients are bitwise those of 'blocked'
  (tiles at context 128 with batch x heads 32)."""
  cfg = helpers.tiny(max_length=128, num_kv_heads=2)
  assert cfg.attention_impl == 'auto' and attention.auto_impl() == 'blocked'
  feats = helpers.features(cfg, batch=8, length=128)
  params = helpers.init(cfg, feats)

  def logits_and_grads(cfg):
    return jax.jit(jax.value_and_grad(lambda p: jnp.sum(
        helpers.apply(cfg, p, feats) ** 2)))(params), helpers.apply(cfg, params, feats)

  auto, blocked = logits_and_grads(cfg), logits_and_grads(cfg.replace(attention_impl='blocked'))
  for got, want in zip(jax.tree.leaves(auto), jax.tree.leaves(blocked)):
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize('backend,expected', [
    ('cpu', 'blocked'), ('gpu', 'cudnn'), ('tpu', 'dot_product'), ('METAL', 'dot_product')])
def test_auto_calls_the_implementation_its_table_names(monkeypatch, backend, expected):
  calls = []
  for name in set(attention.ATTENTION_IMPLS) - {'auto'}:
    monkeypatch.setitem(attention.ATTENTION_IMPLS, name,
                        lambda *args, name=name, **kwargs: calls.append((name, kwargs)))
  monkeypatch.setattr(jax, 'default_backend', lambda: backend)
  attention.implementation('auto')('q', 'k', 'v', 'mask', None, 0.5, lower_triangular=True)
  assert calls == [(expected, {'lower_triangular': True})]


def test_an_unknown_implementation_is_one_error_naming_the_choices():
  choices = ', '.join(config.ATTENTION_IMPLS)
  with pytest.raises(ValueError, match=f"unknown attention implementation 'flash': "
                                       f'choose one of {choices}$'):
    attention.implementation('flash')
  with pytest.raises(config.ConfigError,
                     match=f"TransformerConfig.attention_impl='flash' is not one of {choices}"):
    helpers.tiny(attention_impl='flash')
  # The config's choices are the registry's, in the same order.
  assert tuple(attention.ATTENTION_IMPLS) == config.ATTENTION_IMPLS
