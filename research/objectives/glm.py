"""GLM autoregressive blank infilling (Du et al. 2022, "GLM: General Language Model
Pretraining with Autoregressive Blank Infilling", sec. 2.1-2.2), for the prefix decoder.

Span lengths are drawn from Poisson(lambda=3) until at least 15% of the tokens are covered
(the paper's setting, following BART); spans are placed at random without overlap.
Part A (the inputs) is the text with each span replaced by one mask token; Part B (the
targets) is the spans in shuffled order. Here the mask of span i is sentinel i (so spans stay
identifiable after shuffling, as in T5), and each span in Part B is preceded by its sentinel,
which plays GLM's [START] role.

2D positions (GLM sec. 2.2), one pair per token of inputs ++ targets:
  position: the token's index in Part A; for a Part B token, the index of its span's mask.
  block_position: 0 in Part A; 1, 2, ... within each Part B span (its sentinel is 1).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from research.objectives import base


@dataclasses.dataclass(frozen=True)
class GLM(base.Objective):
  coverage: float = 0.15
  poisson_lambda: float = 3.0

  def __post_init__(self):
    # Out of range these would fail later, far from the config: poisson_lambda = 0 draws
    # only empty spans, which are redrawn forever; min_tokens divides by coverage; full
    # coverage leaves no room between spans.
    if not 0.0 < self.coverage < 1.0:
      raise ValueError(f'coverage must be in (0, 1), got {self.coverage}')
    if not self.poisson_lambda > 0:
      raise ValueError(f'poisson_lambda must be > 0, got {self.poisson_lambda}')

  @property
  def name(self):
    return f'glm(cover={self.coverage:g},lambda={self.poisson_lambda:g})'

  def max_lengths(self, num_tokens):
    # m masked tokens (exactly ceil(coverage * n)) in k <= m spans:
    # inputs n - m + k + 1 <= n + 1, targets m + k + 1 <= 2m + 1, total n + 2k + 2.
    n = num_tokens
    m = math.ceil(self.coverage * n) if n > 1 else 0
    return base.Lengths(n + 1, 2 * m + 1, n + 2 * m + 2, m)

  def min_tokens(self):
    return math.ceil(self.poisson_lambda / self.coverage)

  def _span_lengths(self, rng: np.random.Generator, n: int) -> list[int]:
    goal = math.ceil(self.coverage * n)
    lengths, covered = [], 0
    while covered < goal:
      length = int(rng.poisson(self.poisson_lambda))
      if length == 0:
        continue
      length = min(length, goal - covered)  # never exceed the budget (keeps lengths bounded)
      lengths.append(length)
      covered += length
    return lengths

  def apply(self, tokens, tokenizer, *, seed):
    tokens = np.asarray(tokens, np.int32)
    n = len(tokens)
    rng = base.rng_for(seed)
    lengths = self._span_lengths(rng, n) if n > 1 else []
    k = len(lengths)
    # Non-overlapping placement, uniform over arrangements: split the unmasked tokens into
    # k + 1 gaps (the ends may be empty, inner gaps at least 1 so spans stay distinct).
    free = n - sum(lengths)
    inner = max(k - 1, 0)
    extra = free - inner
    if extra < 0:
      raise ValueError(f'GLM: {k} spans do not fit in {n} tokens')
    cuts = np.sort(rng.integers(0, extra + 1, size=k)) if k else np.zeros([0], np.int64)
    gaps = np.diff(np.concatenate([[0], cuts, [extra]]))
    gaps[1:-1] += 1 if k > 1 else 0
    starts = (np.cumsum(gaps[:-1]) + np.concatenate([[0], np.cumsum(lengths[:-1])])
              ).astype(np.int64) if k else np.zeros([0], np.int64)
    sentinels = tokenizer.sentinel_ids(k)

    part_a, pos_of_span, cursor = [], [], 0
    for i in range(k):
      part_a.extend(tokens[cursor:starts[i]].tolist())
      pos_of_span.append(len(part_a))
      part_a.append(int(sentinels[i]))
      cursor = starts[i] + lengths[i]
    part_a.extend(tokens[cursor:].tolist())
    part_a.append(tokenizer.eos_id)

    part_b, pos_b, block_b = [], [], []
    for i in rng.permutation(k):
      span = [int(sentinels[i])] + tokens[starts[i]:starts[i] + lengths[i]].tolist()
      part_b.extend(span)
      pos_b.extend([pos_of_span[i]] * len(span))
      block_b.extend(range(1, len(span) + 1))
    part_b.append(tokenizer.eos_id)
    # eos closes the last span (GLM's [END]), so it continues that span's 2D position.
    pos_b.append(pos_b[-1] if pos_b else len(part_a) - 1)
    block_b.append(block_b[-1] + 1 if block_b else 1)

    return {
        'inputs': np.asarray(part_a, np.int32),
        'targets': np.asarray(part_b, np.int32),
        'positions': np.concatenate([np.arange(len(part_a)), pos_b]).astype(np.int32),
        'block_positions': np.concatenate(
            [np.zeros(len(part_a), np.int64), block_b]).astype(np.int32),
    }
