"""Strategies agree where theory says they must.

Beam width 1 is greedy; top-k with k = 1 and top-p with a tiny p are greedy;
beam search whose width covers the whole search space returns exactly the
exhaustive oracle's hypotheses; every beam hypothesis carries its true
teacher-forced score; EOS stops each row on its own.
"""
import jax
import numpy as np
import pytest

from research import decoding
from research import models
from research.decoding import exhaustive
from tests.decoding import helpers

PROMPTS = [[5, 6, 7, 8], [9, 10], [11, 12, 13]]


@pytest.fixture(scope='module')
def model():
  return helpers.tiny_model(num_kv_heads=2, seed=1, num_layers=1)


@pytest.fixture(scope='module')
def greedy(model):
  config, params = model
  return decoding.generate(config, params, PROMPTS, decoding.DecodeConfig(max_new_tokens=10))


def test_beam_width_one_is_greedy(model, greedy):
  config, params = model
  beam = decoding.generate(config, params, PROMPTS, decoding.DecodeConfig(
      strategy='beam', beam_width=1, max_new_tokens=10))
  np.testing.assert_array_equal(beam.best, greedy.best)
  np.testing.assert_array_equal(beam.lengths, greedy.lengths)
  np.testing.assert_allclose(beam.scores, greedy.scores, atol=1e-5)


@pytest.mark.parametrize('warp', [dict(top_k=1), dict(top_p=1e-6),
                                  dict(top_k=1, top_p=0.5, temperature=2.0)])
def test_top_k_one_and_tiny_top_p_are_greedy(model, greedy, warp):
  config, params = model
  sampled = decoding.generate(config, params, PROMPTS, decoding.DecodeConfig(
      strategy='sample', max_new_tokens=10, **warp), rng=jax.random.PRNGKey(7))
  np.testing.assert_array_equal(sampled.best, greedy.best)


# (model overrides, decode config): each width covers every live prefix, so
# beam search must find exactly the oracle's best hypotheses. With vocab 2
# ({0, eos}) one live prefix exists per length, so the search runs 6 deep.
ORACLE_CASES = {
    'decoder_vocab2_depth6_penalty': (
        dict(vocab_size=2, init_std=1.0),
        dict(max_new_tokens=6, beam_width=2, length_penalty=0.6)),
    'prefix_vocab5_depth2': (
        dict(vocab_size=5, init_std=1.0, position='alibi'),
        dict(max_new_tokens=2, beam_width=5, prefix_lm=True)),
    'encoder_decoder_vocab5_depth2_penalty': (
        dict(family='encoder_decoder', vocab_size=5, init_std=1.0, position='t5_relative'),
        dict(max_new_tokens=2, beam_width=5, length_penalty=1.0)),
}


@pytest.mark.parametrize('case', [
    pytest.param(c, marks=pytest.mark.slow) if c.startswith('prefix') else c
    for c in sorted(ORACLE_CASES)])
def test_beam_covering_the_space_equals_exhaustive_oracle(case):
  overrides, decode_fields = ORACLE_CASES[case]
  config, params = helpers.tiny_model(seed=2, **overrides)
  prompts = [[0, 1, 1, 0], [1, 0]]
  beam = decoding.generate(config, params, prompts, decoding.DecodeConfig(
      strategy='beam', **decode_fields))
  oracle = decoding.generate(config, params, prompts, decoding.DecodeConfig(
      strategy='exhaustive', **decode_fields))
  np.testing.assert_array_equal(beam.tokens, oracle.tokens)
  np.testing.assert_array_equal(beam.lengths, oracle.lengths)
  np.testing.assert_allclose(beam.scores, oracle.scores, atol=1e-5)
  # The hypotheses mix EOS-ended and full-length ones, so both paths are tested.
  assert len(set(np.asarray(beam.lengths).ravel())) > 1


@pytest.mark.parametrize('early_stopping', [False, pytest.param(True, marks=pytest.mark.slow)])
def test_beam_hypotheses_carry_their_teacher_forced_scores(early_stopping):
  config, params = helpers.tiny_model(vocab_size=5, init_std=1.0, seed=4, num_kv_heads=1)
  decode_config = decoding.DecodeConfig(strategy='beam', beam_width=5, max_new_tokens=4,
                                        length_penalty=0.7, early_stopping=early_stopping)
  prompts = [[2, 3, 4], [4]]
  beam = decoding.generate(config, params, prompts, decode_config)
  oracle = decoding.generate(config, params, prompts, decode_config.replace(
      strategy='exhaustive'))
  module = models.build(config)
  for row, prompt in enumerate(prompts):
    scores = exhaustive.score_hypotheses(module, config, params, prompt, beam.tokens[row],
                                         beam.lengths[row], decode_config)
    np.testing.assert_allclose(beam.scores[row], scores, atol=1e-5)
    assert np.all(np.diff(np.asarray(beam.scores[row])) <= 0), 'not sorted'
    assert beam.scores[row, 0] <= oracle.scores[row, 0] + 1e-5
    for k in range(decode_config.beam_width):  # pad after EOS, EOS only at the end
      n = int(beam.lengths[row, k])
      assert np.all(np.asarray(beam.tokens[row, k, n:]) == decode_config.pad_id)
      assert decode_config.eos_id not in np.asarray(beam.tokens[row, k, :n - 1])


def test_eos_stops_each_row_independently():
  config, params = helpers.tiny_model(vocab_size=5, init_std=0.02, seed=5)
  out = decoding.generate(config, params, [[2, 3]] * 16, decoding.DecodeConfig(
      strategy='sample', max_new_tokens=12), rng=jax.random.PRNGKey(0))
  tokens, lengths = np.asarray(out.best), np.asarray(out.lengths[:, 0])
  for row, n in zip(tokens, lengths):
    eos = np.flatnonzero(row == 1)
    if eos.size:
      assert n == eos[0] + 1
      assert np.all(row[n:] == 0)
    else:
      assert n == 12
  assert len(set(lengths)) > 2, lengths  # rows stopped at different steps
