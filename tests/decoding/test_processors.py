"""Logit processors on hand-made inputs, and the no-repeat-n-gram invariant end to end."""
import jax.numpy as jnp
import numpy as np
import pytest

from research import decoding
from research.decoding import processors
from research.decoding.processors import History
from tests.decoding import helpers


def _history(rows, size=None):
  size = size or max(len(r) for r in rows)
  tokens = np.zeros((len(rows), size), np.int32)
  valid = np.zeros((len(rows), size), bool)
  for i, row in enumerate(rows):  # left-padded, like the decode loops' history
    tokens[i, size - len(row):] = row
    valid[i, size - len(row):] = True
  return History(jnp.asarray(tokens), jnp.asarray(valid), jnp.asarray(size, jnp.int32))


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
  config = decoding.DecodeConfig(repetition_penalty=2.0)
  logits = jnp.asarray([[4.0, -4.0, 4.0, -4.0]])
  out = processors.repetition_penalty(config, logits, _history([[0, 1]]))
  np.testing.assert_allclose(out, [[2.0, -8.0, 4.0, -4.0]])


def test_banned_ngram_tokens_complete_only_seen_ngrams():
  history = _history([[5, 6, 7, 5, 6], [5, 6, 7, 8, 6]])
  banned3 = np.asarray(processors.banned_ngram_tokens(history, 3, 10))
  assert np.flatnonzero(banned3[0]).tolist() == [7]  # (5, 6) was followed by 7
  assert np.flatnonzero(banned3[1]).tolist() == []  # (8, 6) is new
  banned2 = np.asarray(processors.banned_ngram_tokens(history, 2, 10))
  assert np.flatnonzero(banned2[0]).tolist() == [7]
  assert np.flatnonzero(banned2[1]).tolist() == [7]  # (6, 7) seen
  banned1 = np.asarray(processors.banned_ngram_tokens(history, 1, 10))
  assert np.flatnonzero(banned1[1]).tolist() == [5, 6, 7, 8]


def test_padding_slots_never_match_ngrams():
  # The padding before the one real token holds pad id 0 too; (0, 0) is no bigram.
  history = _history([[0]], size=5)
  assert not np.asarray(processors.banned_ngram_tokens(history, 2, 5)).any()
  assert np.flatnonzero(processors.banned_ngram_tokens(history, 1, 5)[0]).tolist() == [0]


def test_top_k_and_top_p_masks():
  logits = jnp.log(jnp.asarray([[0.5, 0.05, 0.3, 0.15]]))
  top_k = processors.top_k(decoding.DecodeConfig(top_k=2), logits, None)
  assert (np.asarray(top_k) > processors.MASKED / 2).tolist() == [[True, False, True, False]]
  kept = lambda p: (np.asarray(processors.top_p(  # noqa: E731
      decoding.DecodeConfig(top_p=p), logits, None)) > processors.MASKED / 2).tolist()
  assert kept(0.5) == [[True, False, False, False]]
  assert kept(0.51) == [[True, False, True, False]]
  assert kept(0.8) == [[True, False, True, False]]
  assert kept(0.81) == [[True, False, True, True]]
  assert kept(1.0) == [[True, True, True, True]]


def test_processor_registry_order_is_controls_then_warpers():
  kinds = [p.kind for p in processors.PROCESSORS.values()]
  assert kinds == sorted(kinds)  # 'control' < 'warp'
  assert set(decoding.STRATEGIES) == set(decoding.config.STRATEGIES)


def _repeats(sequence, n):
  grams = helpers.ngrams(list(sequence), n)
  return len(grams) - len(set(grams))


@pytest.mark.parametrize('strategy,n', [('greedy', 2), ('beam', 2), pytest.param(
    'greedy', 3, marks=pytest.mark.slow)])
def test_no_repeat_ngram_output_never_repeats_an_ngram(strategy, n):
  # A random tiny model loops under greedy decoding, so the control has work to do.
  config, params = helpers.tiny_model(num_layers=1, seed=6)
  prompts = [[3, 4, 5, 3], [6, 7], [8, 9, 10]]
  base = decoding.DecodeConfig(strategy=strategy, max_new_tokens=16, beam_width=3)
  plain = decoding.generate(config, params, prompts, base)
  controlled = decoding.generate(config, params, prompts,
                                 base.replace(no_repeat_ngram_size=n))
  assert any(_repeats(row[:length], n) for row, length in
             zip(np.asarray(plain.best), np.asarray(plain.lengths[:, 0])))
  for prompt, row, length in zip(prompts, np.asarray(controlled.tokens),
                                 np.asarray(controlled.lengths)):
    for hyp, hyp_len in zip(row, length):
      assert _repeats(prompt + hyp[:hyp_len].tolist(), n) == 0
