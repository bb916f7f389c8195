"""What every objective is: a frozen, hashable config whose `apply` is a pure seeded function
tokens -> {'inputs', 'targets'}, plus the length arithmetic that lets the pipeline cut raw
token chunks that always fit the configured feature lengths.

Objectives never know the architecture. The feature converter decides what "fits" means
(encoder-decoder: inputs and targets each within their length; decoder-only: their sum within
the decoder length) and hands that test to `max_tokens_that_fit`.
"""
from __future__ import annotations

import abc
import dataclasses
import functools
from typing import Callable, NamedTuple

import numpy as np


class Lengths(NamedTuple):
  """Worst-case output lengths (eos and mode tokens included) for some raw token count, and
  the most sentinels the example can use (the tokenizer's supply is a budget too)."""
  inputs: int
  targets: int
  total: int
  sentinels: int = 0


def rng_for(seed) -> np.random.Generator:
  if isinstance(seed, np.random.Generator):
    return seed
  return np.random.default_rng(seed)


@dataclasses.dataclass(frozen=True)
class Objective(abc.ABC):
  """Base class: subclasses are frozen dataclasses, so equal configs hash equal (caching)."""

  @property
  @abc.abstractmethod
  def name(self) -> str:
    """Short label for logs and results tables (e.g. 'span_corruption(r=0.15,mu=3)')."""

  @abc.abstractmethod
  def max_lengths(self, num_tokens: int) -> Lengths:
    """The longest inputs / targets / inputs+targets that `num_tokens` raw tokens can give."""

  def min_tokens(self) -> int:
    """Fewest raw tokens per example at which the objective still means what it says; a
    configured length that cannot hold this many is an error, not a silent degradation."""
    return 1

  @abc.abstractmethod
  def apply(self, tokens: np.ndarray, tokenizer, *, seed) -> dict[str, np.ndarray]:
    """Pure function of (tokens, seed): {'inputs': int32 [I], 'targets': int32 [T]}."""

  def select(self, example_index: int, seed: int) -> 'Objective':
    """The concrete objective for the example_index-th example (mixtures override)."""
    del example_index, seed
    return self

  def components(self) -> tuple['Objective', ...]:
    """Every concrete objective `select` can return (for up-front length checks)."""
    return (self,)


def _mode_prefix(tokenizer, mode: str | None) -> tuple[int, ...]:
  return () if mode is None else (tokenizer.mode_token(mode),)


@functools.lru_cache(maxsize=256)
def max_tokens_that_fit(objective: Objective, fits: Callable[[Lengths], bool],
                        limit: int = 1 << 20) -> int:
  """Largest raw token count n whose worst-case lengths fit, found as T5's random_spans_helper
  does (grow while the next count still fits). 0 if not even one token fits."""
  n = 0
  while n < limit and fits(objective.max_lengths(n + 1)):
    n += 1
  return n


def check_fits(objective: Objective, fits: Callable[[Lengths], bool], describe: str) -> int:
  """Raises one clear error when the layout is too small for some component objective.

  Returns the smallest chunk length over the components (for logging)."""
  smallest = None
  for component in objective.components():
    n = max_tokens_that_fit(component, fits)
    need = component.min_tokens()
    if n < need:
      raise ValueError(
          f'sequence length too small for objective {component.name}: {describe} fits '
          f'{n} raw tokens per example, it needs at least {need}')
    smallest = n if smallest is None else min(smallest, n)
  return smallest
