"""Weight-decay masks and one AdamW / clipping step against hand-computed values."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research import models
from research.train import optimizers


def _paths(tree):
  return {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_decay_mask_on_a_real_model():
  cfg = models.TransformerConfig(d_model=32, num_layers=1, num_heads=4, d_ff=64,
                                 use_bias=True, norm='layernorm', tie_embeddings=False)
  variables = jax.eval_shape(lambda: models.build(cfg).init(
      jax.random.PRNGKey(0), decoder_input_tokens=jnp.ones((1, 1), jnp.int32)))
  mask = _paths(optimizers.decay_mask(nn.meta.unbox(variables['params'])))
  decayed = {k for k, v in mask.items() if v}
  assert decayed == {
      "['decoder']['layers_0']['attn']['key']['kernel']",
      "['decoder']['layers_0']['attn']['out']['kernel']",
      "['decoder']['layers_0']['attn']['query']['kernel']",
      "['decoder']['layers_0']['attn']['value']['kernel']",
      "['decoder']['layers_0']['mlp']['wi']['kernel']",
      "['decoder']['layers_0']['mlp']['wo']['kernel']",
      "['head']['lm_head']['kernel']",
      "['token_embed']['embedding']",
  }
  # The 2-D query bias [heads, head_dim] is excluded by name, not by rank.
  assert not mask["['decoder']['layers_0']['attn']['query']['bias']"]


def test_decay_mask_by_rank_and_name():
  params = {'dense': {'kernel': np.ones((2, 3)), 'bias': np.ones((3,))},
            'rms_norm': {'scale': np.ones((3,))}, 'ln_f': {'weight': np.ones((3, 3))},
            'vector': np.ones((4,))}
  mask = optimizers.decay_mask(params)
  assert mask == {'dense': {'kernel': True, 'bias': False}, 'rms_norm': {'scale': False},
                  'ln_f': {'weight': False}, 'vector': False}


def test_adamw_first_step_by_hand():
  # Step 1 of Adam with bias correction: m_hat = g, v_hat = g^2, so the update is
  # g / (|g| + eps); decoupled decay adds lr * wd * w on decayed parameters only.
  lr, wd, eps = 0.1, 0.1, 1e-8
  tx = optimizers.adamw(lr, eps=eps, weight_decay=wd)
  params = {'w': jnp.array([[1.0, -2.0], [3.0, 4.0]]), 'b': jnp.array([1.0, 1.0])}
  grads = {'w': jnp.array([[0.5, -0.5], [2.0, 0.0]]), 'b': jnp.array([-3.0, 0.25])}
  updates, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  g, w = np.asarray(grads['w']), np.asarray(params['w'])
  np.testing.assert_allclose(new['w'], w - lr * (g / (np.abs(g) + eps) + wd * w), rtol=1e-6)
  gb = np.asarray(grads['b'])
  np.testing.assert_allclose(new['b'], 1.0 - lr * gb / (np.abs(gb) + eps), rtol=1e-6)


def test_adamw_defaults_from_the_literature():
  tx = optimizers.adamw(1e-3)
  state = tx.init({'w': jnp.ones((2, 2))})
  # b2 = 0.95: the second moment after one step of g = 1 is 1 - 0.95.
  _, state = tx.update({'w': jnp.ones((2, 2))}, state, {'w': jnp.ones((2, 2))})
  adam_state = state[0]
  np.testing.assert_allclose(adam_state.mu['w'], 0.1, rtol=1e-6)
  np.testing.assert_allclose(adam_state.nu['w'], 0.05, rtol=1e-5)


@pytest.mark.parametrize('name', ['adamw', 'adafactor'])
def test_make_optimizer_clips_global_norm(name):
  # The project's whole chain, fed a gradient of global norm 50 (over two leaves), must make
  # the updates of the same optimizer fed that gradient scaled by hand to norm 1; a second,
  # small gradient (norm 0.5, on the same entries: elementwise Adam is blind to the scale of
  # an entry's only gradient) passes unscaled. Step 0 has learning rate 0 (warm-up), so the
  # clipped first gradient shows in step 1's update through the optimizer's moments.
  tx, schedule = optimizers.make_optimizer(100, name=name, clip_norm=1.0)
  bare = optimizers.OPTIMIZERS[name](schedule)
  params = {'w': jnp.array([[1.0, -2.0], [3.0, 4.0]]), 'b': jnp.array([0.5, -1.0])}
  huge = {'w': jnp.array([[30.0, 0.0], [0.0, 0.0]]), 'b': jnp.array([0.0, 40.0])}
  small = {'w': jnp.array([[0.3, 0.0], [0.0, 0.0]]), 'b': jnp.array([0.0, -0.4])}
  by_hand = {'w': np.array([[0.6, 0.0], [0.0, 0.0]]), 'b': np.array([0.0, 0.8])}  # huge/50

  def two_steps(opt, grads_seq):
    state, p, out = opt.init(params), params, []
    for g in grads_seq:
      updates, state = opt.update(g, state, p)
      p = optax.apply_updates(p, updates)
      out.append(updates)
    return p, out

  got, got_updates = two_steps(tx, [huge, small])
  want, want_updates = two_steps(bare, [by_hand, small])
  for g, w in zip(got_updates, want_updates):
    for key in params:
      np.testing.assert_allclose(g[key], w[key], rtol=1e-5, atol=1e-12)
  for key in params:
    np.testing.assert_allclose(got[key], want[key], rtol=1e-6)
  # The comparison can tell: the unclipped gradient makes a different step-1 update.
  _, unclipped_updates = two_steps(bare, [huge, small])
  flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])
  assert not np.allclose(flat(unclipped_updates[1]), flat(want_updates[1]), rtol=1e-2, atol=0)


def test_adafactor_runs_and_unknown_name_fails():
  tx, _ = optimizers.make_optimizer(10, name='adafactor')
  params = {'w': jnp.ones((4, 6)), 'b': jnp.ones((6,))}
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  assert all(np.all(np.isfinite(u)) for u in jax.tree.leaves(updates))
  with pytest.raises(ValueError, match='unknown optimizer'):
    optimizers.make_optimizer(10, name='sgdx')
