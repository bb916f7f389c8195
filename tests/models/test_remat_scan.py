"""Per-block remat and scan over layers change memory and compile time, not the function:
the same logits and gradients as the plain unrolled model, and the parameter count."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research import models, parallel
from research.models import axes
from research.models import config as config_lib
from research.models import transformer
from tests.models import helpers
from tests.models.test_families import FAMILY_CONFIGS

# Each policy on one of the stack shapes: a decoder with GQA, an encoder-decoder with the
# shared T5 relative bias and cross-attention, a post-norm encoder.
REMAT_CASES = (('llama', 'full'), ('t5', 'dots'), ('bert', 'dots_no_batch'))
# Scan over each stack shape and position bias (the precomputed ALiBi and T5 biases),
# with and without remat inside the loop.
SCAN_CASES = (('llama', 'none'), ('t5', 'full'), ('prefix_alibi', 'dots_no_batch'),
              ('bart', 'none'))

def _loss_and_grads(cfg, params, feats, key):
  module = models.build(cfg)
  target = feats[helpers.token_key(cfg)]

  def loss_fn(params):
    logits = module.apply({'params': params}, **feats, deterministic=False,
                          rngs={'dropout': key})
    loss, _, weight = models.losses.cross_entropy_loss(logits, target)
    return loss / weight, logits
  (_, logits), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
  return logits, grads


def _assert_trees_close(got, want, rtol, atol):
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for path, a in jax.tree_util.tree_leaves_with_path(got):
    b = want
    for key in path:
      b = b[key.key]
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol,
                               err_msg=jax.tree_util.keystr(path))


def test_every_policy_is_tested():
  assert sorted(p for _, p in REMAT_CASES) == sorted(
      p for p in config_lib.REMAT_POLICIES if p != 'none')


@pytest.mark.parametrize('name,policy', REMAT_CASES)
def test_remat_gives_the_same_logits_and_gradients(name, policy):
  # Dropout on: the recomputed forward must draw the same masks as the first one.
  cfg = helpers.tiny(num_layers=3, dropout_rate=0.1, **FAMILY_CONFIGS[name])
  feats = helpers.features(cfg)
  params = helpers.init(cfg, feats)
  key = jax.random.key(7)
  want_logits, want_grads = _loss_and_grads(cfg, params, feats, key)
  logits, grads = _loss_and_grads(cfg.replace(remat_policy=policy), params, feats, key)
  np.testing.assert_allclose(logits, want_logits, rtol=1e-6, atol=1e-6)
  _assert_trees_close(grads, want_grads, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('name,policy', SCAN_CASES)
def test_scan_equals_unrolled(name, policy):
  # Depth 3 (and a 4-layer decoder for the encoder-decoder) so the stacking order shows.
  cfg = helpers.tiny(num_layers=3, remat_policy=policy, **FAMILY_CONFIGS[name])
  if cfg.family == 'encoder_decoder':
    cfg = cfg.replace(num_decoder_layers=4)
  scan_cfg = cfg.replace(scan_layers=True)
  feats = helpers.features(cfg)
  params = helpers.init(cfg, feats)
  stacked = transformer.stack_layers(params, cfg)
  # The converted tree is exactly what the scanned model initializes.
  want_shapes = jax.tree.map(jnp.shape, helpers.init(scan_cfg, feats))
  assert jax.tree.map(jnp.shape, stacked) == want_shapes
  for stack, depth in transformer.stack_depths(cfg).items():
    assert not any(k.startswith('layers_') for k in stacked[stack])
    assert all(x.shape[0] == depth for x in jax.tree.leaves(stacked[stack]['layers']))

  np.testing.assert_allclose(helpers.apply(scan_cfg, stacked, feats),
                             helpers.apply(cfg, params, feats), rtol=1e-5, atol=1e-5)
  key = jax.random.key(0)
  _, grads = _loss_and_grads(scan_cfg, stacked, feats, key)
  _, want = _loss_and_grads(cfg, params, feats, key)
  _assert_trees_close(grads, transformer.stack_layers(want, cfg), rtol=1e-4, atol=1e-6)

  round_trip = transformer.unstack_layers(stacked, cfg)
  _assert_trees_close(round_trip, params, rtol=0, atol=0)


@pytest.mark.parametrize('name', sorted(FAMILY_CONFIGS))
def test_scan_parameters_are_counted_and_named(name):
  cfg = helpers.tiny(num_layers=3, scan_layers=True, **FAMILY_CONFIGS[name])
  feats = helpers.features(cfg)
  boxed = jax.eval_shape(lambda: models.build(cfg).init(jax.random.key(0), **feats))
  params = nn.unbox(boxed['params'])
  assert sum(x.size for x in jax.tree.leaves(params)) == models.count_params(cfg)['total']

  # Every block parameter leads with the 'layers' axis, which no rule shards.
  specs = nn.get_partition_spec(boxed['params'])
  for stack in transformer.stack_depths(cfg):
    layer_specs = jax.tree.leaves(specs[stack]['layers'],
                                  is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    assert layer_specs and all(spec[0] == axes.LAYERS for spec in layer_specs)
  for preset in parallel.RULE_PRESETS:
    assert dict(parallel.logical_axis_rules(preset))[axes.LAYERS] is None


def test_scan_refuses_cached_decoding():
  cfg = helpers.tiny(scan_layers=True)
  feats = helpers.features(cfg)
  with pytest.raises(models.ConfigError, match='scan_layers does not support cached '
                     'decoding'):
    models.build(cfg).init(jax.random.key(0), **feats, decode=True)


def test_bad_remat_policy_names_the_choices():
  with pytest.raises(models.ConfigError,
                     match="remat_policy='dots_saveable' is not one of none, full, dots, "
                           'dots_no_batch'):
    helpers.tiny(remat_policy='dots_saveable')


def _compiled_temp_bytes(cfg, feats):
  module = models.build(cfg)
  params = jax.eval_shape(lambda: nn.unbox(module.init(jax.random.key(0), **feats)))
  target = feats[helpers.token_key(cfg)]

  def loss(params):
    logits = module.apply(params, **feats)
    return models.losses.cross_entropy_loss(logits, target)[0]
  compiled = jax.jit(jax.grad(loss)).lower(params).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_remat_lowers_compiled_temp_memory():
  # Activations dominate: 6 layers at length 128 against 70k parameters. Compile only.
  # Under scan each block's recomputation runs inside the backward loop; unrolled, XLA:CPU's
  # scheduler runs the recomputed blocks early and keeps them (benchmarks/remat_memory.py).
  cfg = helpers.tiny(num_layers=6, d_model=64, d_ff=256, scan_layers=True,
                     **FAMILY_CONFIGS['llama'])
  feats = helpers.features(cfg, batch=4, length=128)
  unrolled = _compiled_temp_bytes(cfg.replace(scan_layers=False), feats)
  plain = _compiled_temp_bytes(cfg, feats)
  remat = _compiled_temp_bytes(cfg.replace(remat_policy='full'), feats)
  assert remat < 0.5 * plain, (remat, plain)
  assert remat < 0.5 * unrolled, (remat, unrolled)
