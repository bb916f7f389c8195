"""UL2's mixture of denoisers (Tay et al. 2022, "UL2: Unifying Language Learning Paradigms",
sec. 3.1.2 and Table 1's UL2 row):

  R-denoisers  [NLU]  (mu=3, r=0.15), (mu=8, r=0.15)
  X-denoisers  [NLG]  (mu=3, r=0.5), (mu=8, r=0.5), (mu=64, r=0.15), (mu=64, r=0.5)
  S-denoiser   [S2S]  prefix LM

The mode token is prepended to the inputs. Class rates come from gin (default R 40%, X 40%,
S 20%) and are split evenly among a class's denoisers.

Which denoiser serves example j is stratified rather than drawn independently: example
indices are cut into blocks of `block_size`, each block holds every denoiser its exact quota
of times (largest-remainder rounding), in a seeded random order. The realized mixture then
matches the configured one to within 1/block_size after every block, instead of drifting by
~1.5 points per 1000 examples as i.i.d. sampling (seqio's sample_from_datasets) would.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from research.objectives import base
from research.objectives import lm

_CLASS_MODE = {'R': '[NLU]', 'X': '[NLG]', 'S': '[S2S]'}
# (class, noise_density, mean_noise_span_length); S has no span parameters.
DEFAULT_DENOISERS = (
    ('R', 0.15, 3.0), ('R', 0.15, 8.0),
    ('X', 0.5, 3.0), ('X', 0.5, 8.0), ('X', 0.15, 64.0), ('X', 0.5, 64.0),
    ('S', None, None),
)
DEFAULT_RATES = (('R', 0.4), ('X', 0.4), ('S', 0.2))


def make_denoiser(cls: str, noise_density, mean_noise_span_length) -> base.Objective:
  if cls not in _CLASS_MODE:
    raise ValueError(f'unknown UL2 denoiser class {cls!r}; known: R, X, S')
  if cls == 'S':
    return lm.PrefixLM(mode=_CLASS_MODE['S'])
  return lm.SpanCorruption(noise_density=float(noise_density),
                           mean_noise_span_length=float(mean_noise_span_length),
                           mode=_CLASS_MODE[cls])


def _largest_remainder(rates: np.ndarray, total: int) -> np.ndarray:
  exact = rates * total
  counts = np.floor(exact).astype(np.int64)
  short = total - counts.sum()
  # Ties broken by index so the quota is a pure function of the config.
  order = np.lexsort((np.arange(len(rates)), -(exact - counts)))
  counts[order[:short]] += 1
  return counts


@functools.lru_cache(maxsize=64)
def _block_order(quota: tuple[int, ...], seed: int, block: int) -> np.ndarray:
  slots = np.repeat(np.arange(len(quota)), quota)
  return np.random.default_rng([seed, 0x0712, block]).permutation(slots)


@dataclasses.dataclass(frozen=True)
class UL2(base.Objective):
  """Mixture of denoisers; `select(j, seed)` gives the denoiser for example j.

  Attributes:
    denoisers: tuples (class, noise_density, mean_noise_span_length), class in R/X/S.
    rates: tuples (class, rate); rates over the classes present must sum to 1.
    block_size: stratification block (see module docstring).
  """
  denoisers: tuple = DEFAULT_DENOISERS
  rates: tuple = DEFAULT_RATES
  block_size: int = 100

  def __post_init__(self):
    object.__setattr__(self, 'denoisers', tuple(tuple(d) for d in self.denoisers))
    rates = dict(self.rates) if not isinstance(self.rates, dict) else self.rates
    object.__setattr__(self, 'rates', tuple(sorted(rates.items())))
    classes = [d[0] for d in self.denoisers]
    for cls in rates:
      if cls not in classes:
        raise ValueError(f'UL2 rate given for class {cls!r} but no denoiser of that class')
    for cls in classes:
      if cls not in rates:
        raise ValueError(f'UL2 denoiser class {cls!r} has no rate')
    total = sum(rates.values())
    if abs(total - 1.0) > 1e-6 or min(rates.values()) < 0:
      raise ValueError(f'UL2 rates must be >= 0 and sum to 1, got {dict(self.rates)}')
    if self.block_size < len(self.denoisers):
      raise ValueError(f'block_size {self.block_size} < number of denoisers')

  @property
  def name(self):
    return 'ul2'

  @functools.cached_property
  def _objectives(self) -> tuple[base.Objective, ...]:
    return tuple(make_denoiser(*d) for d in self.denoisers)

  def denoiser_rates(self) -> np.ndarray:
    """Configured rate of each denoiser (class rate split evenly within the class)."""
    rates = dict(self.rates)
    classes = [d[0] for d in self.denoisers]
    return np.array([rates[c] / classes.count(c) for c in classes])

  @functools.cached_property
  def _quota(self) -> tuple[int, ...]:
    return tuple(int(c) for c in _largest_remainder(self.denoiser_rates(), self.block_size))

  def components(self):
    return self._objectives

  def select(self, example_index, seed):
    order = _block_order(self._quota, int(seed), example_index // self.block_size)
    return self._objectives[order[example_index % self.block_size]]

  def max_lengths(self, num_tokens):
    return base.Lengths(*(int(x) for x in np.max(
        [o.max_lengths(num_tokens) for o in self._objectives], axis=0)))

  def min_tokens(self):
    return max(o.min_tokens() for o in self._objectives)

  def apply(self, tokens, tokenizer, *, seed):
    """A one-off draw (pipelines call `select` with the example index instead)."""
    rng = base.rng_for(seed)
    objective = self._objectives[rng.choice(len(self._objectives), p=self.denoiser_rates())]
    return objective.apply(tokens, tokenizer, seed=rng)
