"""Tokenizers behind one interface: byte-level (ByT5-style, the default) and SentencePiece.

Both lay out their special ids the same way so that objectives never care which one is in use:

    0 pad, 1 eos, 2 unk,                      (T5 / ByT5 convention)
    ordinary ids (bytes, or SentencePiece pieces),
    [NLU] [NLG] [S2S]                         (UL2 mode tokens, Tay et al. 2022, sec. 3.1.3)
    [MASK]                                    (BERT masked LM, Devlin et al. 2019)
    sentinels, numbered DOWN from the top of the vocabulary: sentinel(0) = vocab_size - 1,
    as T5 does (t5.data.preprocessors.sentinel_id: vocabulary.vocab_size - 1).

The vocabulary is padded up to a multiple of 128 (the extra ids all become sentinels), because
embedding tables whose size is a multiple of 128 tile cleanly on TPU/GPU; for bytes this gives
exactly ByT5's 384 (Xue et al. 2022: 3 specials + 256 bytes + 125 sentinels).
"""
from __future__ import annotations

import abc
import os
from typing import Iterable, Sequence

import numpy as np

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
MODE_TOKENS = ('[NLU]', '[NLG]', '[S2S]')
MASK_TOKEN = '[MASK]'
MIN_SENTINELS = 100  # T5 ships 100 extra ids; UL2 and span corruption at length 512 need < 100.
_VOCAB_MULTIPLE = 128


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


class Tokenizer(abc.ABC):
  """What objectives, converters and the pipeline need from a tokenizer."""

  pad_id: int = PAD_ID
  eos_id: int = EOS_ID
  unk_id: int = UNK_ID

  def __init__(self, num_ordinary: int, ordinary_offset: int):
    # Ordinary ids are [ordinary_offset, ordinary_offset + num_ordinary).
    self._ordinary = (ordinary_offset, ordinary_offset + num_ordinary)
    first_special = ordinary_offset + num_ordinary
    self._mode_ids = {name: first_special + i for i, name in enumerate(MODE_TOKENS)}
    self.mask_id = first_special + len(MODE_TOKENS)
    self._first_sentinel_floor = self.mask_id + 1
    self._vocab_size = _round_up(self._first_sentinel_floor + MIN_SENTINELS, _VOCAB_MULTIPLE)

  @property
  def vocab_size(self) -> int:
    return self._vocab_size

  @property
  def num_sentinels(self) -> int:
    return self._vocab_size - self._first_sentinel_floor

  @property
  def ordinary_range(self) -> tuple[int, int]:
    """[low, high) of ids that are real text (BERT's random replacement draws from here)."""
    return self._ordinary

  def sentinel(self, i: int) -> int:
    """Id of the i-th sentinel, counted down from the top as in T5."""
    if not 0 <= i < self.num_sentinels:
      raise ValueError(
          f'sentinel index {i} out of range: this tokenizer has {self.num_sentinels} '
          f'sentinels (an example with more noise spans needs a longer vocabulary or '
          f'fewer spans)')
    return self._vocab_size - 1 - i

  def sentinel_ids(self, count: int) -> np.ndarray:
    """The first `count` sentinels as an int32 array; raises if there are not enough."""
    if count > self.num_sentinels:
      raise ValueError(
          f'example needs {count} sentinels but the tokenizer has only '
          f'{self.num_sentinels}; ordinary ids are never reused as sentinels')
    return (self._vocab_size - 1 - np.arange(count)).astype(np.int32)

  def is_sentinel(self, ids: np.ndarray) -> np.ndarray:
    return np.asarray(ids) >= self._first_sentinel_floor

  def mode_token(self, name: str) -> int:
    if name not in self._mode_ids:
      raise ValueError(f'unknown mode token {name!r}; known: {sorted(self._mode_ids)}')
    return self._mode_ids[name]

  @abc.abstractmethod
  def encode(self, text: str) -> list[int]:
    """Text -> ids, without eos."""

  @abc.abstractmethod
  def _decode_ordinary(self, ids: Sequence[int]) -> str:
    ...

  def encode_array(self, text: str) -> np.ndarray:
    return np.asarray(self.encode(text), dtype=np.int32)

  def decode(self, ids: Iterable[int]) -> str:
    """Ids -> text; stops at the first eos, drops pad and every non-text id."""
    lo, hi = self._ordinary
    kept = []
    for i in ids:
      i = int(i)
      if i == self.eos_id:
        break
      if lo <= i < hi:
        kept.append(i)
    return self._decode_ordinary(kept)


