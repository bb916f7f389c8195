"""TFDS builders for local text, no network at build or run time.

- `text_files`: any directory or glob of UTF-8 text files, split into train / validation by a
  hash of each file's relative path (stable across machines and file orderings).
- `python_stdlib`: the embedded default corpus, the .py files of the running Python's standard
  library (~1,800 files, ~30 MB on CPython 3.11), with the Python version in the metadata.

Both are written as array_record so that the pipeline can read documents by index (random
access is what makes shuffling, sharding and exact resume cheap). tensorflow_datasets is
imported lazily by `research.data.sources`, so importing `research.data` stays light.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import platform
import sysconfig

import tensorflow_datasets as tfds

VALIDATION_FRACTION = 0.02  # ~36 stdlib files: enough for a stable eval loss at tiny scale.


def validation_bucket(rel_path: str) -> float:
  """A file's place in [0, 1) by the hash of its relative path; < fraction -> validation."""
  digest = hashlib.sha256(rel_path.encode('utf-8')).digest()
  return int.from_bytes(digest[:8], 'big') / 2.0**64


def split_files(rel_paths: list[str], fraction: float) -> tuple[list[str], list[str]]:
  """(train, validation). With >= 2 files the validation split is never empty: if the hash
  sends nothing there, the file with the smallest bucket goes."""
  ranked = sorted(rel_paths, key=lambda p: (validation_bucket(p), p))
  validation = [p for p in ranked if validation_bucket(p) < fraction]
  if not validation and len(ranked) >= 2 and fraction > 0:
    validation = ranked[:1]
  train = sorted(set(rel_paths) - set(validation))
  return train, sorted(validation)


def list_text_files(pattern: str) -> tuple[str, list[str]]:
  """(root, sorted relative paths) of a directory (recursively, hidden files skipped) or a
  glob. Raises if nothing matches."""
  pattern = os.path.expanduser(pattern)
  if os.path.isdir(pattern):
    root = pattern
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
      dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
      paths.extend(os.path.join(dirpath, f) for f in filenames if not f.startswith('.'))
  else:
    paths = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
    root = os.path.dirname(pattern.split('*', 1)[0].split('?', 1)[0]) or '.'
  if not paths:
    raise ValueError(f'no text files found at {pattern!r}')
  return root, sorted(os.path.relpath(p, root) for p in paths)


def read_utf8(path: str) -> str:
  data = open(path, 'rb').read()
  try:
    return data.decode('utf-8')
  except UnicodeDecodeError as e:
    raise ValueError(f'{path} is not UTF-8 text: undecodable byte at offset {e.start}') from None


def _features():
  return tfds.features.FeaturesDict({'text': tfds.features.Text(),
                                     'path': tfds.features.Text()})


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder that writes array_record unless told another file_format: the pipeline reads
  that format by index (`sources.RandomAccessSource`), any other only as a stream."""

  def __init__(self, **kwargs):
    kwargs.setdefault('file_format', 'array_record')
    super().__init__(**kwargs)


@dataclasses.dataclass
class TextFilesConfig(tfds.core.BuilderConfig):
  """`pattern`: a directory or glob. The config name is derived from it (see `for_pattern`),
  so two corpora never share a prepared directory."""
  pattern: str = ''
  validation_fraction: float = VALIDATION_FRACTION


class TextFiles(tfds.core.GeneratorBasedBuilder):
  """Documents = files; features {'text', 'path'}."""
  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [TextFilesConfig(name='default')]

  @classmethod
  def for_pattern(cls, pattern: str, data_dir: str | None = None,
                  validation_fraction: float = VALIDATION_FRACTION) -> 'TextFiles':
    pattern = os.path.abspath(os.path.expanduser(pattern))
    key = hashlib.sha256(f'{pattern}|{validation_fraction}'.encode()).hexdigest()[:12]
    config = TextFilesConfig(name=f'p{key}', pattern=pattern,
                             validation_fraction=validation_fraction,
                             description=f'text files at {pattern}')
    return cls(config=config, data_dir=data_dir, file_format='array_record')

  def _info(self):
    return self.dataset_info_from_configs(
        description='UTF-8 text files from a local directory or glob.',
        features=_features(),
        metadata=tfds.core.MetadataDict(pattern=self.builder_config.pattern))

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing is downloaded
    root, rel = list_text_files(self.builder_config.pattern)
    texts = {p: read_utf8(os.path.join(root, p)) for p in rel}
    if not any(t.strip() for t in texts.values()):
      raise ValueError(f'empty corpus: the {len(rel)} files at '
                       f'{self.builder_config.pattern!r} contain no text')
    train, validation = split_files(rel, self.builder_config.validation_fraction)
    return {'train': self._generate(train, texts),
            'validation': self._generate(validation, texts)}

  def _generate(self, rel_paths, texts):
    for p in rel_paths:
      yield p, {'text': texts[p], 'path': p}

  def _generate_examples(self):  # pragma: no cover - the splits use _generate
    raise NotImplementedError


def stdlib_files() -> tuple[str, list[str]]:
  """(root, relative paths) of the running Python's standard-library sources."""
  root = sysconfig.get_paths()['stdlib']
  rel = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if d not in ('site-packages', '__pycache__'))
    rel.extend(os.path.relpath(os.path.join(dirpath, f), root)
               for f in filenames if f.endswith('.py'))
  return root, sorted(rel)


@dataclasses.dataclass
class StdlibConfig(tfds.core.BuilderConfig):
  max_files: int | None = None  # every k-th file, for fast tests ('small')


class PythonStdlib(ArrayRecordBuilder):
  """The standard library's .py files. A handful of test modules are deliberately not UTF-8
  (test/encoded_modules, test_source_encoding.py); they are skipped and listed in metadata
  rather than failing the build, because the corpus is fixed and known.

  Configs: 'full' (default) and 'small' (every k-th file, 150 files, ~2.5 MB) for tests.
  """
  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [StdlibConfig(name='full'), StdlibConfig(name='small', max_files=150)]

  def _info(self):
    return self.dataset_info_from_configs(
        description='Source files of the Python standard library.',
        features=_features(),
        metadata=tfds.core.MetadataDict(python_version=platform.python_version(),
                                        stdlib=sysconfig.get_paths()['stdlib']))

  def _split_generators(self, dl_manager):
    del dl_manager
    root, rel = stdlib_files()
    max_files = self.builder_config.max_files
    if max_files is not None:
      rel = rel[::max(1, len(rel) // max_files)][:max_files]
    texts, skipped = {}, []
    for p in rel:
      try:
        texts[p] = read_utf8(os.path.join(root, p))
      except ValueError:
        skipped.append(p)
    self.info.metadata['skipped_not_utf8'] = skipped
    if not texts:
      raise ValueError(f'empty corpus: no UTF-8 .py files under {root}')
    train, validation = split_files(sorted(texts), VALIDATION_FRACTION)
    return {'train': self._generate(train, texts),
            'validation': self._generate(validation, texts)}

  def _generate(self, rel_paths, texts):
    for p in rel_paths:
      yield p, {'text': texts[p], 'path': p}

  def _generate_examples(self):  # pragma: no cover
    raise NotImplementedError
