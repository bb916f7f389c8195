"""Batch sources the trainer can draw from: the real input pipeline, behind one contract.

The trainer calls `batch_source(family=, batch_size=, feature_lengths=, seed=, shard_index=,
num_shards=, split=)` and needs an iterator of numpy batch dicts with get_state()/set_state()
(and reads an optional `may_have_prefix`, see trainer.train).
`synthetic.synthetic_source` is the other implementation (tests, benchmarks).
"""
from typing import Mapping

import gin

# Imported eagerly (about 0.1 s) so `make_pipeline.*` bindings resolve in any run config.
from research.data import pipeline

# What the trainer's split names mean for the corpus.
SPLITS = {'train': 'train', 'eval': 'validation'}


@gin.configurable
def pipeline_source(family: str, batch_size: int, feature_lengths: Mapping[str, int],
                    seed: int, shard_index: int = 0, num_shards: int = 1,
                    split: str = 'train', dataset: str = 'python_stdlib'):
  """research.data's pipeline (gin-configured through `make_pipeline.*`) for this host."""
  is_train = split == 'train'
  return pipeline.make_pipeline(
      dataset, SPLITS[split], task_feature_lengths=feature_lengths, batch_size=batch_size,
      family=family, seed=seed, shard_index=shard_index, shard_count=num_shards,
      shuffle=is_train, num_epochs=None if is_train else 1,
      **({} if is_train else {'prefetch': 0}))