class ByteTokenizer(Tokenizer):
  """ByT5-style: id = byte + 3. vocab_size is 384."""

  def __init__(self):
    super().__init__(num_ordinary=256, ordinary_offset=3)

  def encode(self, text: str) -> list[int]:
    return self.encode_array(text).tolist()

  def encode_array(self, text: str) -> np.ndarray:
    # One vectorised op per document: this is what makes the pipeline fast.
    return np.frombuffer(text.encode('utf-8'), dtype=np.uint8).astype(np.int32) + 3

  def _decode_ordinary(self, ids: Sequence[int]) -> str:
    return bytes(i - 3 for i in ids).decode('utf-8', errors='replace')

  def __repr__(self):
    return 'ByteTokenizer()'


class SentencePieceTokenizer(Tokenizer):
  """A SentencePiece model trained with pad=0, eos=1, unk=2 (see `train_sentencepiece`).

  Mode tokens, [MASK] and sentinels are appended after the model's pieces, like seqio's
  `extra_ids`, so the .model file itself stays a plain SentencePiece model.
  """

  def __init__(self, model_path: str):
    import sentencepiece as spm  # pylint: disable=g-import-not-at-top
    if not os.path.exists(model_path):
      raise FileNotFoundError(f'SentencePiece model not found: {model_path}')
    self.model_path = model_path
    self._sp = spm.SentencePieceProcessor(model_file=model_path)
    if (self._sp.pad_id(), self._sp.eos_id(), self._sp.unk_id()) != (PAD_ID, EOS_ID, UNK_ID):
      raise ValueError(
          f'{model_path}: expected pad/eos/unk ids 0/1/2 (T5 convention), got '
          f'{self._sp.pad_id()}/{self._sp.eos_id()}/{self._sp.unk_id()}; train it with '
          f'experiments/train_tokenizer.py')
    # Pieces 0..2 are pad/eos/unk; unk is kept as an ordinary id so that it decodes.
    super().__init__(num_ordinary=self._sp.get_piece_size() - 2, ordinary_offset=2)

  def encode(self, text: str) -> list[int]:
    return self._sp.encode(text)

  def _decode_ordinary(self, ids: Sequence[int]) -> str:
    return self._sp.decode(list(ids))

  def __repr__(self):
    return f'SentencePieceTokenizer({self.model_path!r})'


def train_sentencepiece(texts: Iterable[str], model_prefix: str, vocab_size: int,
                        model_type: str = 'unigram', max_sentence_length: int = 16384,
                        character_coverage: float = 1.0) -> str:
  """Trains a SentencePiece model with T5's special-id layout; returns the .model path.

  `vocab_size` counts the model's own pieces; the tokenizer adds mode tokens, [MASK] and
  sentinels on top. unigram is T5's choice (Raffel et al. 2020, sec. 2.2).
  """
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top

  def lines():
    # SentencePiece trains on sentences; long documents are fed line by line.
    for text in texts:
      for line in text.splitlines(keepends=True):
        if line.strip():
          yield line

  os.makedirs(os.path.dirname(os.path.abspath(model_prefix)), exist_ok=True)
  spm.SentencePieceTrainer.train(
      sentence_iterator=lines(), model_prefix=model_prefix, vocab_size=vocab_size,
      model_type=model_type, pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
      character_coverage=character_coverage, max_sentence_length=max_sentence_length,
      # Code is whitespace-sensitive: no NFKC, keep runs of spaces and newlines (the latter
      # reach the model through byte fallback or learned pieces).
      normalization_rule_name='identity', remove_extra_whitespaces=False, split_digits=True, byte_fallback=True,
      # A small corpus may not support vocab_size pieces; take fewer rather than fail.
      hard_vocab_limit=False,
      minloglevel=2)
  return model_prefix + '.model'


def get_tokenizer(name: str = 'byte', model_path: str | None = None) -> Tokenizer:
  """Registry entry point used by gin: 'byte' or 'sentencepiece' (needs model_path)."""
  if name == 'byte':
    return ByteTokenizer()
  if name == 'sentencepiece':
    if not model_path:
      raise ValueError('tokenizer "sentencepiece" needs model_path=<file>.model')
    return SentencePieceTokenizer(model_path)
  raise ValueError(f'unknown tokenizer {name!r}; known: byte, sentencepiece')
