"""The input pipeline: documents -> tokens -> objective -> feature converter -> packed batches.

Deterministic given the seed, sharded by host, prefetched on a background thread, and
resumable: `get_state()` is a small JSON dict (cursor + the packer's unfinished rows) taken at
each batch boundary, and after `set_state(s)` the next batch is exactly the one an
uninterrupted run would have produced next. The trainer checkpoints that dict.

How a stream is cut: every document is tokenized and ended with eos; the objective chosen for
the next example (UL2 picks per example) takes the next `chunk` raw tokens, where `chunk` is
the most that always fits the feature converter's lengths (objectives.max_tokens_that_fit,
T5's random_spans_helper generalised). Chunks never cross documents, so a packed segment is
always text from one document. Example j of shard s is made with seed [seed, s, j].
"""
from __future__ import annotations

import dataclasses
import queue
import threading
from typing import Iterator, Mapping

import gin
import numpy as np

from research import objectives as objectives_lib
from research.data import converters as converters_lib
from research.data import packing
from research.data import sources
from research.data import tokenizers as tokenizers_lib

_STATE_VERSION = 1
_END = object()

# gin names for what a researcher picks in a config: @SpanCorruption(), @ByteTokenizer(), ...
for _cls in (objectives_lib.CausalLM, objectives_lib.PrefixLM, objectives_lib.SpanCorruption,
             objectives_lib.MaskedLM, objectives_lib.UL2, objectives_lib.GLM):
  gin.external_configurable(_cls, module='objectives')
gin.external_configurable(tokenizers_lib.ByteTokenizer, module='tokenizers')
gin.external_configurable(tokenizers_lib.SentencePieceTokenizer, module='tokenizers')


