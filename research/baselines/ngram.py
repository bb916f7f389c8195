r"""A byte-level n-gram language model with interpolated modified Kneser-Ney smoothing: the
statistical floor the neural scaling curves are read against.

  python -m research.baselines.ngram --max_order=6 [--out=ngram.json]

trains one model per order n = --min_order (1) .. --max_order on the train split of
--dataset and prints, for each, the held-out loss in nats and bits per byte and the seconds
it took to train;
--out writes the same as JSON (temp file + rename), which `research-fit --baseline_json`
draws as horizontal lines on the scaling figures.

The smoothing is Chen & Goodman (1998), "An Empirical Study of Smoothing Techniques for
Language Modeling", TR-10-98, sec. 3 (modified Kneser-Ney and its estimated discounts):

  p(w | h) = [max(c(hw) - D(c(hw)), 0) + gamma(h) * p(w | h')] / sum_v c(hv)
  gamma(h) = D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)
  Y = n1 / (n1 + 2 n2),  D1 = 1 - 2Y n2/n1,  D2 = 2 - 3Y n3/n2,  D3+ = 3 - 4Y n4/n3

with h' the context h less its first symbol, N_r(h.) the number of symbols w whose count
after h is r (3+: at least 3), and n_r the number of n-grams of that order with count r.
The highest order counts occurrences; every lower order counts continuations,
c(hw) = N1+(. hw), the number of distinct symbols seen before hw (Kneser & Ney 1995). An
unseen context (sum_v c(hv) = 0) passes p(w | h') through unchanged; below the unigrams
lies the uniform distribution over the vocabulary, so every symbol has mass.

Conventions (they differ from KenLM's, which models sentences with one <s> and </s>):

- the vocabulary is the 256 byte values plus an end-of-document symbol (EOS_ID = 256), 257
  symbols: the byte tokenizer's ids (byte + 3) and its eos, less the pad and unk ids that
  never occur in text. A document is its UTF-8 bytes followed by EOS; EOS is predicted like
  any byte (as the neural runs predict the pipeline's eos), so "per byte" means per token of
  the byte tokenizer, eos included (38 of the 458,835 held-out tokens of python_stdlib);
- every document is preceded by max_order - 1 begin-of-document symbols (BOS_ID = 257), a
  context that is never predicted. Every k-gram with k < max_order then has a symbol before
  it, so continuation counts need no special case for the start (KenLM instead keeps raw
  counts for n-grams that begin with <s>);
- held-out text is scored as the neural runs score it (--eval_chunk, research/data/pipeline.py):
  each document plus EOS is cut into chunks of 128 tokens and each chunk starts from the
  begin-of-document context, because a chunk's first token is all the Transformer sees at
  its start. --eval_chunk=0 scores whole documents.

A k-gram is one int64, its symbols as digits in base 258 (258^6 < 2^63: orders up to 7),
so counting is np.unique over the corpus once per order and lookup is np.searchsorted; the
full 31 MB corpus trains n = 6 in about half a minute on one core.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Iterable, Sequence

from absl import flags
from absl import logging
import numpy as np

from research import cli
from research import runs

PROG = 'research.baselines.ngram'

EOS_ID = 256          # end of document: predicted
BYTE_VOCAB = 257      # the symbols a byte model predicts: bytes and EOS
MAX_ORDER = 7         # (vocab + 1) ** order must fit an int64 for vocabularies up to 257


@dataclasses.dataclass
class _Order:
  """The tables of one order k: the k-grams seen (sorted codes) with their counts (raw at
  the highest order, continuation below), and per context: the count total and gamma's
  numerator D1 N1 + D2 N2 + D3+ N3+."""
  keys: np.ndarray
  counts: np.ndarray
  ctx_keys: np.ndarray
  ctx_total: np.ndarray
  ctx_gamma: np.ndarray
  discounts: tuple[float, float, float]
  count_of_counts: tuple[int, int, int, int]


def discounts(n1: int, n2: int, n3: int, n4: int) -> tuple[float, float, float]:
  """(D1, D2, D3+) from the count-of-counts n1..n4 (Chen & Goodman 1998, sec. 3).

  Where a ratio is undefined (n_r = 0, so no count equals r and D_r applies only to counts
  above it, if any), the ratio is taken as 0; each D_r is clipped to [0, r] (KenLM's lmplz
  stops on a discount out of range unless given --discount_fallback). Any D_r in [0, r]
  keeps every distribution normalized."""
  y = n1 / (n1 + 2 * n2) if n1 + 2 * n2 > 0 else 0.0
  ratio = lambda a, b: a / b if b > 0 else 0.0
  d = (1 - 2 * y * ratio(n2, n1), 2 - 3 * y * ratio(n3, n2), 3 - 4 * y * ratio(n4, n3))
  return tuple(float(min(max(x, 0.0), r)) for r, x in zip((1, 2, 3), d))


def _unique_counts(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  codes = np.sort(codes)
  if len(codes) == 0:
    return codes, np.zeros([0], np.int64)
  starts = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
  counts = np.diff(np.append(starts, len(codes)))
  return codes[starts], counts.astype(np.int64)


class KneserNeyLM:
  """Interpolated modified Kneser-Ney over symbols 0..vocab_size-1 (plus a context-only
  begin symbol, id vocab_size). Build with `fit`; score with `log_probs`."""

  def __init__(self, order: int, vocab_size: int, tables: list[_Order]):
    self.order, self.vocab_size, self.tables = order, vocab_size, tables
    self.bos_id = vocab_size
    self.base = vocab_size + 1

  @classmethod
  def fit(cls, documents: Iterable[np.ndarray], order: int,
          vocab_size: int = BYTE_VOCAB) -> 'KneserNeyLM':
    """Counts the documents (int arrays of symbols in [0, vocab_size); append an end
    symbol yourself if it should be predicted). Raises ValueError for an order out of
    range or no symbol to count."""
    order, vocab_size = int(order), int(vocab_size)
    if not 1 <= order <= MAX_ORDER:
      raise ValueError(f'max_order must be in [1, {MAX_ORDER}], got {order}')
    if vocab_size < 1 or (vocab_size + 1) ** order >= 2 ** 63:
      raise ValueError(f'vocab_size {vocab_size} too large for order {order}')
    bos = vocab_size
    pieces, n = [], 0
    for doc in documents:
      doc = np.asarray(doc, np.int64)
      if len(doc) == 0:
        continue
      if doc.min() < 0 or doc.max() >= vocab_size:
        raise ValueError(f'symbol out of [0, {vocab_size}): {int(doc.min())}..{int(doc.max())}')
      pieces.append(np.full([order - 1], bos, np.int64))
      pieces.append(doc)
      n += len(doc)
    if n == 0:
      raise ValueError('empty train split: no symbol to count')
    stream = np.concatenate(pieces)
    targets = np.flatnonzero(stream != bos)
    base = vocab_size + 1
    # types[k]: the distinct k-grams ending at a target, with their occurrence counts; the
    # top order keeps the counts, the orders below are counted from the types above them.
    code = stream[targets]
    types = {}
    for k in range(1, order + 1):
      if k > 1:
        code = code + stream[targets - (k - 1)] * base ** (k - 1)
        types[k] = _unique_counts(code)
    if order == 1:
      types[1] = _unique_counts(code)
    del code, targets, stream
    tables = []
    for k in range(1, order + 1):
      if k == order:
        keys, counts = types[k]
      else:
        # N1+(. w): how many distinct (k+1)-grams end in the k-gram w.
        keys, counts = _unique_counts(types[k + 1][0] % base ** k)
      tables.append(cls._table(keys, counts, base))
    return cls(order, vocab_size, tables)

  @staticmethod
  def _table(keys: np.ndarray, counts: np.ndarray, base: int) -> _Order:
    coc = tuple(int(np.sum(counts == r)) for r in (1, 2, 3, 4))
    d = discounts(*coc)
    # keys are sorted, so their contexts (key // base) are sorted too: groups are runs.
    ctx = keys // base
    starts = np.flatnonzero(np.concatenate([[True], ctx[1:] != ctx[:-1]]))
    per_symbol = np.choose(np.minimum(counts, 3), [0.0, d[0], d[1], d[2]])
    return _Order(keys=keys, counts=counts, ctx_keys=ctx[starts],
                  ctx_total=np.add.reduceat(counts, starts).astype(np.float64),
                  ctx_gamma=np.add.reduceat(per_symbol, starts), discounts=d,
                  count_of_counts=coc)

  def log_probs(self, contexts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Natural log p(target | context) for each row. contexts: [m, order - 1] ints, the
    symbols before each target, oldest first (bos_id where the document has not begun;
    a longer context is cut to its last order - 1 symbols)."""
    targets = np.asarray(targets, np.int64).reshape(-1)
    contexts = np.asarray(contexts, np.int64).reshape(len(targets), -1)
    if contexts.shape[1] < self.order - 1:
      raise ValueError(f'contexts need {self.order - 1} symbols, got {contexts.shape[1]}')
    contexts = contexts[:, contexts.shape[1] - (self.order - 1):]
    if len(targets) and (targets.min() < 0 or targets.max() >= self.vocab_size):
      raise ValueError(f'targets must be in [0, {self.vocab_size})')
    if contexts.size and (contexts.min() < 0 or contexts.max() > self.bos_id):
      raise ValueError(f'contexts must be in [0, {self.bos_id}] (bos_id {self.bos_id})')
    p = np.full(len(targets), 1.0 / self.vocab_size)
    ctx_code = np.zeros(len(targets), np.int64)
    for k, t in enumerate(self.tables, start=1):
      if k > 1:  # the context grows by the symbol before it: h = (c_{-k+1}, ..., c_{-1})
        ctx_code = ctx_code + contexts[:, -(k - 1)] * self.base ** (k - 2)
      key = ctx_code * self.base + targets
      i = np.minimum(np.searchsorted(t.keys, key), len(t.keys) - 1)
      c = np.where(t.keys[i] == key, t.counts[i], 0)
      j = np.minimum(np.searchsorted(t.ctx_keys, ctx_code), len(t.ctx_keys) - 1)
      seen = t.ctx_keys[j] == ctx_code
      d = np.choose(np.minimum(c, 3), [0.0, *t.discounts])
      total = np.where(seen, t.ctx_total[j], 1.0)
      mixed = (np.maximum(c - d, 0.0) + t.ctx_gamma[j] * p) / total
      p = np.where(seen, mixed, p)
    return np.log(p)

  def distribution(self, context: Sequence[int]) -> np.ndarray:
    """p(. | context) over the whole vocabulary (context as in `log_probs`, one row;
    a shorter one is padded on the left with bos_id)."""
    context = list(context)[-(self.order - 1):] if self.order > 1 else []
    context = [self.bos_id] * (self.order - 1 - len(context)) + context
    rows = np.tile(np.asarray(context, np.int64).reshape(1, -1), (self.vocab_size, 1))
    return np.exp(self.log_probs(rows, np.arange(self.vocab_size)))

  def _windows(self, sequence: np.ndarray) -> np.ndarray:
    """[len, order - 1] contexts of each symbol of a sequence begun from the begin context."""
    padded = np.concatenate([np.full([self.order - 1], self.bos_id, np.int64), sequence])
    if self.order == 1:
      return np.zeros([len(sequence), 0], np.int64)
    return np.lib.stride_tricks.sliding_window_view(padded[:-1], self.order - 1)

  def sequence_log_probs(self, sequence: np.ndarray) -> np.ndarray:
    """log p of each symbol of a sequence that starts from the begin-of-document context."""
    seq = np.asarray(sequence, np.int64)
    return self.log_probs(self._windows(seq), seq)

  def evaluate(self, documents: Iterable[np.ndarray], chunk: int = 0) -> tuple[float, int]:
    """(summed negative log-likelihood in nats, symbols scored) over the documents; with
    chunk > 0 each document is cut into pieces of `chunk` symbols, each scored from the
    begin context (the neural evaluation's packed segments)."""
    contexts, targets = [], []
    for doc in documents:
      doc = np.asarray(doc, np.int64)
      step = chunk if chunk > 0 else max(len(doc), 1)
      for s in range(0, len(doc), step):
        contexts.append(self._windows(doc[s:s + step]))
        targets.append(doc[s:s + step])
    if not targets:
      return 0.0, 0
    targets = np.concatenate(targets)
    nll = -float(np.sum(self.log_probs(np.concatenate(contexts), targets)))
    return nll, len(targets)


