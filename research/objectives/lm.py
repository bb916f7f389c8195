"""Causal LM, prefix LM, T5 span corruption and BERT masked LM as `Objective`s.

Conventions (as in seqio / t5.data): outputs of sequence-to-sequence objectives end with eos;
causal LM outputs the raw chunk, because the pipeline already ends each document with eos and
an eos at every chunk boundary would teach the model to stop mid-document.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from research.objectives import base
from research.objectives import spans


@dataclasses.dataclass(frozen=True)
class CausalLM(base.Objective):
  """Plain next-token prediction: empty inputs, targets = the tokens."""

  @property
  def name(self):
    return 'causal_lm'

  def max_lengths(self, num_tokens):
    return base.Lengths(0, num_tokens, num_tokens)

  def apply(self, tokens, tokenizer, *, seed):
    del tokenizer, seed
    return {'inputs': np.zeros([0], np.int32), 'targets': np.asarray(tokens, np.int32)}


@dataclasses.dataclass(frozen=True)
class PrefixLM(base.Objective):
  """Split point k uniform in [1, n-1]: inputs = mode? + tokens[:k] + eos,
  targets = tokens[k:] + eos (Raffel et al. 2020 sec. 3.3.2; UL2's S-denoiser with mode)."""
  mode: str | None = None

  @property
  def name(self):
    return 'prefix_lm' + (f'[{self.mode}]' if self.mode else '')

  def max_lengths(self, num_tokens):
    m = 0 if self.mode is None else 1
    # Worst case over the split: inputs up to n-1 tokens, targets up to n-1 (n when n == 1).
    return base.Lengths(num_tokens + m, max(num_tokens, 2), num_tokens + m + 2)

  def min_tokens(self):
    return 2  # both halves non-empty

  def apply(self, tokens, tokenizer, *, seed):
    tokens = np.asarray(tokens, np.int32)
    n = len(tokens)
    k = int(base.rng_for(seed).integers(1, n)) if n >= 2 else 0
    prefix = np.asarray(base._mode_prefix(tokenizer, self.mode), np.int32)  # pylint: disable=protected-access
    eos = np.asarray([tokenizer.eos_id], np.int32)
    return {'inputs': np.concatenate([prefix, tokens[:k], eos]),
            'targets': np.concatenate([tokens[k:], eos])}


@dataclasses.dataclass(frozen=True)
class SpanCorruption(base.Objective):
  """T5 span corruption; T5's default is r=0.15, mu=3 (Raffel et al. 2020, Table 7)."""
  noise_density: float = 0.15
  mean_noise_span_length: float = 3.0
  mode: str | None = None

  def __post_init__(self):
    if not 0.0 < self.noise_density < 1.0:
      raise ValueError(f'noise_density must be in (0, 1), got {self.noise_density}')
    if self.mean_noise_span_length < 1:
      raise ValueError(
          f'mean_noise_span_length must be >= 1, got {self.mean_noise_span_length}')

  @property
  def name(self):
    mode = f'[{self.mode}]' if self.mode else ''
    return (f'span_corruption{mode}(r={self.noise_density:g},'
            f'mu={self.mean_noise_span_length:g})')

  def max_lengths(self, num_tokens):
    i, t = spans.span_corruption_output_lengths(num_tokens, self.noise_density,
                                                self.mean_noise_span_length)
    num_spans = (i + t - 2 - num_tokens) // 2  # i = n - noise + spans + 1, t = noise + spans + 1
    i += 0 if self.mode is None else 1
    return base.Lengths(i, t, i + t, num_spans)

  def min_tokens(self):
    # Room for at least one noise span of the configured mean length; below this, rounding
    # makes the realized span length drift far from mu (e.g. UL2's mu=64 at 128 tokens).
    return math.ceil(self.mean_noise_span_length / self.noise_density)

  def apply(self, tokens, tokenizer, *, seed):
    return spans.span_corruption(
        tokens, seed=seed, noise_density=self.noise_density,
        mean_noise_span_length=self.mean_noise_span_length,
        sentinel_ids=tokenizer.sentinel_ids, eos_id=tokenizer.eos_id,
        prefix=base._mode_prefix(tokenizer, self.mode))  # pylint: disable=protected-access


@dataclasses.dataclass(frozen=True)
class MaskedLM(base.Objective):
  """BERT masked LM (Devlin et al. 2019, sec. 3.1 and create_pretraining_data.py):
  round(rate * n) positions (at least 1) chosen without replacement; of those 80% become
  [MASK], 10% a random ordinary token, 10% stay unchanged.

  inputs = the corrupted tokens; targets = the original token at chosen positions and pad (0)
  elsewhere, so a converter can derive loss weights as targets != pad without knowing this
  objective. Decoder-only and encoder-decoder families can also consume it (targets align
  with inputs), but it is meant for the encoder-only family.
  """
  rate: float = 0.15
  mask_fraction: float = 0.8
  random_fraction: float = 0.1

  @property
  def name(self):
    return f'masked_lm(p={self.rate:g})'

  def max_lengths(self, num_tokens):
    return base.Lengths(num_tokens, num_tokens, 2 * num_tokens)

  def apply(self, tokens, tokenizer, *, seed):
    tokens = np.asarray(tokens, np.int32)
    rng = base.rng_for(seed)
    n = len(tokens)
    num = min(n, max(1, int(round(n * self.rate))))
    chosen = rng.choice(n, size=num, replace=False)
    u = rng.random(num)
    lo, hi = tokenizer.ordinary_range
    random_ids = rng.integers(lo, hi, size=num).astype(np.int32)
    replacement = np.where(u < self.mask_fraction, tokenizer.mask_id,
                           np.where(u < self.mask_fraction + self.random_fraction,
                                    random_ids, tokens[chosen]))
    inputs = tokens.copy()
    inputs[chosen] = replacement
    targets = np.full_like(tokens, tokenizer.pad_id)
    targets[chosen] = tokens[chosen]
    return {'inputs': inputs, 'targets': targets}
