"""T5 span corruption: the reference arithmetic, mask invariants, a hand-made example."""
import numpy as np
import pytest

from research import objectives
from research.data.tokenizers import ByteTokenizer
from research.objectives import spans


# Values of t5.data.preprocessors.random_spans_helper (extra_tokens_per_span = 1 on both
# sides, eos counted). The first three are the reference's own examples; the others were worked by hand
# from the reference's loop, e.g. (512, 0.5, 3): 767 tokens -> 384 noise in 128 spans ->
# inputs 383 + 128 + 1 = 512, targets 513 > 512, so the 0.5 hack drops one token.
@pytest.mark.parametrize('args,expected', [
    ((512, 0.15, 3.0), (568, 114)),
    ((64, 0.2, 2.0), (70, 22)),
    ((64, 0.2, 1.0), (63, 27)),
    ((512, 0.5, 3.0), (766, 512)),
    ((114, 0.15, 3.0), (126, 26)),
    ((1024, 0.15, 3.0), (1137, 229)),
    ((512, 0.15, 8.0), (588, 100)),  # 588: 88 noise in 11 spans -> 500+11+1
])
def test_span_corruption_lengths_matches_t5(args, expected):
  assert objectives.span_corruption_lengths(*args) == expected


def test_span_corruption_lengths_is_tight():
  # Exactly what the helper promises: the returned count fits, one more does not.
  for inputs_length in (16, 64, 100, 512):
    for r, mu in ((0.15, 3.0), (0.5, 8.0), (0.3, 2.0)):
      n, t = objectives.span_corruption_lengths(inputs_length, r, mu)
      i, t2 = objectives.span_corruption_output_lengths(n, r, mu)
      assert i <= inputs_length and t2 >= t
      if r != 0.5:
        assert objectives.span_corruption_output_lengths(n + 1, r, mu)[0] > inputs_length


@pytest.mark.parametrize('length,r,mu', [
    (568, 0.15, 3.0), (100, 0.5, 8.0), (37, 0.15, 3.0), (2, 0.15, 3.0), (1000, 0.15, 64.0),
    (10, 0.5, 1.0)])
def test_noise_mask_invariants(length, r, mu):
  for seed in range(20):
    mask = objectives.random_spans_noise_mask(length, r, mu, seed=seed)
    assert mask.dtype == bool and mask.shape == (length,)
    num_noise = min(max(int(np.round(length * r)), 1), length - 1)
    num_spans = max(int(np.round(num_noise / mu)), 1)
    assert mask.sum() == num_noise
    assert spans.noise_span_starts(mask).sum() == num_spans
    assert not mask[0] and mask[-1]  # starts with non-noise, ends with noise


def test_noise_mask_length_one_follows_reference():
  # The reference pads to 2 ([non-noise, noise]) and trims: a lone token is never noise.
  assert objectives.random_spans_noise_mask(1, 0.15, 3.0, seed=0).tolist() == [False]


def test_noise_mask_seeded_and_uniform_over_compositions():
  a = objectives.random_spans_noise_mask(50, 0.3, 3.0, seed=7)
  b = objectives.random_spans_noise_mask(50, 0.3, 3.0, seed=7)
  np.testing.assert_array_equal(a, b)
  # 4 tokens, 2 noise in 1 span, 2 non-noise in 1 span: the only mask is FFTT. With 6 tokens,
  # 2 noise spans of 1 and non-noise 4 split in 2 parts: 3 compositions, each ~1/3.
  assert objectives.random_spans_noise_mask(4, 0.5, 2.0, seed=0).tolist() == [0, 0, 1, 1]
  seen = {}
  for seed in range(3000):
    m = tuple(objectives.random_spans_noise_mask(6, 2 / 6, 1.0, seed=seed).tolist())
    seen[m] = seen.get(m, 0) + 1
  assert len(seen) == 3
  assert all(abs(c / 3000 - 1 / 3) < 0.04 for c in seen.values())


def test_hand_made_example():
  tok = ByteTokenizer()
  tokens = np.arange(10, 20)
  mask = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 1], bool)
  out = spans.corrupt_with_mask(tokens, mask, sentinel_ids=tok.sentinel_ids, eos_id=1)
  s0, s1, s2 = 383, 382, 381
  assert out['inputs'].tolist() == [10, 11, s0, 14, 15, 16, s1, 18, s2, 1]
  assert out['targets'].tolist() == [s0, 12, 13, s1, 17, s2, 19, 1]  # no trailing sentinel


def test_span_corruption_uses_its_mask_and_inverts():
  tok = ByteTokenizer()
  rng = np.random.default_rng(0)
  for seed in range(50):
    tokens = rng.integers(3, 259, size=int(rng.integers(2, 600)))
    out = objectives.span_corruption(tokens, seed=seed, noise_density=0.15,
                                     mean_noise_span_length=3.0,
                                     sentinel_ids=tok.sentinel_ids, eos_id=tok.eos_id)
    mask = objectives.random_spans_noise_mask(len(tokens), 0.15, 3.0, seed=seed)
    expected = spans.corrupt_with_mask(tokens, mask, sentinel_ids=tok.sentinel_ids, eos_id=1)
    np.testing.assert_array_equal(out['inputs'], expected['inputs'])
    np.testing.assert_array_equal(out['targets'], expected['targets'])
    i, t = objectives.span_corruption_output_lengths(len(tokens), 0.15, 3.0)
    assert (len(out['inputs']), len(out['targets'])) == (i, t)
    # Interleaving targets back, sentinel by sentinel, recovers the tokens.
    np.testing.assert_array_equal(
        objectives.uncorrupt(out['inputs'], out['targets'], tok.is_sentinel, tok.eos_id),
        tokens)


def test_running_out_of_sentinels_is_an_error():
  tok = ByteTokenizer()  # 121 sentinels
  tokens = np.full(1000, 50)
  with pytest.raises(ValueError, match='sentinels'):
    objectives.span_corruption(tokens, seed=0, noise_density=0.5, mean_noise_span_length=1.0,
                               sentinel_ids=tok.sentinel_ids, eos_id=1)


def test_bad_parameters():
  with pytest.raises(ValueError, match='noise_density'):
    objectives.span_corruption_lengths(512, 1.5, 3.0)
  with pytest.raises(ValueError, match='inputs_length'):
    objectives.span_corruption_lengths(1, 0.15, 3.0)


def test_more_spans_than_gaps_is_an_error():
  with pytest.raises(ValueError, match='noise spans cannot alternate'):
    objectives.random_spans_noise_mask(10, 0.9, 1.0, seed=0)
