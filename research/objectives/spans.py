"""T5 span corruption (Raffel et al. 2020, sec. 3.1.4), with the reference semantics of
t5.data.preprocessors: `random_spans_helper`, `random_spans_noise_mask`,
`noise_span_to_unique_sentinel` and `nonnoise_span_to_unique_sentinel`. Written in numpy
from those semantics (not copied), so the same numbers come out:

- noise tokens   = round(L * r) clamped to [1, L - 1]
- noise spans    = max(1, round(noise tokens / mu))    (round half to even, as tf.round)
- span lengths   = a uniform random composition of the noise (and non-noise) count into that
                   many positive parts; spans alternate non-noise, noise, ..., ending on noise.
- inputs         = non-noise tokens, each noise span replaced by one sentinel, then eos.
- targets        = each noise span preceded by its sentinel, then eos (no trailing sentinel).
"""
from __future__ import annotations

import numpy as np


def _rng(seed) -> np.random.Generator:
  if isinstance(seed, np.random.Generator):
    return seed
  return np.random.default_rng(seed)


def _noise_counts(length: int, noise_density: float,
                  mean_noise_span_length: float) -> tuple[int, int]:
  num_noise = int(np.round(length * noise_density))
  num_noise = min(max(num_noise, 1), length - 1)
  num_spans = max(int(np.round(num_noise / mean_noise_span_length)), 1)
  return num_noise, num_spans


def span_corruption_output_lengths(tokens_length: int, noise_density: float,
                                   mean_noise_span_length: float) -> tuple[int, int]:
  """(inputs_length, targets_length) that span corruption of `tokens_length` tokens produces,
  eos included. Deterministic: the counts do not depend on the seed."""
  if tokens_length < 2:
    # T5 pads such sequences to 2 internally and then drops the padding, which keeps the
    # (non-noise) token and drops the noise: inputs [token, eos], targets [eos].
    return 2, 1
  num_noise, num_spans = _noise_counts(tokens_length, noise_density, mean_noise_span_length)
  return (tokens_length - num_noise + num_spans + 1, num_noise + num_spans + 1)


def span_corruption_lengths(inputs_length: int, noise_density: float,
                            mean_noise_span_length: float) -> tuple[int, int]:
  """T5's `random_spans_helper`: the longest raw token count whose corrupted inputs (eos
  included) fit in `inputs_length`, and the targets length that count produces.

  (512, 0.15, 3.0) -> (568, 114), the T5 paper's setting. As in the reference, when the noise
  density is exactly 0.5 and the targets come out longer than the inputs, one token is dropped
  so that both lengths can share a round number.
  """
  if inputs_length < 2:
    raise ValueError(f'inputs_length must be >= 2 to hold a sentinel and eos, got {inputs_length}')
  if not 0.0 < noise_density < 1.0:
    raise ValueError(f'noise_density must be in (0, 1), got {noise_density}')
  if mean_noise_span_length <= 0:
    raise ValueError(f'mean_noise_span_length must be > 0, got {mean_noise_span_length}')
  # Same search as the reference: start below the answer, grow while the next length fits.
  tokens_length = inputs_length - 1
  while span_corruption_output_lengths(tokens_length + 1, noise_density,
                                       mean_noise_span_length)[0] <= inputs_length:
    tokens_length += 1
  _, targets_length = span_corruption_output_lengths(tokens_length, noise_density,
                                                     mean_noise_span_length)
  if noise_density == 0.5 and targets_length > inputs_length:
    tokens_length -= 1
    targets_length -= 1
  return tokens_length, targets_length


def _random_composition(rng: np.random.Generator, num_items: int,
                        num_segments: int) -> np.ndarray:
  """A uniformly random split of num_items into num_segments positive parts (stars and bars:
  choose num_segments - 1 of the num_items - 1 gaps, as the reference does by shuffling)."""
  if num_segments == 1:
    return np.array([num_items], dtype=np.int64)
  cuts = np.sort(rng.choice(num_items - 1, size=num_segments - 1, replace=False)) + 1
  bounds = np.concatenate([[0], cuts, [num_items]])
  return np.diff(bounds)


def random_spans_noise_mask(length: int, noise_density: float,
                            mean_noise_span_length: float, *, seed) -> np.ndarray:
  """Boolean mask of `length` with round(length*r) noise tokens in max(1, round(n/mu)) spans.

  The mask starts with non-noise and ends with noise; given the counts, every such mask is
  equally likely. `seed` is an int, a sequence of ints or a numpy Generator.
  """
  if length < 1:
    raise ValueError(f'length must be >= 1, got {length}')
  orig_length = length
  length = max(length, 2)  # the reference's guard against degeneracy; trimmed below
  num_noise, num_spans = _noise_counts(length, noise_density, mean_noise_span_length)
  num_nonnoise = length - num_noise
  if num_spans > num_nonnoise:
    # Each noise span needs a non-noise span before it. The reference would produce a
    # malformed mask here; say so instead.
    raise ValueError(
        f'{num_spans} noise spans cannot alternate with {num_nonnoise} non-noise tokens '
        f'(length={length}, noise_density={noise_density}, '
        f'mean_noise_span_length={mean_noise_span_length})')
  rng = _rng(seed)
  noise_lengths = _random_composition(rng, num_noise, num_spans)
  nonnoise_lengths = _random_composition(rng, num_nonnoise, num_spans)
  # Interleave [nonnoise_0, noise_0, nonnoise_1, noise_1, ...] and paint the noise runs.
  runs = np.stack([nonnoise_lengths, noise_lengths], axis=1).reshape(-1)
  is_noise_run = np.tile([False, True], num_spans)
  mask = np.repeat(is_noise_run, runs)
  return mask[:orig_length]


