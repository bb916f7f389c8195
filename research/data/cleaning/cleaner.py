"""Cleaning a text_files corpus into a new prepared TFDS dataset, with a report.

Per document (= file), in this order: decode as UTF-8 (else removed as `not_utf8`), the
quality rules (`rules.py`; removed by the first rule it fails), PII scrubbing (`pii.py`),
exact deduplication, then near deduplication (`dedup.py`) of the scrubbed text, so that
two copies that differ only in an address count as one.

How it stays deterministic, streaming, parallel and resumable:

- Files are taken in sorted relative-path order. A multiprocessing pool reads, filters,
  scrubs and signs them (`Pool.imap`, results in input order whatever the finishing
  order); the parent then decides duplicates in that order, so the first copy is the one
  kept, and writes each kept document at once. No text is held beyond the file in hand;
  the deduplication index holds hashes and signatures only.
- Everything is written under `<output_dir>.partial/` and renamed to `<output_dir>` at the
  end. A killed run leaves only the `.partial` directory, which the next run removes and
  starts again from scratch (a complete output is never half-written; an existing output
  is refused).

Output layout:
  <output_dir>/documents/<relative path>   the kept, scrubbed documents (a text_files corpus)
  <output_dir>/dataset/                    the prepared TFDS dataset (array_record; train and
                                           validation split by builders.split_files)
  <output_dir>/report.json, report.txt     what was kept and removed, and why
Train on it with `make_pipeline.dataset = 'prepared:<output_dir>/dataset'`
(gin_configs/data/cleaned.gin).
"""
from __future__ import annotations

import collections
import dataclasses
import json
import multiprocessing
import os
import shutil
from typing import Iterable

import gin
import tensorflow_datasets as tfds

from research.data import builders
from research.data.cleaning import dedup
from research.data.cleaning import pii
from research.data.cleaning import rules as rules_lib

EMBEDDED = 'python_stdlib'
DATASET_SUBDIR = 'dataset'
MAX_EXAMPLES = 3  # paths kept per duplicate cluster in the report
TOP_CLUSTERS = 20
WINDOW = 16  # files in flight per worker process


class CleaningError(ValueError):
  """The corpus cannot be cleaned into a dataset (empty, say); nothing is left behind."""


@gin.configurable('cleaning')
@dataclasses.dataclass(frozen=True)
class CleaningConfig:
  """What runs. `rules` comes from `quality_rules` in gin, `near` from `near_dedup`."""
  rules: tuple = ()
  near: dedup.NearDedupConfig = dataclasses.field(default_factory=dedup.NearDedupConfig)
  exact_dedup: bool = True
  scrub_pii: bool = True
  validation_fraction: float = builders.VALIDATION_FRACTION

  def __post_init__(self):
    if not 0 <= self.validation_fraction < 1:
      raise rules_lib.RuleError(f'cleaning.validation_fraction must be in [0, 1), got '
                                f'{self.validation_fraction!r}')


def make_config() -> CleaningConfig:
  """The config as gin binds it (the rule set validated here, at start-up)."""
  return CleaningConfig(rules=rules_lib.make_rules(), near=dedup.NearDedupConfig())


def list_input(input_dir: str) -> tuple[str, list[str]]:
  """(root, sorted relative paths); `python_stdlib` names the embedded corpus."""
  if input_dir == EMBEDDED:
    return builders.stdlib_files()
  if not os.path.exists(input_dir) and not any(c in input_dir for c in '*?['):
    raise CleaningError(f'--input_dir {input_dir!r} does not exist')
  return builders.list_text_files(input_dir)


@dataclasses.dataclass
class _Result:
  """What a worker sends back for one file: no text unless the file is kept so far."""
  path: str
  nbytes: int
  removed_by: str | None
  failed: list
  text: str | None = None
  pii: dict | None = None
  exact: str | None = None
  signature: object = None


def _process(args) -> _Result:
  root, path, config = args
  data = open(os.path.join(root, path), 'rb').read()
  try:
    text = data.decode('utf-8')
  except UnicodeDecodeError:
    return _Result(path, len(data), 'not_utf8', ['not_utf8'])
  failed = rules_lib.failed_rules(config.rules, text)
  if failed:
    return _Result(path, len(data), failed[0], failed)
  counts = {}
  if config.scrub_pii:
    text, c = pii.scrub(text)
    counts = dict(c)
  signature = dedup.signature(text, config.near) if config.near.enabled else None
  return _Result(path, len(data), None, [], text, counts, dedup.exact_hash(text), signature)


