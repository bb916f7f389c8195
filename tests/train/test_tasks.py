"""tasks.without_empty_prefix: a causal LM's batch reaches the step in the form whose
attention mask is known to be lower triangular at trace time."""
import jax
import numpy as np
import pytest

from research import models
from research.models import attention
from research.train import step as step_lib
from research.train import synthetic, tasks, trainer
from tests.train import helpers


def _decoder_batch(prefix_len: int = 0):
  batch = synthetic.make_batch('decoder', np.random.default_rng(0), 2, {'targets': 128}, 64)
  batch['decoder_causal_attention'][:, :prefix_len] = 1
  return batch


def _loss_jaxpr(batch) -> str:
  cfg = models.TransformerConfig(family='decoder', vocab_size=64, d_model=32, num_layers=1,
                                 num_heads=4, d_ff=64, max_length=128,
                                 attention_impl='blocked')
  module = models.build(cfg)
  inputs = tasks.model_inputs('decoder', batch)
  params = module.init(jax.random.PRNGKey(0), **inputs)['params']
  return str(jax.make_jaxpr(lambda p: step_lib._loss_sums(  # pylint: disable=protected-access
      module, 'decoder', 0.0, p, batch, jax.random.PRNGKey(0), deterministic=True))(params))


def test_an_all_zero_prefix_is_dropped_and_the_step_has_no_mask_check():
  batch = _decoder_batch()
  out = tasks.without_empty_prefix(batch)
  assert set(out) == set(batch) - {'decoder_causal_attention'}
  assert 'cond[' in _loss_jaxpr(batch)  # blocked attention checks the mask at run time
  assert 'cond[' not in _loss_jaxpr(out)


def test_a_prefix_batch_and_other_families_are_left_alone():
  batch = _decoder_batch(prefix_len=5)
  assert tasks.without_empty_prefix(batch) is batch
  enc_dec = synthetic.make_batch('encoder_decoder', np.random.default_rng(0), 2,
                                 {'inputs': 16, 'targets': 16}, 64)
  assert tasks.without_empty_prefix(enc_dec) is enc_dec


def test_multi_process_runs_keep_the_feature(monkeypatch):
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  batch = _decoder_batch()
  assert tasks.without_empty_prefix(batch) is batch


def test_a_source_without_prefixes_drops_the_feature_in_every_process(monkeypatch):
  """A source that declares `may_have_prefix = False` is the same on every process, so
  multi-process runs drop the feature too; a batch that breaks the promise is an error."""
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  batch = _decoder_batch()
  assert 'decoder_causal_attention' not in tasks.without_empty_prefix(batch, never_prefix=True)
  with pytest.raises(ValueError, match='may_have_prefix'):
    tasks.without_empty_prefix(_decoder_batch(prefix_len=5), never_prefix=True)
  assert synthetic.SyntheticSource.may_have_prefix is False


def test_the_trainer_steps_and_evaluates_a_causal_lm_on_the_lower_triangular_path(
    tmp_path, monkeypatch):
  seen = []
  blocked = attention.ATTENTION_IMPLS['blocked']

  def spy(*args, lower_triangular=False):
    seen.append(lower_triangular)
    return blocked(*args, lower_triangular=lower_triangular)
  monkeypatch.setitem(attention.ATTENTION_IMPLS, 'blocked', spy)
  promised = []
  strip = tasks.without_empty_prefix
  monkeypatch.setattr(tasks, 'without_empty_prefix',
                      lambda batch, never_prefix=False: promised.append(never_prefix) or strip(
                          batch, never_prefix))
  helpers.configure('decoder', steps=2, extra='trainer.train.eval_every = 2')
  trainer.train(str(tmp_path))
  assert len(seen) >= 2 and all(seen)  # the train step's trace and the eval step's
  # The synthetic source declares no prefix: the train and eval batches drop it statically.
  assert len(promised) >= 3 and all(promised)


def test_first_argmax_is_argmax_with_ties():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 4, size=(3, 7, 11)).astype(np.float32)  # many ties
  x[0, 0] = 0.  # all tied: index 0
  x[1, 2, 5:] = np.inf
  np.testing.assert_array_equal(jax.jit(step_lib.first_argmax)(x), np.argmax(x, -1))
