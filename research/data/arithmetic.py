"""k-shot integer arithmetic in a 16-token character vocabulary (the emergence probe's tasks).

Every number is written least-significant digit first (the "reverse" format of Lee et al.
2023, "Teaching Arithmetic to Small Transformers"), addition operands zero-padded to a fixed
width of 8 digits whatever L, and the answer follows the second operand directly:

    2-digit problem 12 + 54 = 66:   '21000000+45000000' + '66;'
    prompt  '30000000+14000000' '44;' '21000000+50000000' '71;' '02000000+73000000'
    target  '75;'                  (answer digits, then the terminator ';'; k = 2 shots)

Why this format (measured on the probe's 1e5-parameter model, 800 steps, L uniform 1..8):
  * operands padded to L digits and answers most-significant first: answer-token accuracy
    at chance for L >= 4, because where the answer's i-th digit must look depends on L;
  * fixed-width, reversed operands and answer, with '=' before the answer: every answer digit
    learned (per-position accuracy 1.00) except the first, which stayed at chance (0.10) even
    after 1600 steps: the digits are found by their index within a number, and the first
    answer digit is predicted from '=', a separator with no index;
  * the same without '=': exact match 0.93-1.00 at every L.
The answer stays exactly L digits, so chance exact match is exactly 10^-L.

Tasks:
  add L    L-digit addition (a + b < 10^L: the sum c is drawn uniformly, then a uniform in
           [0, c]), answer zero-padded to exactly L digits, L = 1..8.
  mul      2-digit x 2-digit multiplication (operands 10..99, written '*'-separated and
           reversed like the rest), answer padded to 4 digits.
  mc       4-option multiple choice over the `add L` items: the gold answer plus three
           distinct one-digit corruptions of it, scored by summed log-probability.
`value(digits)` reads a written number back. ('=' stays in the vocabulary, unused, so
checkpoints of the 16-token models keep their shape.)

Everything is a pure function of (seed, task, L, index): the held-out eval set is the same for
every model (paired comparisons) and a prefix of a larger one; the training stream uses a
different seed namespace. For L <= 2 there are only 10^(2L) problems, so train and eval
necessarily overlap there; that is the nature of the task, not a leak.

Training stream: k-shot examples with L uniform over 1..8 and a `mul_fraction` of
multiplication; `short_operand_fraction` (default 0) replaces that fraction of the addition
examples by problems with one short operand (`short_operand_problem`).

Also here: the trainer's `batch_source` for the stream (`arithmetic_source`, gin) and the TFDS
builder (`builder(...)`), whose class is defined lazily so importing this module stays light.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import gin
import numpy as np

from research.data import indexed

VOCAB = ('<pad>', '<eos>') + tuple('0123456789+*=;')
PAD_ID, EOS_ID = 0, 1
VOCAB_SIZE = len(VOCAB)  # 16
_CHAR_TO_ID = {c: i for i, c in enumerate(VOCAB) if len(c) == 1}
TERMINATOR = ';'
TERMINATOR_ID = _CHAR_TO_ID[TERMINATOR]
DIGIT_IDS = np.array([_CHAR_TO_ID[str(d)] for d in range(10)], np.int32)
LENGTHS = tuple(range(1, 9))
MUL_LENGTH = 4
WIDTH = max(LENGTHS)  # addition operands are written with this many digits
EVAL_SEED = 20230428   # the eval set's namespace (Schaeffer et al.'s arXiv date)
TRAIN_SEED_NAMESPACE = 7  # mixed into every training draw: never the eval namespace
_TASK_CODES = {'add': 1, 'mul': 2}


def encode(text: str) -> list[int]:
  return [_CHAR_TO_ID[c] for c in text]


def decode(ids: Sequence[int]) -> str:
  return ''.join(VOCAB[int(i)] for i in ids if int(i) >= 2)


@dataclasses.dataclass(frozen=True)
class Problem:
  task: str    # 'add' | 'mul'
  length: int  # answer digits L
  question: str  # operands, e.g. '21000000+45000000'
  answer: str    # exactly `length` digits, least significant first


def digits(n: int, width: int) -> str:
  """`n` zero-padded to `width` digits, least-significant digit first."""
  return f'{n:0{width}d}'[::-1]


def value(written: str) -> int:
  """The integer a `digits(...)` string denotes."""
  return int(written[::-1])


def make_problem(rng: np.random.Generator, task: str, length: int) -> Problem:
  if task == 'add':
    if length not in LENGTHS:
      raise ValueError(f'addition length must be in 1..8, got {length}')
    c = int(rng.integers(0, 10**length))
    a = int(rng.integers(0, c + 1))
    b = c - a
    return Problem('add', length, f'{digits(a, WIDTH)}+{digits(b, WIDTH)}', digits(c, length))
  if task == 'mul':
    a, b = (int(x) for x in rng.integers(10, 100, size=2))
    return Problem('mul', MUL_LENGTH, f'{digits(a, 2)}*{digits(b, 2)}',
                   digits(a * b, MUL_LENGTH))
  raise ValueError(f'unknown task {task!r}; known: add, mul')


def corruptions(rng: np.random.Generator, answer: str, count: int = 3) -> list[str]:
  """`count` distinct strings that differ from `answer` in exactly one digit."""
  candidates = [answer[:i] + d + answer[i + 1:] for i in range(len(answer))
                for d in '0123456789' if d != answer[i]]
  picked = rng.choice(len(candidates), size=count, replace=False)
  return [candidates[j] for j in sorted(picked)]


@dataclasses.dataclass(frozen=True)
class Item:
  """One eval item: a k-shot prompt, its target (answer + terminator) and its MC options."""
  item_id: str
  task: str
  length: int
  prompt: str
  target: str
  options: tuple[str, ...]  # 4 options (the answer among them); empty for 'mul'
  gold: int                 # index of the answer in `options` (-1 for 'mul')

  @property
  def prompt_ids(self) -> list[int]:
    return encode(self.prompt)

  @property
  def target_ids(self) -> list[int]:
    return encode(self.target)


def k_shot_problems(rng: np.random.Generator, task: str, length: int, k: int
                    ) -> list[Problem]:
  """k solved shots and then the query: k + 1 problems of the same task and length."""
  return [make_problem(rng, task, length) for _ in range(k + 1)]


def k_shot_text(rng: np.random.Generator, task: str, length: int, k: int
                ) -> tuple[str, Problem]:
  """(prompt, query problem): k solved problems of the same task and length, then the query."""
  *shots, query = k_shot_problems(rng, task, length, k)
  prompt = ''.join(p.question + p.answer + TERMINATOR for p in shots) + query.question
  return prompt, query


def make_item(seed: int, task: str, length: int, index: int, k_shots: int = 2) -> Item:
  rng = np.random.default_rng([seed, _TASK_CODES[task], length, index])
  prompt, query = k_shot_text(rng, task, length, k_shots)
  options, gold = (), -1
  if task == 'add':
    wrong = corruptions(rng, query.answer)
    gold = int(rng.integers(0, 4))
    options = tuple(wrong[:gold] + [query.answer] + wrong[gold:])
  return Item(f'{task}{length}-{index}', task, length, prompt, query.answer + TERMINATOR,
              options, gold)


def eval_items(n_per_length: int = 200, *, seed: int = EVAL_SEED, k_shots: int = 2,
               lengths: Sequence[int] = LENGTHS, include_mul: bool = True) -> list[Item]:
  """The held-out eval set: `n_per_length` addition items per L (+ as many 'mul' items).

  Item i does not depend on n_per_length, so a small eval is a prefix of a large one.
  """
  items = [make_item(seed, 'add', L, i, k_shots) for L in lengths
           for i in range(n_per_length)]
  if include_mul:
    items += [make_item(seed, 'mul', MUL_LENGTH, i, k_shots) for i in range(n_per_length)]
  return items


def _digit_ids(numbers: np.ndarray, width: int) -> np.ndarray:
  """[n, width] token ids of `digits(number, width)` for each number (LSB first)."""
  powers = 10 ** np.arange(width, dtype=np.int64)
  return DIGIT_IDS[(numbers[:, None] // powers) % 10]


def addition_tokens(length: int, start: int, stop: int, *, seed: int = EVAL_SEED,
                    k_shots: int = 2) -> np.ndarray:
  """[stop - start, prompt + L + 1] token ids of eval items start..stop-1 of `add length`:
  exactly `prompt_ids + target_ids` of `make_item(seed, 'add', length, i, k_shots)` (the
  same draws, in the same order), built without the strings, for large evals. Every row has
  the same length; the answer and terminator are the last L + 1 tokens."""
  if length not in LENGTHS:
    raise ValueError(f'addition length must be in 1..8, got {length}')
  if not 0 <= start <= stop:
    raise ValueError(f'need 0 <= start <= stop, got start={start}, stop={stop}')
  draws = np.empty((stop - start, k_shots + 1, 2), np.int64)  # (c, a) of every problem
  for row, index in enumerate(range(start, stop)):
    rng = np.random.default_rng([seed, _TASK_CODES['add'], length, index])
    for p in range(k_shots + 1):  # make_problem's two draws
      c = int(rng.integers(0, 10**length))
      draws[row, p] = c, int(rng.integers(0, c + 1))
  n = stop - start
  plus = np.full((n, 1), _CHAR_TO_ID['+'], np.int32)
  stop_id = np.full((n, 1), TERMINATOR_ID, np.int32)
  parts = []
  for p in range(k_shots + 1):
    c, a = draws[:, p, 0], draws[:, p, 1]
    parts += [_digit_ids(a, WIDTH), plus, _digit_ids(c - a, WIDTH), _digit_ids(c, length),
              stop_id]
  return np.concatenate(parts, axis=1).astype(np.int32)


def max_sequence_length(k_shots: int = 2, max_length: int = max(LENGTHS)) -> int:
  """Tokens of the longest example (prompt + target)."""
  return (k_shots + 1) * (2 * WIDTH + 1 + max_length + 1)


# ------------------------------------------------------------------- the training stream


def short_operand_problem(rng: np.random.Generator, length: int) -> Problem:
  """An L-digit addition with one short operand, first or second with equal odds: it has n
  digits, n uniform in 0..L-1 (n = 0: it is 0), and the other operand is uniform over what
  keeps the sum below 10^L.
  Where the short operand's digits are 0, an answer digit is the other operand's digit
  plus a carry, which a model can learn to read before it learns digit sums. In the eval
  set's problems (`make_problem`) one operand digit alone tells little about the answer
  digit (a digit sum mod 10 is uniform given either term), and small models can sit on a
  loss plateau until they find both at once (README, emergence probe). Lee et al. (2023,
  "Teaching Arithmetic to Small Transformers", Sec. 4) balance operand digit counts in
  training data for a similar reason."""
  n = int(rng.integers(0, length))
  short = int(rng.integers(0, 10**n))
  a, b = int(rng.integers(0, 10**length - short)), short
  if rng.random() < 0.5:
    a, b = b, a
  return Problem('add', length, f'{digits(a, WIDTH)}+{digits(b, WIDTH)}', digits(a + b, length))


def _training_problems(rng: np.random.Generator, k_shots: int, mul_fraction: float,
                       lengths: Sequence[int], short_operand_fraction: float = 0.0
                       ) -> list[Problem]:
  if rng.random() < mul_fraction:
    return k_shot_problems(rng, 'mul', MUL_LENGTH, k_shots)
  length = int(rng.choice(lengths))
  if short_operand_fraction and rng.random() < short_operand_fraction:
    return [short_operand_problem(rng, length) for _ in range(k_shots + 1)]
  return k_shot_problems(rng, 'add', length, k_shots)


def training_example(rng: np.random.Generator, k_shots: int, mul_fraction: float,
                     lengths: Sequence[int], short_operand_fraction: float = 0.0) -> str:
  """One full example: k solved shots and the solved query (L uniform over `lengths`); a
  `short_operand_fraction` of the addition examples use `short_operand_problem`."""
  return ''.join(p.question + p.answer + TERMINATOR
                 for p in _training_problems(rng, k_shots, mul_fraction, lengths,
                                             short_operand_fraction))


def training_tokens(rng: np.random.Generator, k_shots: int, mul_fraction: float,
                    lengths: Sequence[int], short_operand_fraction: float = 0.0
                    ) -> tuple[np.ndarray, np.ndarray]:
  """(ids, answer mask) of one example (the same draw as `training_example`): the mask is 1
  on every answer digit and terminator, 0 on the operands."""
  ids, mask = [], []
  for p in _training_problems(rng, k_shots, mul_fraction, lengths, short_operand_fraction):
    answer = encode(p.answer + TERMINATOR)
    ids += encode(p.question) + answer
    mask += [0.0] * len(p.question) + [1.0] * len(answer)
  return np.asarray(ids, np.int32), np.asarray(mask, np.float32)


class ArithmeticSource(indexed.IndexedSource):
  """Decoder-only batches of training examples; batch i is a pure function of (seed, i)."""
  may_have_prefix = False  # causal LM rows: decoder_causal_attention is all zeros

  def __init__(self, batch_size: int, length: int, seed: int, shard_index: int = 0,
               k_shots: int = 2, mul_fraction: float = 0.1,
               lengths: Sequence[int] = LENGTHS, loss_on: str = 'answers',
               short_operand_fraction: float = 0.0):
    if loss_on not in ('answers', 'all'):
      raise ValueError(f"loss_on must be 'answers' or 'all', got {loss_on!r}")
    if not 0.0 <= short_operand_fraction <= 1.0:
      raise ValueError(f'short_operand_fraction must be in [0, 1], got {short_operand_fraction}')
    need = max_sequence_length(k_shots, max(lengths)) - 1
    if length < need:
      raise ValueError(f'TASK_FEATURE_LENGTHS targets={length} is shorter than the longest '
                       f'arithmetic example ({need} tokens for k_shots={k_shots})')
    self.batch_size, self.length, self.seed, self.shard_index = (batch_size, length, seed,
                                                                 shard_index)
    self.k_shots, self.mul_fraction, self.lengths = k_shots, mul_fraction, tuple(lengths)
    self.loss_on, self.short_operand_fraction = loss_on, short_operand_fraction

  def batch(self, index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([TRAIN_SEED_NAMESPACE, self.seed, index, self.shard_index])
    b, n = self.batch_size, self.length
    inputs = np.zeros((b, n), np.int32)
    targets = np.zeros((b, n), np.int32)
    weights = np.zeros((b, n), np.float32)
    segments = np.zeros((b, n), np.int32)
    for r in range(b):
      ids, answers = training_tokens(rng, self.k_shots, self.mul_fraction, self.lengths,
                                     self.short_operand_fraction)
      m = len(ids) - 1
      inputs[r, :m], targets[r, :m], segments[r, :m] = ids[:-1], ids[1:], 1
      weights[r, :m] = answers[1:] if self.loss_on == 'answers' else 1.0
    positions = np.tile(np.arange(n, dtype=np.int32), (b, 1)) * segments
    return {'decoder_input_tokens': inputs, 'decoder_target_tokens': targets,
            'decoder_loss_weights': weights, 'decoder_segment_ids': segments,
            'decoder_positions': positions,
            'decoder_causal_attention': np.zeros((b, n), np.int32)}


@gin.configurable
def arithmetic_source(family: str, batch_size: int, feature_lengths: Mapping[str, int],
                      seed: int, shard_index: int = 0, num_shards: int = 1,
                      split: str = 'train', k_shots: int = 2, mul_fraction: float = 0.1,
                      lengths: Sequence[int] = LENGTHS, loss_on: str = 'answers',
                      eval_seed_offset: int = 10_000,
                      short_operand_fraction: float = 0.0) -> ArithmeticSource:
  """The trainer's `batch_source` contract (research/train/sources.py), for the stream.

  gin: `trainer.train.batch_source = @arithmetic_source`. The trainer's 'eval' split is a
  differently seeded stream (eval_loss on the mixture); the probe's eval set is separate.
  """
  del num_shards  # shards differ by shard_index in the seed
  if family != 'decoder':
    raise ValueError(f"arithmetic_source serves family='decoder' only, got {family!r}")
  if split != 'train':
    seed += eval_seed_offset
  return ArithmeticSource(batch_size, int(feature_lengths['targets']), seed, shard_index,
                          k_shots, mul_fraction, lengths, loss_on, short_operand_fraction)


# ------------------------------------------------------------------------ TFDS builder

_BUILDER_CLASS = None


def builder_class():
  """The TFDS builder class `Arithmetic` (defined on first call: tfds is imported lazily).

  Splits: 'eval' (the held-out items, n_per_length per L) and 'train' (a finite slice of the
  stream as text, for tools that want a TFDS dataset rather than the live source).
  """
  global _BUILDER_CLASS
  if _BUILDER_CLASS is not None:
    return _BUILDER_CLASS
  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds
  from research.data import builders
  # pylint: enable=g-import-not-at-top

  @dataclasses.dataclass
  class ArithmeticConfig(tfds.core.BuilderConfig):
    n_per_length: int = 200
    train_examples: int = 20_000
    k_shots: int = 2

  class Arithmetic(builders.ArrayRecordBuilder):
    """k-shot arithmetic; configs 'small' (200 per L), 'large' (2,000 per L), 'tiny' (tests)."""
    VERSION = tfds.core.Version('2.0.0')
    RELEASE_NOTES = {'2.0.0': 'Numbers least-significant digit first, operands 8 digits, no =.'}
    BUILDER_CONFIGS = [ArithmeticConfig(name='small'),
                       ArithmeticConfig(name='large', n_per_length=2000),
                       ArithmeticConfig(name='tiny', n_per_length=5, train_examples=20)]

    def _info(self):
      return self.dataset_info_from_configs(
          description='k-shot integer arithmetic (emergence probe).',
          features=tfds.features.FeaturesDict({
              'item_id': tfds.features.Text(), 'task': tfds.features.Text(),
              'length': np.int32, 'prompt': tfds.features.Text(),
              'target': tfds.features.Text(), 'text': tfds.features.Text(),
              'options': tfds.features.Sequence(tfds.features.Text()), 'gold': np.int32}),
          metadata=tfds.core.MetadataDict(eval_seed=EVAL_SEED, vocab=list(VOCAB)))

    def _split_generators(self, dl_manager):
      del dl_manager  # nothing is downloaded
      return {'eval': self._eval(), 'train': self._train()}

    def _eval(self):
      config = self.builder_config
      for item in eval_items(config.n_per_length, k_shots=config.k_shots):
        yield item.item_id, {'item_id': item.item_id, 'task': item.task,
                             'length': item.length, 'prompt': item.prompt,
                             'target': item.target, 'text': item.prompt + item.target,
                             'options': list(item.options), 'gold': item.gold}

    def _train(self):
      config = self.builder_config
      for i in range(config.train_examples):
        rng = np.random.default_rng([TRAIN_SEED_NAMESPACE, 0, i])
        text = training_example(rng, config.k_shots, 0.1, LENGTHS)
        yield f'train-{i}', {'item_id': f'train-{i}', 'task': 'stream', 'length': 0,
                             'prompt': '', 'target': '', 'text': text, 'options': [],
                             'gold': -1}

    def _generate_examples(self):  # pragma: no cover - the splits use their generators
      raise NotImplementedError

  _BUILDER_CLASS = Arithmetic
  return Arithmetic


def builder(config: str = 'small', data_dir: str | None = None):
  """A prepared `Arithmetic` builder (built offline on first use)."""
  from research.data import sources  # pylint: disable=g-import-not-at-top
  b = builder_class()(config=config, data_dir=data_dir or sources.DEFAULT_DATA_DIR)
  b.download_and_prepare()
  return b
