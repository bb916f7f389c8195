"""A synthetic batch source with the docs/design.md features, for tests and benchmarks.

Row r of global batch i is a pure function of (seed, i, r), so `get_state`/`set_state` are
just the index, resuming is exact, and the global batch is the same whatever the number of
hosts that share it (each host makes only its own rows). Sequences are arithmetic progressions mod the vocabulary (random start
and stride), which a small model learns quickly, so a falling loss is a real signal.
"""
from typing import Mapping

import gin
import numpy as np

from research.data import indexed
from research.train import tasks


def _progressions(rng: np.random.Generator, rows: int, length: int, vocab: int):
  start = rng.integers(0, vocab, size=(rows, 1))
  stride = rng.integers(1, 8, size=(rows, 1))
  return ((start + stride * np.arange(length + 1)[None, :]) % vocab).astype(np.int32)


def _segments(rows: int, length: int) -> tuple[np.ndarray, np.ndarray]:
  """Two packed segments per row (and no padding), to exercise segment masking."""
  cut = length // 2
  segment_ids = np.where(np.arange(length) < cut, 1, 2).astype(np.int32)
  positions = np.where(np.arange(length) < cut, np.arange(length),
                       np.arange(length) - cut).astype(np.int32)
  return np.tile(segment_ids, (rows, 1)), np.tile(positions, (rows, 1))


def make_batch(family: str, rng: np.random.Generator, batch_size: int,
               feature_lengths: Mapping[str, int], vocab_size: int) -> dict[str, np.ndarray]:
  """One batch of `family`'s features; lengths from {'inputs': ..., 'targets': ...}."""
  targets_len = feature_lengths['targets']
  seq = _progressions(rng, batch_size, targets_len, vocab_size - 1) + 1  # 0 is padding
  weights = np.ones((batch_size, targets_len), np.float32)
  seg, pos = _segments(batch_size, targets_len)
  if family == 'encoder':
    return {'encoder_input_tokens': seq[:, :-1], 'encoder_target_tokens': seq[:, 1:],
            'encoder_loss_weights': weights, 'encoder_segment_ids': seg,
            'encoder_positions': pos}
  batch = {'decoder_input_tokens': seq[:, :-1], 'decoder_target_tokens': seq[:, 1:],
           'decoder_loss_weights': weights, 'decoder_segment_ids': seg,
           'decoder_positions': pos}
  if family == 'decoder':
    batch['decoder_causal_attention'] = np.zeros((batch_size, targets_len), np.int32)
  else:
    inputs_len = feature_lengths.get('inputs', targets_len)
    enc = _progressions(rng, batch_size, inputs_len, vocab_size - 1)[:, :-1] + 1
    enc_seg, enc_pos = _segments(batch_size, inputs_len)
    batch.update(encoder_input_tokens=enc, encoder_segment_ids=enc_seg,
                 encoder_positions=enc_pos)
  assert set(batch) >= set(tasks.FAMILY_FEATURES[family].inputs) - {
      'decoder_causal_attention', 'decoder_block_positions'}
  return batch


class SyntheticSource(indexed.IndexedSource):
  """Infinite iterator of synthetic batches with get_state / set_state."""
  may_have_prefix = False  # decoder batches carry an all-zero decoder_causal_attention

  def __init__(self, family: str, batch_size: int, feature_lengths: Mapping[str, int],
               vocab_size: int = 384, seed: int = 0, shard_index: int = 0,
               num_shards: int = 1):
    self.family, self.batch_size = family, batch_size
    self.feature_lengths, self.vocab_size = dict(feature_lengths), vocab_size
    self.seed, self.shard_index, self.num_shards = seed, shard_index, num_shards

  def batch(self, index: int) -> dict[str, np.ndarray]:
    """This host's rows of global batch `index`: rows shard_index * batch_size onwards of
    a global batch of num_shards * batch_size rows, each drawn from (seed, index, row)."""
    first = self.shard_index * self.batch_size
    rows = [make_batch(self.family, np.random.default_rng((self.seed, index, row)), 1,
                       self.feature_lengths, self.vocab_size)
            for row in range(first, first + self.batch_size)]
    return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}


@gin.configurable
def synthetic_source(family: str, batch_size: int, feature_lengths: Mapping[str, int],
                     seed: int, shard_index: int = 0, num_shards: int = 1,
                     split: str = 'train', vocab_size: int = 384,
                     eval_seed_offset: int = 10_000) -> SyntheticSource:
  """The trainer's `batch_source` contract, satisfied with synthetic data."""
  if split != 'train':
    seed = seed + eval_seed_offset
  return SyntheticSource(family, batch_size, feature_lengths, vocab_size, seed,
                         shard_index, num_shards)