class Pipeline:
  """Iterator of batches (dicts of int32 numpy arrays [batch, length])."""

  def __init__(self, source, tokenizer, objective, converter,
               task_feature_lengths: Mapping[str, int], batch_size: int, seed: int = 0,
               shard_index: int = 0, shuffle: bool = True, pack: bool = True,
               prefetch: int = 2, max_open_rows: int = 8, num_epochs: int | None = None,
               shuffle_rows: int = 0):
    if batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    self.source, self.tokenizer, self.objective, self.converter = (
        source, tokenizer, objective, converter)
    self.task_feature_lengths = dict(task_feature_lengths)
    self.batch_size, self.seed, self.shard_index = batch_size, int(seed), shard_index
    self.shuffle, self.pack, self.prefetch = shuffle, pack, prefetch
    self.max_open_rows, self.num_epochs = max_open_rows, num_epochs
    if shuffle_rows < 0:
      raise ValueError(f'shuffle_rows must be >= 0, got {shuffle_rows}')
    self.shuffle_rows = shuffle_rows if shuffle else 0
    self.group_lengths = converter.group_lengths(self.task_feature_lengths)
    # The tokenizer's sentinel supply bounds a chunk like a length does: an example never
    # runs out of sentinels mid-training (e.g. UL2's r=0.5, mu=3 at 512 needs 128 > 121).
    fit = dataclasses.replace(converter.fit(self.task_feature_lengths),
                              sentinels=tokenizer.num_sentinels)
    objectives_lib.check_fits(
        objective, fit, f'{converter.name} with lengths {self.task_feature_lengths}')
    self.chunk_lengths = {o: objectives_lib.max_tokens_that_fit(o, fit)
                          for o in objective.components()}
    self._fingerprint = {'seed': self.seed, 'batch_size': batch_size, 'shard': shard_index,
                         'objective': objective.name, 'converter': converter.name,
                         'lengths': sorted(self.task_feature_lengths.items())}
    if self.shuffle_rows:
      self._fingerprint['shuffle_rows'] = self.shuffle_rows
    self._thread = None
    self._load({'cursor': {'epoch': 0, 'doc': 0, 'offset': 0, 'example': 0},
                'packer': {'open': [], 'ready': []}})

  # ---- producer side (runs on the prefetch thread) ----

  def _load(self, state):
    self._cursor = dict(state['cursor'])
    self._packer = packing.Packer(self.converter, self.group_lengths,
                                  max_open_rows=self.max_open_rows, pack=self.pack)
    self._packer.set_state(state['packer'])
    self._docs = None
    self._doc_tokens = None
    self._exhausted = False
    self._consumed_state = self._snapshot()

  def _snapshot(self):
    # Cheap: references to immutable example arrays; lists are made only in get_state().
    return {'cursor': dict(self._cursor), 'packer': self._packer.get_state()}

  def _next_document(self) -> bool:
    c = self._cursor
    while True:
      if self._docs is None:
        self._docs = self.source.iterate(c['epoch'], c['doc'], self.seed, self.shuffle)
      try:
        text = next(self._docs)
      except StopIteration:
        self._docs = None
        if self.num_epochs is not None and c['epoch'] + 1 >= self.num_epochs:
          return False
        if c['doc'] == 0:
          raise ValueError('empty corpus: the source yielded no documents') from None
        c['epoch'], c['doc'], c['offset'] = c['epoch'] + 1, 0, 0
        continue
      tokens = np.append(self.tokenizer.encode_array(text), self.tokenizer.eos_id)
      self._doc_tokens = tokens.astype(np.int32)
      return True

  def _produce(self):
    c = self._cursor
    # With shuffle_rows, finished rows pool up to that many and each batch draws its rows at
    # random from the pool (seeded by the example count, so resumes draw the same): a
    # document's consecutive chunks then spread over many batches instead of filling a few.
    target = max(self.batch_size, self.shuffle_rows)
    while len(self._packer.ready) < target and not self._exhausted:
      if self._doc_tokens is None and not self._next_document():
        self._exhausted = True
        self._packer.flush()
        break
      objective = self.objective.select(c['example'], self.seed)
      n = self.chunk_lengths[objective]
      chunk = self._doc_tokens[c['offset']:c['offset'] + n]
      example = objective.apply(chunk, self.tokenizer,
                                seed=[self.seed, self.shard_index, c['example']])
      self._packer.add(example)
      c['offset'] += n
      c['example'] += 1
      if c['offset'] >= len(self._doc_tokens):
        c['doc'] += 1
        c['offset'] = 0
        self._doc_tokens = None
    if self.shuffle_rows:
      rng = np.random.default_rng([self.seed, 0x5AFF1E, self.shard_index, c['example']])
      rows = self._packer.take_random(self.batch_size, rng)
    else:
      rows = self._packer.take(self.batch_size)
    if not rows:
      raise StopIteration
    rows += [[]] * (self.batch_size - len(rows))  # only the last batch of a finite stream
    batch = packing.rows_to_batch(rows, self.converter, self.group_lengths)
    return batch, self._snapshot()

  def _work(self, q: queue.Queue, stop: threading.Event):
    try:
      while not stop.is_set():
        item = self._produce()
        while not stop.is_set():
          try:
            q.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
    except StopIteration:
      q.put(_END)
    except BaseException as e:  # pylint: disable=broad-except
      q.put(e)  # re-raised on the consumer side, with the original traceback

  def _stop(self):
    if self._thread is not None:
      self._stop_event.set()
      while self._thread.is_alive():
        try:
          self._queue.get(timeout=0.05)
        except queue.Empty:
          pass
      self._thread = None

  # ---- consumer side ----

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self.prefetch <= 0:
      batch, self._consumed_state = self._produce()
      return batch
    if self._thread is None:
      self._queue = queue.Queue(maxsize=self.prefetch)
      self._stop_event = threading.Event()
      self._thread = threading.Thread(target=self._work, args=(self._queue, self._stop_event),
                                      daemon=True, name='input-pipeline')
      self._thread.start()
    item = self._queue.get()
    if item is _END:
      self._queue.put(_END)
      raise StopIteration
    if isinstance(item, BaseException):
      raise item
    batch, self._consumed_state = item
    return batch

  @property
  def may_have_prefix(self) -> bool:
    """Whether a batch's `decoder_causal_attention` can be nonzero: only with a prefix-LM
    converter (the trainer drops the feature in every batch otherwise). A converter
    without a `prefix` flag is assumed to have one."""
    return bool(getattr(self.converter, 'prefix', True))

  def get_state(self) -> dict:
    """JSON-serializable position after the last batch returned by __next__."""
    s = self._consumed_state
    to_lists = lambda rows: [[{k: np.asarray(v).tolist() for k, v in ex.items()} for ex in r]
                             for r in rows]
    return {'version': _STATE_VERSION, 'fingerprint': self._fingerprint,
            'cursor': dict(s['cursor']),
            'packer': {'open': to_lists(s['packer']['open']),
                       'ready': to_lists(s['packer']['ready'])}}

  def set_state(self, state: dict) -> None:
    if state.get('version') != _STATE_VERSION:
      raise ValueError(f'pipeline state version {state.get("version")} != {_STATE_VERSION}')
    fingerprint = {k: (sorted(map(tuple, v)) if k == 'lengths' else v)
                   for k, v in state['fingerprint'].items()}
    mine = {k: (sorted(map(tuple, v)) if k == 'lengths' else v)
            for k, v in self._fingerprint.items()}
    if fingerprint != mine:
      raise ValueError(f'pipeline state was saved by a different configuration: {fingerprint}'
                       f' != {mine}')
    self._stop()
    self._load(state)

  def close(self):
    self._stop()


