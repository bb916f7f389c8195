"""Causal LM, prefix LM, BERT masked LM and GLM."""
import numpy as np
import pytest

from research import objectives
from research.data.tokenizers import ByteTokenizer

TOK = ByteTokenizer()


def test_causal_lm_has_empty_inputs():
  out = objectives.CausalLM().apply(np.arange(3, 13), TOK, seed=0)
  assert out['inputs'].size == 0 and out['targets'].tolist() == list(range(3, 13))


def test_prefix_lm_split_is_uniform_and_lossless():
  tokens = np.arange(3, 13)  # n = 10 -> split in [1, 9]
  counts = np.zeros(11, int)
  for seed in range(4500):
    out = objectives.PrefixLM().apply(tokens, TOK, seed=seed)
    assert out['inputs'][-1] == TOK.eos_id and out['targets'][-1] == TOK.eos_id
    np.testing.assert_array_equal(np.concatenate([out['inputs'][:-1], out['targets'][:-1]]),
                                  tokens)
    counts[len(out['inputs']) - 1] += 1
  assert counts[0] == 0 and counts[10] == 0
  assert np.all(np.abs(counts[1:10] / 4500 - 1 / 9) < 0.02)


def test_prefix_lm_mode_token():
  out = objectives.PrefixLM(mode='[S2S]').apply(np.arange(3, 13), TOK, seed=0)
  assert out['inputs'][0] == TOK.mode_token('[S2S]')


def test_masked_lm_rates():
  mlm = objectives.MaskedLM()
  tokens = np.random.default_rng(0).integers(3, 259, size=1000)
  chosen = masked = unchanged = randomized = 0
  for seed in range(200):
    out = mlm.apply(tokens, TOK, seed=seed)
    sel = out['targets'] != TOK.pad_id
    assert sel.sum() == 150  # round(0.15 * 1000)
    np.testing.assert_array_equal(out['targets'][sel], tokens[sel])
    np.testing.assert_array_equal(out['inputs'][~sel], tokens[~sel])
    chosen += sel.sum()
    masked += (out['inputs'][sel] == TOK.mask_id).sum()
    same = out['inputs'][sel] == tokens[sel]
    unchanged += same.sum()
    randomized += ((out['inputs'][sel] != TOK.mask_id) & ~same).sum()
    lo, hi = TOK.ordinary_range
    assert np.all((out['inputs'] == TOK.mask_id) | ((out['inputs'] >= lo) & (out['inputs'] < hi)))
  # 30,000 draws: 0.8 / 0.1 / 0.1 within ~4 sigma. A random token equal to the original
  # (1/256) counts as unchanged.
  assert abs(masked / chosen - 0.8) < 0.01
  assert abs(unchanged / chosen - (0.1 + 0.1 / 256)) < 0.01
  assert abs(randomized / chosen - 0.1 * 255 / 256) < 0.01


def test_glm_blank_infilling():
  glm = objectives.GLM()
  rng = np.random.default_rng(0)
  lengths, orders = [], 0
  for seed in range(300):
    tokens = rng.integers(3, 259, size=200)
    out = glm.apply(tokens, TOK, seed=seed)
    n_in = len(out['inputs'])
    # Coverage: ceil(0.15 * 200) = 30 tokens masked.
    num_sentinels = int(TOK.is_sentinel(out['targets']).sum())
    assert len(out['targets']) - 1 - num_sentinels == 30
    # Part B holds the spans, each after its sentinel; putting them back gives the text.
    np.testing.assert_array_equal(
        objectives.uncorrupt(out['inputs'], out['targets'], TOK.is_sentinel, TOK.eos_id),
        tokens)
    sentinels_b = out['targets'][TOK.is_sentinel(out['targets'])]
    orders += not np.all(np.diff(sentinels_b) < 0)  # shuffled: not always in text order
    # 2D positions: Part A is 0..n_in-1 with block 0; Part B points at its span's sentinel.
    assert out['positions'][:n_in].tolist() == list(range(n_in))
    assert not out['block_positions'][:n_in].any()
    for j, tok in enumerate(out['targets'][:-1]):
      if TOK.is_sentinel(tok):
        assert out['inputs'][out['positions'][n_in + j]] == tok
        assert out['block_positions'][n_in + j] == 1
    starts = np.flatnonzero(TOK.is_sentinel(out['targets']))
    lengths += np.diff(np.append(starts, len(out['targets']) - 1)).tolist()
  assert orders > 100
  # Poisson(3) span lengths (zeros redrawn, the last clipped to the budget): mean near 3.
  assert 2.5 < np.mean(np.array(lengths) - 1) < 3.5
  l = glm.max_lengths(200)
  assert len(out['inputs']) <= l.inputs and len(out['targets']) <= l.targets


@pytest.mark.parametrize('fields,message', [
    (dict(coverage=0.0), r'coverage must be in \(0, 1\)'),
    (dict(coverage=1.0), r'coverage must be in \(0, 1\)'),
    (dict(poisson_lambda=0.0), 'poisson_lambda must be > 0'),
])
def test_glm_refuses_fields_out_of_range(fields, message):
  with pytest.raises(ValueError, match=message):
    objectives.GLM(**fields)


def test_registry():
  assert isinstance(objectives.get_objective('span_corruption'), objectives.SpanCorruption)
  with pytest.raises(ValueError, match='unknown objective'):
    objectives.get_objective('nope')
