"""Document sources: a dataset name -> the documents (strings) of one split.

Names:
  'python_stdlib', 'python_stdlib/small'  the embedded corpus (built on first use, offline)
  'text_files:<dir or glob>'              any local UTF-8 text (built on first use, offline)
  'prepared:<dir>'                        a TFDS dataset already prepared in <dir> (the
                                          name/version directory), e.g. the output of
                                          `python -m research.data.cleaning`
  any registered TFDS name ('lm1b', 'c4/en', 'wikitext/wikitext-103-raw-v1', ...), read by
  `feature_key`, when it is already prepared in data_dir (nothing is downloaded).

Sources prepared as array_record are read by index (`RandomAccessSource`); others stream in
file order (`StreamSource`). The pipeline asks for "documents of epoch e from position p on".
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np

DEFAULT_DATA_DIR = os.environ.get('TFDS_DATA_DIR', os.path.expanduser('~/tensorflow_datasets'))
_OUR_BUILDERS = ('python_stdlib', 'text_files')


def _to_str(value) -> str:
  if isinstance(value, bytes):
    return value.decode('utf-8')
  if isinstance(value, np.ndarray):
    return _to_str(value.item())
  return str(value)


class RandomAccessSource:
  """Documents by index; this host's shard is indices shard_index::shard_count."""

  def __init__(self, data_source, feature_key: str, shard_index: int, shard_count: int,
               name: str):
    self._data = data_source
    self._key = feature_key
    self.indices = np.arange(shard_index, len(data_source), shard_count)
    if len(self.indices) == 0:
      raise ValueError(f'dataset {name}: shard {shard_index} of {shard_count} has no '
                       f'documents ({len(data_source)} in the split)')

  def __len__(self):
    return len(self.indices)

  def document(self, i: int) -> str:
    return _to_str(self._data[int(i)][self._key])

  def iterate(self, epoch: int, start: int, seed: int, shuffle: bool) -> Iterator[str]:
    order = self.indices
    if shuffle:
      order = np.random.default_rng([seed, 0x5EED, epoch]).permutation(order)
    for i in order[start:]:
      yield self.document(i)


class StreamSource:
  """Documents in file order (tfrecord datasets); resume skips `start` documents."""

  def __init__(self, builder, split: str, feature_key: str, shard_index: int,
               shard_count: int):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    self._builder = builder
    self._split = tfds.even_splits(split, n=shard_count)[shard_index]
    self._key = feature_key

  def iterate(self, epoch: int, start: int, seed: int, shuffle: bool) -> Iterator[str]:
    del epoch, seed, shuffle  # streams keep file order; shuffling needs random access
    ds = self._builder.as_dataset(split=self._split, shuffle_files=False).skip(start)
    for ex in ds.as_numpy_iterator():
      yield _to_str(ex[self._key])


def get_builder(name: str, data_dir: str | None = None):
  """A prepared TFDS builder for `name`; builds our own offline builders on first use."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from research.data import builders  # pylint: disable=g-import-not-at-top
  data_dir = data_dir or DEFAULT_DATA_DIR
  if name.startswith('prepared:'):
    path = os.path.expanduser(name.split(':', 1)[1])
    if not os.path.isfile(os.path.join(path, 'dataset_info.json')):
      raise ValueError(f'dataset {name!r}: no prepared TFDS dataset at {path!r} '
                       f'(no dataset_info.json)')
    return tfds.builder_from_directory(path)
  if name.startswith('text_files:'):
    builders.list_text_files(name.split(':', 1)[1])  # no files: fail before making any dir
    builder = builders.TextFiles.for_pattern(name.split(':', 1)[1], data_dir=data_dir)
    builder.download_and_prepare()
    return builder
  base = name.split('/', 1)[0].split(':', 1)[0]
  if base == 'python_stdlib':
    config = name.split('/', 1)[1] if '/' in name else None
    builder = builders.PythonStdlib(config=config, data_dir=data_dir)
    builder.download_and_prepare()
    return builder
  if base not in tfds.list_builders(with_community_datasets=False):
    raise ValueError(f'unknown dataset name {name!r}: not python_stdlib, text_files:<path>, '
                     f'nor a registered TFDS dataset')
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'dataset {name!r} cannot be opened: {e}') from None
  if not builder.is_prepared():
    raise ValueError(f'dataset {name!r} is not prepared in {data_dir}; prepare it with '
                     f'`tfds build {name} --data_dir={data_dir}` on a machine with network')
  return builder


def get_source(name: str, split: str, *, data_dir: str | None = None,
               feature_key: str = 'text', shard_index: int = 0, shard_count: int = 1):
  if not 0 <= shard_index < shard_count:
    raise ValueError(f'shard_index {shard_index} not in [0, shard_count={shard_count})')
  builder = get_builder(name, data_dir)
  if split not in builder.info.splits:
    raise ValueError(f'dataset {name!r} has no split {split!r}; it has '
                     f'{sorted(builder.info.splits)}')
  if feature_key not in builder.info.features:
    raise ValueError(f'dataset {name!r} has no feature {feature_key!r}; it has '
                     f'{sorted(builder.info.features)}')
  if builder.info.splits[split].num_examples == 0:
    raise ValueError(f'empty corpus: split {split!r} of dataset {name!r} has no documents')
  fmt = getattr(builder.info, 'file_format', None)
  if fmt is not None and 'array_record' in str(fmt).lower():
    return RandomAccessSource(builder.as_data_source(split=split), feature_key, shard_index,
                              shard_count, name)
  return StreamSource(builder, split, feature_key, shard_index, shard_count)