def _results(root, paths, config, workers) -> Iterable[_Result]:
  jobs = ((root, p, config) for p in paths)
  if workers <= 1:
    yield from map(_process, jobs)
    return
  # 'fork' is cheap and inherits the bound gin config; results come back in input order.
  # Pool.imap alone would let the workers run ahead of the parent and queue every result
  # (texts included); windows of WINDOW files per worker bound what is in flight.
  jobs = list(jobs)
  window = WINDOW * workers
  with multiprocessing.get_context('fork').Pool(workers) as pool:
    for start in range(0, len(jobs), window):
      yield from pool.imap(_process, jobs[start:start + window], chunksize=4)


class CleanedCorpus(builders.ArrayRecordBuilder, skip_registration=True):
  """The kept documents as a TFDS dataset; read back with `tfds.builder_from_directory`
  (the `prepared:<dir>` dataset name of research.data.sources)."""
  VERSION = tfds.core.Version('1.0.0')
  name = 'cleaned_corpus'

  def __init__(self, documents_dir: str, splits: dict, **kwargs):
    self._documents_dir = documents_dir
    self._splits = splits
    super().__init__(**kwargs)

  def _info(self):
    # One feature only: a tf.train.Example's features are a protobuf map, whose serialized
    # order varies from process to process, so {'text', 'path'} gave different bytes on
    # reruns. The paths stay in documents/ and the report.
    return tfds.core.DatasetInfo(
        builder=self, description='A text corpus after research.data.cleaning.',
        features=tfds.features.FeaturesDict({'text': tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {name: self._generate(paths) for name, paths in self._splits.items()}

  def _generate(self, paths):
    for p in paths:  # one file at a time: memory flat in corpus size
      yield p, {'text': builders.read_utf8(os.path.join(self._documents_dir, p))}

  def _generate_examples(self):  # pragma: no cover - the splits use _generate
    raise NotImplementedError


def dataset_dir(output_dir: str) -> str:
  """The directory `prepared:` reads (TFDS puts a prepared dataset at name/version)."""
  return os.path.join(output_dir, DATASET_SUBDIR, CleanedCorpus.name,
                      str(CleanedCorpus.VERSION))


def _write_atomic(path: str, text: str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + '.tmp', 'w', encoding='utf-8') as f:
    f.write(text)
  os.replace(path + '.tmp', path)


def clean(input_dir: str, output_dir: str, config: CleaningConfig | None = None,
          workers: int = 1, log=print) -> dict:
  """Cleans the corpus at `input_dir` into `output_dir`; returns the report dict."""
  config = config or make_config()
  output_dir = os.path.abspath(output_dir)
  if os.path.exists(output_dir):
    raise CleaningError(f'--output_dir {output_dir!r} already exists; remove it or choose '
                        f'another')
  root, paths = list_input(input_dir)
  partial = output_dir + '.partial'
  if os.path.exists(partial):  # a killed run: start again from scratch
    log(f'removing the unfinished {partial} of an interrupted run')
    shutil.rmtree(partial)
  try:
    report = _clean_into(root, paths, partial, config, workers, input_dir)
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)
    raise
  os.rename(partial, output_dir)
  return report


def _clean_into(root, paths, partial, config, workers, input_dir) -> dict:
  documents_dir = os.path.join(partial, 'documents')
  os.makedirs(documents_dir)
  stats = collections.defaultdict(lambda: {'documents': 0, 'bytes': 0})
  failed = collections.Counter()
  pii_counts = collections.Counter()
  seen_exact: dict[str, str] = {}
  exact_clusters: dict[str, dict] = {}
  near_clusters: dict[str, dict] = {}
  index = dedup.NearDedupIndex(config.near) if config.near.enabled else None
  kept = []
  any_text = False
  total_docs = total_bytes = 0
  for r in _results(root, paths, config, workers):
    total_docs += 1
    total_bytes += r.nbytes
    failed.update(r.failed)
    reason = r.removed_by
    if reason is None and config.exact_dedup:
      first = seen_exact.get(r.exact)
      if first is not None:
        reason = 'exact_duplicate'
        _add_member(exact_clusters, first, r.path)
      else:
        seen_exact[r.exact] = r.path
    if reason is None and index is not None:
      first = index.add(r.path, r.signature)
      if first is not None:
        reason = 'near_duplicate'
        _add_member(near_clusters, first, r.path)
    if reason is not None:
      stats[reason]['documents'] += 1
      stats[reason]['bytes'] += r.nbytes
      continue
    pii_counts.update(r.pii or {})
    stats['kept']['documents'] += 1
    stats['kept']['bytes'] += len(r.text.encode('utf-8'))
    kept.append(r.path)
    any_text = any_text or bool(r.text.strip())
    path = os.path.join(documents_dir, r.path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
      f.write(r.text)
  if not any_text:
    raise CleaningError(f'empty corpus after cleaning: all {total_docs} documents of '
                        f'{input_dir!r} were removed ({_top_reasons(stats)})')
  train, validation = builders.split_files(kept, config.validation_fraction)
  builder = CleanedCorpus(documents_dir, {'train': train, 'validation': validation},
                          data_dir=os.path.join(partial, DATASET_SUBDIR))
  builder.download_and_prepare()
  report = _report(input_dir, config, index, total_docs, total_bytes, stats, failed,
                   pii_counts, exact_clusters, near_clusters, len(train), len(validation))
  _write_atomic(os.path.join(partial, 'report.txt'), format_report(report))
  _write_atomic(os.path.join(partial, 'report.json'),
                json.dumps(report, indent=1, sort_keys=True) + '\n')
  return report


def _add_member(clusters, first, path):
  c = clusters.setdefault(first, {'first': first, 'size': 1, 'examples': []})
  c['size'] += 1
  if len(c['examples']) < MAX_EXAMPLES:
    c['examples'].append(path)


def _top_reasons(stats) -> str:
  ranked = sorted(((v['documents'], k) for k, v in stats.items() if k != 'kept'), reverse=True)
  return ', '.join(f'{k}: {n}' for n, k in ranked[:3])


def _clusters(clusters: dict) -> dict:
  ranked = sorted(clusters.values(), key=lambda c: (-c['size'], c['first']))
  return {'count': len(ranked), 'documents_removed': sum(c['size'] - 1 for c in ranked),
          'largest': ranked[:TOP_CLUSTERS]}


def _report(input_dir, config, index, total_docs, total_bytes, stats, failed, pii_counts,
            exact_clusters, near_clusters, n_train, n_validation) -> dict:
  reasons = ['not_utf8'] + [r.name for r in config.rules] + ['exact_duplicate',
                                                            'near_duplicate']
  removed = {k: dict(stats[k]) for k in reasons if stats[k]['documents']}
  near = dataclasses.asdict(config.near)
  if index is not None:
    near['bands'], near['rows'] = index.bands_rows
  return {
      'input': input_dir,
      'input_documents': total_docs,
      'input_bytes': total_bytes,
      'kept': dict(stats['kept']),
      'removed_by': removed,
      'failed_rule': {r.name: failed[r.name] for r in config.rules},
      'rules': {r.name: {'min': r.min, 'max': r.max} for r in config.rules},
      'near_dedup': near,
      'exact_duplicate_clusters': _clusters(exact_clusters),
      'near_duplicate_clusters': _clusters(near_clusters),
      'pii': {t: pii_counts[t] for t in pii.TYPES if pii_counts[t]},
      'splits': {'train': n_train, 'validation': n_validation},
  }


def format_report(report: dict) -> str:
  """The readable summary (report.txt)."""

  def pct(n, total):
    return f'{100.0 * n / total:5.1f}%' if total else '    -'

  docs, nbytes = report['input_documents'], report['input_bytes']
  lines = [f'cleaning report: {report["input"]}',
           f'input      {docs:8d} documents {nbytes:12,d} bytes',
           f'kept       {report["kept"]["documents"]:8d} documents '
           f'{report["kept"]["bytes"]:12,d} bytes (after scrubbing) '
           f'{pct(report["kept"]["documents"], docs)} of documents',
           '', 'removed by (first reason)   documents        bytes']
  for reason, v in report['removed_by'].items():
    lines.append(f'  {reason:24s} {v["documents"]:9d} {v["bytes"]:12,d}  '
                 f'{pct(v["documents"], docs)}')
  lines += ['', 'documents failing each rule (a document may fail several)']
  for name, n in report['failed_rule'].items():
    bounds = report['rules'][name]
    lines.append(f'  {name:24s} {n:9d}  keep if {bounds["min"]:g} <= x <= {bounds["max"]:g}')
  near = report['near_dedup']
  for kind, title in (('exact_duplicate_clusters', 'exact duplicates'),
                      ('near_duplicate_clusters',
                       f'near duplicates (MinHash {near["num_perm"]} permutations, '
                       f'{near["shingle_size"]}-word shingles, {near["bands"]} bands x '
                       f'{near["rows"]} rows, Jaccard >= {near["threshold"]:g})')):
    c = report[kind]
    lines += ['', f'{title}: {c["count"]} clusters, {c["documents_removed"]} documents '
                  f'removed']
    for cl in c['largest'][:10]:
      more = ', ...' if cl['size'] - 1 > len(cl['examples']) else ''
      lines.append(f'  {cl["size"]:4d} x {cl["first"]}  (also {", ".join(cl["examples"])}'
                   f'{more})')
  lines += ['', 'PII replaced (by type): ' + (', '.join(
      f'{k} {v}' for k, v in report['pii'].items()) or 'none')]
  lines.append(f'splits: train {report["splits"]["train"]}, validation '
               f'{report["splits"]["validation"]}')
  return '\n'.join(lines) + '\n'