def byte_documents(texts: Iterable[str]) -> list[np.ndarray]:
  """Each text as its UTF-8 bytes followed by EOS_ID: the byte tokenizer's stream, ids
  shifted down by its 3 special ids (research/data/tokenizers.py, ByteTokenizer)."""
  return [np.append(np.frombuffer(t.encode('utf-8'), np.uint8).astype(np.int64), EOS_ID)
          for t in texts]


def load_split(dataset: str, split: str, data_dir: str | None = None) -> list[np.ndarray]:
  """The documents of one split of a research.data dataset, as byte documents."""
  from research.data import sources  # pylint: disable=g-import-not-at-top
  source = sources.get_source(dataset, split, data_dir=data_dir)
  return byte_documents(source.iterate(0, 0, 0, False))


@dataclasses.dataclass(frozen=True)
class Result:
  order: int
  nats_per_byte: float
  bits_per_byte: float
  train_seconds: float
  bytes_scored: int
  discounts: tuple

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def measure(train: list[np.ndarray], heldout: list[np.ndarray], max_order: int,
            eval_chunk: int = 128, log=print, min_order: int = 1) -> list[Result]:
  """Trains orders min_order..max_order, each from scratch and timed alone, and scores
  heldout."""
  results = []
  for n in range(min_order, max_order + 1):
    start = time.perf_counter()
    model = KneserNeyLM.fit(train, n)
    seconds = time.perf_counter() - start
    nll, count = model.evaluate(heldout, eval_chunk)
    r = Result(order=n, nats_per_byte=nll / count, bits_per_byte=nll / count / math.log(2),
               train_seconds=seconds, bytes_scored=count,
               discounts=[list(t.discounts) for t in model.tables])
    log(f'{n:>2d}  {r.nats_per_byte:10.4f}  {r.bits_per_byte:10.4f}  {seconds:10.1f}')
    results.append(r)
  return results


