"""GLM's 2D positions (Du et al. 2022 sec. 2.2) reach the model and change what it computes."""
import os

import gin
import jax.numpy as jnp
import numpy as np

from research import models, objectives
from research.data import converters, packing, pipeline
from research.data.tokenizers import ByteTokenizer
from research.train import tasks
from tests.models import helpers

TOK = ByteTokenizer()
LENGTH = 96
ROOT = os.path.join(os.path.dirname(__file__), '..', '..', 'gin_configs')


def _glm_batch():
  """Two GLM examples packed into one prefix-decoder row, as the pipeline builds them."""
  rng = np.random.default_rng(0)
  examples = [objectives.GLM().apply(rng.integers(3, 259, size=n), TOK, seed=n)
              for n in (30, 26)]
  batch = packing.pack_examples(examples, converters.get_converter('prefix_decoder'),
                                {'decoder': LENGTH})
  return examples, batch


def test_the_feature_converter_and_packer_carry_both_positions():
  examples, batch = _glm_batch()
  assert batch['decoder_input_tokens'].shape == (1, LENGTH)
  offset = 0
  for segment, ex in enumerate(examples, start=1):
    n = len(ex['inputs']) + len(ex['targets'])
    rows = slice(offset, offset + n)
    np.testing.assert_array_equal(batch['decoder_segment_ids'][0, rows], segment)
    np.testing.assert_array_equal(batch['decoder_positions'][0, rows],
                                  converters.shift_right(ex['positions']))
    np.testing.assert_array_equal(batch['decoder_block_positions'][0, rows],
                                  converters.shift_right(ex['block_positions']))
    assert ex['block_positions'].max() >= 2  # a blank of two tokens or more
    offset += n
  # The train and eval steps hand the model every feature in the family's table.
  assert 'decoder_block_positions' in tasks.model_inputs('decoder', batch)


def _apply(cfg, params, batch):
  return np.asarray(helpers.apply(cfg, params, {
      k: jnp.asarray(v) for k, v in tasks.model_inputs('decoder', batch).items()}))


def test_a_blank_token_sees_its_position_within_the_blank():
  """Changing one Part B token's intra-blank position changes its output (and later
  tokens'), never an earlier one's; zeroing the feature changes Part B only."""
  cfg = helpers.tiny(position='rope', block_positions=True, max_length=LENGTH,
                     vocab_size=TOK.vocab_size)
  examples, batch = _glm_batch()
  params = helpers.init(cfg, {'decoder_input_tokens': jnp.asarray(batch['decoder_input_tokens'])})
  base = _apply(cfg, params, batch)
  block = batch['decoder_block_positions'][0]
  t = int(np.flatnonzero(block >= 2)[0])  # a token inside a blank, not its sentinel
  changed = dict(batch, decoder_block_positions=batch['decoder_block_positions'].copy())
  changed['decoder_block_positions'][0, t] += 1
  delta = np.abs(_apply(cfg, params, changed) - base).max(axis=(0, 2))
  assert delta[t] > 1e-4
  np.testing.assert_array_equal(delta[:t], 0)

  zeroed = dict(batch, decoder_block_positions=np.zeros_like(batch['decoder_block_positions']))
  delta = np.abs(_apply(cfg, params, zeroed) - base).max(axis=2)[0]
  n_a = len(examples[0]['inputs'])
  np.testing.assert_array_equal(delta[:n_a], 0)  # Part A (block position 0) is unchanged
  assert np.all(delta[n_a + 1:len(examples[0]['inputs']) + len(examples[0]['targets'])] > 0)


def test_without_the_option_the_feature_is_ignored():
  cfg = helpers.tiny(position='rope', max_length=LENGTH, vocab_size=TOK.vocab_size)
  _, batch = _glm_batch()
  params = helpers.init(cfg, {'decoder_input_tokens': jnp.asarray(batch['decoder_input_tokens'])})
  without = {k: v for k, v in batch.items() if k != 'decoder_block_positions'}
  np.testing.assert_array_equal(_apply(cfg, params, batch), _apply(cfg, params, without))


def test_the_glm_objective_config_turns_the_option_on():
  gin.clear_config()
  try:
    assert pipeline.make_pipeline  # registers the objectives glm.gin refers to
    gin.parse_config_files_and_bindings([os.path.join(ROOT, 'objectives', 'glm.gin')], [])
    assert models.TransformerConfig().block_positions
  finally:
    gin.clear_config()
  assert not models.TransformerConfig().block_positions
