"""UL2 mixture of denoisers: measured statistics match the configuration."""
import dataclasses

import numpy as np
import pytest

from research import objectives
from research.data import converters
from research.data.tokenizers import ByteTokenizer

TOK = ByteTokenizer()
# At a decoder length of 512, UL2's (mu=64, r=0.15) denoiser fits ~507 tokens -> 76 noise
# tokens in round(76/64) = 1 span, i.e. a realized mean span of 76, not 64: that is T5's
# rounding, not a bug. 1290 is a length where every denoiser's rounding error is < 2%
# (found by scanning lengths 512..4096 with max_tokens_that_fit), so the test measures the
# sampling, not the rounding.
DECODER_LENGTH = 1290


def _fit():
  # As the pipeline does: the tokenizer's 121 sentinels are part of the budget.
  return dataclasses.replace(converters.Decoder(prefix=True).fit({'targets': DECODER_LENGTH}),
                             sentinels=TOK.num_sentinels)


def test_each_denoiser_matches_its_configuration():
  ul2 = objectives.UL2()
  rng = np.random.default_rng(0)
  for denoiser in ul2.components():
    n = objectives.max_tokens_that_fit(denoiser, _fit())
    mode = TOK.mode_token(denoiser.mode)
    noise = spans = total = 0
    for seed in range(1000):
      tokens = rng.integers(3, 259, size=n)
      out = denoiser.apply(tokens, TOK, seed=seed)
      assert out['inputs'][0] == mode  # every example starts with its mode token
      assert len(out['inputs']) + len(out['targets']) <= DECODER_LENGTH
      if isinstance(denoiser, objectives.SpanCorruption):
        num_sentinels = int(TOK.is_sentinel(out['targets']).sum())
        noise += len(out['targets']) - 1 - num_sentinels
        spans += num_sentinels
        total += n
      else:
        total += len(out['inputs']) - 2  # prefix tokens (minus mode token and eos)
        noise += n
    if isinstance(denoiser, objectives.SpanCorruption):
      assert abs(noise / total / denoiser.noise_density - 1) < 0.02, denoiser.name
      assert abs(noise / spans / denoiser.mean_noise_span_length - 1) < 0.02, denoiser.name
    else:
      # S-denoiser: split point uniform over [1, n-1] -> mean prefix fraction 1/2.
      assert abs(total / noise - 0.5) < 0.02


def test_mixture_rates_and_mode_tokens():
  ul2 = objectives.UL2()
  picks = [ul2.select(j, seed=3) for j in range(1000)]
  modes = {'[NLU]': 'R', '[NLG]': 'X', '[S2S]': 'S'}
  observed = {c: sum(modes[p.mode] == c for p in picks) / 1000 for c in 'RXS'}
  for cls, rate in (('R', 0.4), ('X', 0.4), ('S', 0.2)):
    assert abs(observed[cls] - rate) <= 0.02, observed
  # Within a class the rate is split evenly over its denoisers.
  per = {p: picks.count(p) / 1000 for p in set(picks)}
  np.testing.assert_allclose(sorted(per.values()), sorted(ul2.denoiser_rates()), atol=0.02)
  # Same seed, same choices; another seed, another order.
  assert picks == [ul2.select(j, seed=3) for j in range(1000)]
  assert picks != [ul2.select(j, seed=4) for j in range(1000)]


def test_rates_from_config():
  ul2 = objectives.UL2(rates={'R': 0.5, 'X': 0.25, 'S': 0.25})
  picks = [ul2.select(j, seed=0).mode for j in range(1000)]
  assert abs(picks.count('[NLU]') / 1000 - 0.5) <= 0.02
  with pytest.raises(ValueError, match='sum to 1'):
    objectives.UL2(rates={'R': 0.5, 'X': 0.4, 'S': 0.2})
  with pytest.raises(ValueError, match='no rate'):
    objectives.UL2(rates={'R': 0.6, 'X': 0.4})


def test_length_too_small_for_a_denoiser_is_one_clear_error():
  fit = converters.Decoder(prefix=True).fit({'targets': 128})
  with pytest.raises(ValueError, match=r'sequence length too small for objective '
                     r'span_corruption\[\[NLG\]\]\(r=0.15,mu=64\)'):
    objectives.check_fits(objectives.UL2(), fit, 'prefix_decoder with lengths 128')


def test_every_example_fits_encoder_decoder_lengths():
  ul2 = objectives.UL2()
  fit = dataclasses.replace(converters.EncoderDecoder().fit({'inputs': 512, 'targets': 512}),
                            sentinels=TOK.num_sentinels)
  rng = np.random.default_rng(1)
  for j in range(300):
    d = ul2.select(j, seed=0)
    n = objectives.max_tokens_that_fit(d, fit)
    out = d.apply(rng.integers(3, 259, size=n), TOK, seed=j)
    assert len(out['inputs']) <= 512 and len(out['targets']) <= 512


def test_sentinel_supply_bounds_the_chunk():
  # (r=0.5, mu=3) with a mode token at 512/512 would take 765 tokens in 127 spans; bytes
  # have 121 sentinels.
  x = objectives.SpanCorruption(0.5, 3.0, mode='[NLG]')
  fit = converters.EncoderDecoder().fit({'inputs': 512, 'targets': 512})
  assert x.max_lengths(objectives.max_tokens_that_fit(x, fit)).sentinels == 127
  capped = dataclasses.replace(fit, sentinels=121)
  n = objectives.max_tokens_that_fit(x, capped)
  assert x.max_lengths(n).sentinels <= 121 < x.max_lengths(n + 1).sentinels