def _resolve_tokenizer(tokenizer):
  if tokenizer is None:
    return tokenizers_lib.ByteTokenizer()
  if isinstance(tokenizer, str):
    return tokenizers_lib.get_tokenizer(tokenizer)
  return tokenizer


def _resolve_objective(objective):
  return objectives_lib.get_objective(objective) if isinstance(objective, str) else objective


def _resolve_converter(family, feature_converter):
  if feature_converter is None:
    if family not in converters_lib.FAMILY_DEFAULT:
      raise ValueError(f'unknown model family {family!r}; known: '
                       f'{sorted(converters_lib.FAMILY_DEFAULT)}')
    feature_converter = converters_lib.FAMILY_DEFAULT[family]
  if isinstance(feature_converter, str):
    return converters_lib.get_converter(feature_converter)
  return feature_converter


@gin.configurable
def make_pipeline(dataset: str = 'python_stdlib', split: str = 'train', *,
                  task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
                  batch_size: int = gin.REQUIRED, objective='causal_lm', tokenizer=None,
                  family: str = 'decoder', feature_converter=None, seed: int = 0,
                  shard_index: int = 0, shard_count: int = 1, data_dir: str | None = None,
                  feature_key: str = 'text', pack: bool = True, shuffle: bool = True,
                  prefetch: int = 2, max_open_rows: int = 8,
                  num_epochs: int | None = None, shuffle_rows: int = 0) -> Pipeline:
  """The training input pipeline for one host.

  Args:
    dataset: 'python_stdlib' (default corpus), 'text_files:<dir or glob>', or a prepared TFDS
      name (see research.data.sources).
    task_feature_lengths: TASK_FEATURE_LENGTHS, e.g. {'inputs': 512, 'targets': 114}.
    objective: a name in research.objectives.OBJECTIVES or an Objective (gin: @UL2()).
    tokenizer: None (bytes), 'byte', or a Tokenizer (gin: @SentencePieceTokenizer()).
    family / feature_converter: the model family ('decoder', 'encoder_decoder', 'encoder')
      picks the default converter; feature_converter ('prefix_decoder', ...) overrides it.
    shard_index / shard_count: this host's share (jax.process_index(), jax.process_count()).
    shuffle_rows: if > 0, batches draw their rows at random from a pool of this many packed
      rows. Documents are shuffled, but a document's chunks come out in order, so without
      it a batch of a few rows holds one file (a Python file is ~16 batches of 8 x 128
      bytes) and a run's last steps fit its last few files.
  """
  source = sources.get_source(dataset, split, data_dir=data_dir, feature_key=feature_key,
                              shard_index=shard_index, shard_count=shard_count)
  return Pipeline(source, _resolve_tokenizer(tokenizer), _resolve_objective(objective),
                  _resolve_converter(family, feature_converter), task_feature_lengths,
                  batch_size, seed=seed, shard_index=shard_index, shuffle=shuffle, pack=pack,
                  prefetch=prefetch, max_open_rows=max_open_rows, num_epochs=num_epochs,
                  shuffle_rows=shuffle_rows)


@gin.configurable
def make_eval_batches(dataset: str = 'python_stdlib', split: str = 'validation', *,
                      task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
                      batch_size: int = gin.REQUIRED, num_batches: int | None = None,
                      objective='causal_lm', tokenizer=None, family: str = 'decoder',
                      feature_converter=None, seed: int = 0, shard_index: int = 0,
                      shard_count: int = 1, data_dir: str | None = None,
                      feature_key: str = 'text', pack: bool = True) -> list[dict]:
  """A fixed validation set: one unshuffled pass (or its first num_batches batches); the same
  list on every call. The last batch is padded with empty rows (segment ids 0)."""
  pipeline = make_pipeline(
      dataset, split, task_feature_lengths=task_feature_lengths, batch_size=batch_size,
      objective=objective, tokenizer=tokenizer, family=family,
      feature_converter=feature_converter, seed=seed, shard_index=shard_index,
      shard_count=shard_count, data_dir=data_dir, feature_key=feature_key, pack=pack,
      shuffle=False, prefetch=0, num_epochs=1, shuffle_rows=0)
  batches = []
  for batch in pipeline:
    batches.append(batch)
    if num_batches is not None and len(batches) >= num_batches:
      break
  return batches
