"""Sampling is reproducible from its key and never leaves the top-k / nucleus set."""
import jax
import numpy as np
import pytest

from research import decoding
from tests.decoding import helpers

STEPS = 8


@pytest.fixture(scope='module')
def model():
  # A wide spread of logits, so the top-k and nucleus sets are small but not trivial.
  return helpers.tiny_model(num_layers=1, init_std=0.3, seed=11)


def test_same_key_same_samples_other_key_other_samples(model):
  config, params = model
  decode_config = decoding.DecodeConfig(strategy='sample', max_new_tokens=STEPS,
                                        temperature=0.8, top_k=20, top_p=0.95)
  prompts = [[3, 4, 5]] * 8
  first = decoding.generate(config, params, prompts, decode_config, rng=jax.random.PRNGKey(1))
  again = decoding.generate(config, params, prompts, decode_config, rng=jax.random.PRNGKey(1))
  other = decoding.generate(config, params, prompts, decode_config, rng=jax.random.PRNGKey(2))
  np.testing.assert_array_equal(first.tokens, again.tokens)
  np.testing.assert_array_equal(first.scores, again.scores)
  assert not np.array_equal(first.tokens, other.tokens)
  # Rows of one batch draw independently.
  assert len({tuple(row) for row in np.asarray(first.best)}) > 1


def _steps(out):
  """(row, step) pairs that were really sampled (before the row's EOS)."""
  lengths = np.asarray(out.lengths[:, 0])
  return [(r, t) for r in range(len(lengths)) for t in range(lengths[r])]


def test_top_k_never_emits_outside_the_top_k(model):
  config, params = model
  k = 3
  out = decoding.generate(
      config, params, [[3, 4, 5], [6], [7, 8]] * 40,
      decoding.DecodeConfig(strategy='sample', max_new_tokens=STEPS, top_k=k,
                            temperature=1.5, return_logits=True),
      rng=jax.random.PRNGKey(3))
  logits, tokens = np.asarray(out.logits), np.asarray(out.best)
  ranks = []
  for r, t in _steps(out):
    order = np.argsort(-logits[r, t])
    ranks.append(int(np.flatnonzero(order == tokens[r, t])[0]))
  assert len(ranks) > 500
  assert max(ranks) < k, f'token of rank {max(ranks)} sampled with top_k={k}'
  assert set(ranks) == set(range(k)), 'all of the top k should be drawn'


def test_top_p_never_emits_outside_the_nucleus(model):
  config, params = model
  p = 0.6
  out = decoding.generate(
      config, params, [[3, 4, 5], [6], [7, 8]] * 40,
      decoding.DecodeConfig(strategy='sample', max_new_tokens=STEPS, top_p=p,
                            return_logits=True),
      rng=jax.random.PRNGKey(4))
  logits, tokens = np.asarray(out.logits), np.asarray(out.best)
  sizes = set()
  for r, t in _steps(out):
    probs = np.exp(logits[r, t] - logits[r, t].max())
    probs /= probs.sum()
    order = np.argsort(-probs)
    before = np.cumsum(probs[order]) - probs[order]
    nucleus = set(order[before < p].tolist())
    sizes.add(len(nucleus))
    assert tokens[r, t] in nucleus
  assert max(sizes) > 1