FLAGS = flags.FLAGS
flags.DEFINE_integer('max_order', 6, f'Orders 1..max_order are trained (at most {MAX_ORDER}).')
flags.DEFINE_integer('min_order', 1, 'The lowest order trained.')
flags.DEFINE_string('dataset', 'python_stdlib', 'A research.data dataset name.')
flags.DEFINE_string('data_dir', None, 'TFDS data dir (default: $TFDS_DATA_DIR or '
                    '~/tensorflow_datasets).')
flags.DEFINE_string('train_split', 'train', 'Split the counts are taken from.')
flags.DEFINE_string('eval_split', 'validation', 'Held-out split (the one the sweeps score).')
flags.DEFINE_integer('eval_chunk', 128, 'Score held-out documents in chunks of this many '
                     'tokens, each from the begin context, as the neural evaluation packs '
                     'them (TASK_FEATURE_LENGTHS targets); 0: whole documents.')
flags.DEFINE_string('out', None, 'JSON file for the table (written atomically).')


def main(argv: Sequence[str], prog: str = PROG) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)  # tfds reports every dataset it opens at INFO
  if not 1 <= FLAGS.max_order <= MAX_ORDER:
    cli.usage_error(prog, f'--max_order must be in [1, {MAX_ORDER}], got {FLAGS.max_order}')
  if not 1 <= FLAGS.min_order <= FLAGS.max_order:
    cli.usage_error(prog, f'--min_order must be in [1, --max_order={FLAGS.max_order}], got '
                    f'{FLAGS.min_order}')
  if FLAGS.eval_chunk < 0:
    cli.usage_error(prog, f'--eval_chunk must be >= 0, got {FLAGS.eval_chunk}')
  try:
    train = load_split(FLAGS.dataset, FLAGS.train_split, FLAGS.data_dir)
    heldout = load_split(FLAGS.dataset, FLAGS.eval_split, FLAGS.data_dir)
  except (ValueError, OSError) as e:
    cli.fail(prog, e)
  if sum(len(d) - 1 for d in train) == 0:
    cli.fail(prog, f'empty train split: {FLAGS.train_split!r} of {FLAGS.dataset!r} has no bytes')
  print(f'{FLAGS.dataset}: train {sum(map(len, train)):,} tokens in {len(train)} documents, '
        f'held-out {sum(map(len, heldout)):,} in {len(heldout)} (bytes + one end-of-document '
        f'each), eval_chunk={FLAGS.eval_chunk}')
  print(' n   nats/byte   bits/byte  train s')
  sys.stdout.flush()
  results = measure(train, heldout, FLAGS.max_order, FLAGS.eval_chunk,
                    log=lambda line: print(line, flush=True), min_order=FLAGS.min_order)
  if FLAGS.out:
    runs.write_json_atomic(FLAGS.out, {
        'model': 'interpolated modified Kneser-Ney, bytes + end-of-document',
        'dataset': FLAGS.dataset, 'train_split': FLAGS.train_split,
        'eval_split': FLAGS.eval_split, 'eval_chunk': FLAGS.eval_chunk,
        'unit': 'nats per token of the byte tokenizer (one per byte, one per document end)',
        'orders': [r.to_json() for r in results]}, sort_keys=False)
    print(f'wrote {FLAGS.out}')


def run(prog: str = '') -> None:
  prog = prog or cli.prog_name(PROG)
  cli.run(lambda argv: main(argv, prog), prog)


if __name__ == '__main__':
  run(PROG)