def noise_span_starts(mask: np.ndarray) -> np.ndarray:
  """True at the first token of each noise span."""
  prev = np.concatenate([[False], mask[:-1]])
  return mask & ~prev


def span_corruption(tokens: np.ndarray, *, seed, noise_density: float,
                    mean_noise_span_length: float, sentinel_ids, eos_id: int,
                    prefix: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
  """T5 span corruption of one token sequence.

  Args:
    tokens: int array [L], L >= 1.
    seed: int, sequence of ints or numpy Generator.
    sentinel_ids: callable count -> int array of that many sentinel ids (sentinel 0 first);
      the tokenizer's `sentinel_ids`, which raises rather than reuse ordinary ids.
    eos_id: appended to inputs and targets.
    prefix: ids prepended to the inputs (UL2's mode token).
  Returns:
    {'inputs', 'targets'} int32 arrays.
  """
  tokens = np.asarray(tokens, dtype=np.int32)
  mask = random_spans_noise_mask(len(tokens), noise_density, mean_noise_span_length, seed=seed)
  return corrupt_with_mask(tokens, mask, sentinel_ids=sentinel_ids, eos_id=eos_id,
                           prefix=prefix)


def corrupt_with_mask(tokens: np.ndarray, mask: np.ndarray, *, sentinel_ids, eos_id: int,
                      prefix: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
  """noise_span_to_unique_sentinel (inputs) and nonnoise_span_to_unique_sentinel (targets)
  for a given mask, each followed by eos."""
  tokens = np.asarray(tokens, dtype=np.int32)
  mask = np.asarray(mask, dtype=bool)
  starts = noise_span_starts(mask)
  num_spans = int(starts.sum())
  sentinels = np.asarray(sentinel_ids(num_spans), dtype=np.int32)
  span_index = np.cumsum(starts) - 1  # which noise span each token is in (-1 before the first)

  # inputs: keep non-noise tokens, replace each span's first token by its sentinel.
  inputs = np.where(starts, sentinels[np.maximum(span_index, 0)] if num_spans else 0, tokens)
  inputs = inputs[~mask | starts]
  # targets: keep noise tokens, each span preceded by its sentinel.
  order = np.flatnonzero(mask)
  targets = np.empty(len(order) + num_spans, dtype=np.int32)
  # A noise token's place in the targets: its rank among noise tokens plus the number of
  # sentinels emitted up to and including its span's (span index + 1).
  targets[np.arange(len(order)) + span_index[order] + 1] = tokens[order]
  targets[np.flatnonzero(starts[order]) + np.arange(num_spans)] = sentinels
  prefix_arr = np.asarray(prefix, dtype=np.int32)
  eos = np.asarray([eos_id], dtype=np.int32)
  return {'inputs': np.concatenate([prefix_arr, inputs.astype(np.int32), eos]),
          'targets': np.concatenate([targets, eos])}


def uncorrupt(inputs: np.ndarray, targets: np.ndarray, is_sentinel, eos_id: int,
              num_prefix: int = 0) -> np.ndarray:
  """Interleaves targets back into inputs, sentinel by sentinel: the original tokens.

  The inverse of `span_corruption`; tests use it, and so can anyone debugging a pipeline.
  """
  inputs = list(np.asarray(inputs)[num_prefix:])
  targets = list(np.asarray(targets))
  if inputs and inputs[-1] == eos_id:
    inputs.pop()
  if targets and targets[-1] == eos_id:
    targets.pop()
  spans: dict[int, list[int]] = {}
  current = None
  for t in targets:
    if is_sentinel(t):
      current = int(t)
      spans[current] = []
    elif current is None:
      raise ValueError('targets do not start with a sentinel')
    else:
      spans[current].append(int(t))
  out: list[int] = []
  for t in inputs:
    if is_sentinel(t):
      if int(t) not in spans:
        raise ValueError(f'sentinel {t} in inputs has no span in targets')
      out.extend(spans.pop(int(t)))
    else:
      out.append(int(t))
  if spans:
    raise ValueError(f'targets have spans for sentinels {sorted(spans)} absent from inputs')
  return np.asarray(out, dtype=np.int32)
