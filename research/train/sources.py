"""Batch sources the trainer can draw from: the real input pipeline, behind one contract.

The trainer calls `batch_source(family=, batch_size=, feature_lengths=, seed=, shard_index=,
num_shards=, split=)` and needs an iterator of numpy batch dicts with get_state()/set_state()
(and reads an optional `may_have_prefix`, see trainer.train).
`synthetic.synthetic_source` is the other implementation (tests, benchmarks).

Host-invariant data order: `batch_size` is this host's share, and the source yields rows
[shard_index * batch_size, (shard_index + 1) * batch_size) of a global batch of
num_shards * batch_size rows that does not depend on num_shards. So a run on N hosts sees
the same global batch at every step as a run on one host, and its data state (the same on
every host) resumes on any host count.
"""
from typing import Mapping

import gin

# Imported eagerly (about 0.1 s) so `make_pipeline.*` bindings resolve in any run config.
from research.data import pipeline

# What the trainer's split names mean for the corpus.
SPLITS = {'train': 'train', 'eval': 'validation'}


class RowSlice:
  """Rows [start, stop) of every batch of a global-batch iterator; its state is the inner
  iterator's (the same on every host)."""

  def __init__(self, inner, start: int, stop: int):
    self.inner, self.start, self.stop = inner, start, stop

  def __iter__(self):
    return self

  def __next__(self):
    return {k: v[self.start:self.stop] for k, v in next(self.inner).items()}

  @property
  def may_have_prefix(self):
    return getattr(self.inner, 'may_have_prefix', True)

  def get_state(self):
    return self.inner.get_state()

  def set_state(self, state):
    self.inner.set_state(state)

  def close(self):
    if hasattr(self.inner, 'close'):
      self.inner.close()


@gin.configurable
def pipeline_source(family: str, batch_size: int, feature_lengths: Mapping[str, int],
                    seed: int, shard_index: int = 0, num_shards: int = 1,
                    split: str = 'train', dataset: str = 'python_stdlib'):
  """research.data's pipeline (gin-configured through `make_pipeline.*`) for this host.

  The packed stream is sequential, so every host runs the whole global pipeline (one
  shard of one, num_shards * batch_size rows a batch) and keeps its own rows: the global
  batch does not depend on the host count. The price is that each host tokenizes and packs
  the whole global batch, which the pipeline does far faster than a step trains on it
  (docs/training.md, "Multi-host training")."""
  if not 0 <= shard_index < num_shards:
    raise ValueError(f'shard_index {shard_index} is outside [0, {num_shards})')
  is_train = split == 'train'
  whole = pipeline.make_pipeline(
      dataset, SPLITS[split], task_feature_lengths=feature_lengths,
      batch_size=batch_size * num_shards, family=family, seed=seed, shard_index=0,
      shard_count=1, shuffle=is_train, num_epochs=None if is_train else 1,
      **({} if is_train else {'prefetch': 0}))
  if num_shards == 1:
    return whole
  return RowSlice(whole, shard_index * batch_size, (shard_index + 1) * batch_size)
