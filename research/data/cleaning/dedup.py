"""Exact and near deduplication of documents, in one pass over a stream.

Exact: the SHA-256 of a document's text; a document whose hash was seen is removed.

Near: MinHash signatures of word shingles (contiguous `shingle_size`-word windows) indexed
with locality-sensitive hashing in bands (Broder 1997; Leskovec, Rajaraman & Ullman, Mining
of Massive Datasets, ch. 3; as Lee et al. 2022, "Deduplicating Training Data Makes Language
Models Better", sec. 4.1, did with 5-gram shingles), using `datasketch` (MinHash, MinHashLSH).
A document is a near duplicate when LSH proposes an earlier kept document AND the estimated
Jaccard similarity of the two signatures is at least `threshold` (the check removes the LSH
false positives of bands that collide by chance). It joins the cluster of the earliest such
document; the first document of a cluster (in corpus order) is kept, the rest removed.

Only kept documents enter the index, and the index holds signatures and keys only, never
text: memory grows with num_perm * 8 bytes per kept document, not with the corpus' bytes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re

import gin
import numpy as np

from research.data.cleaning.rules import RuleError

_WORD = re.compile(r'\S+')
# datasketch 2's default permutation scheme, named so that signatures made in the workers and
# the index agree whatever a later default becomes.
SCHEME = 'affine32'


@gin.configurable('near_dedup')
@dataclasses.dataclass(frozen=True)
class NearDedupConfig:
  """MinHash-LSH settings. `bands` and `rows` (bands * rows <= num_perm) fix the LSH layout;
  left None, datasketch picks the layout that minimises false positives plus negatives
  around `threshold` (256 permutations at 0.8: 17 bands of 15 rows, a pair at Jaccard 0.9
  becomes a candidate with probability 1 - (1 - 0.9**15)**17 = 0.98). Lee et al. 2022 used
  5-gram shingles and threshold 0.8."""
  enabled: bool = True
  shingle_size: int = 5
  num_perm: int = 256
  threshold: float = 0.8
  bands: int | None = None
  rows: int | None = None
  seed: int = 1

  def __post_init__(self):
    if not isinstance(self.shingle_size, int) or self.shingle_size < 1:
      raise RuleError(f'near_dedup.shingle_size must be an integer >= 1, got '
                      f'{self.shingle_size!r}')
    if not isinstance(self.num_perm, int) or not 2 <= self.num_perm <= 4096:
      raise RuleError(f'near_dedup.num_perm must be an integer in [2, 4096], got '
                      f'{self.num_perm!r}')
    if not isinstance(self.threshold, (int, float)) or not 0 < self.threshold < 1:
      raise RuleError(f'near_dedup.threshold must be in (0, 1), got {self.threshold!r}')
    if (self.bands is None) != (self.rows is None):
      raise RuleError('near_dedup.bands and near_dedup.rows are set together or not at all')
    if self.bands is not None:
      if not (isinstance(self.bands, int) and isinstance(self.rows, int)
              and self.bands >= 1 and self.rows >= 1):
        raise RuleError(f'near_dedup.bands and rows must be integers >= 1, got '
                        f'{self.bands!r} and {self.rows!r}')
      if self.bands * self.rows > self.num_perm:
        raise RuleError(f'near_dedup.bands * rows = {self.bands * self.rows} exceeds '
                        f'num_perm = {self.num_perm}')


def exact_hash(text: str) -> str:
  return hashlib.sha256(text.encode('utf-8')).hexdigest()


def shingles(text: str, size: int) -> set[bytes]:
  """The set of `size`-word windows (a shorter document is one shingle of all its words)."""
  words = _WORD.findall(text)
  if len(words) <= size:
    return {' '.join(words).encode('utf-8')}
  return {' '.join(words[i:i + size]).encode('utf-8') for i in range(len(words) - size + 1)}


def jaccard(a: set, b: set) -> float:
  return len(a & b) / len(a | b) if a or b else 1.0


def signature(text: str, config: NearDedupConfig) -> np.ndarray:
  """MinHash hash values (uint64, num_perm) of the document's shingles."""
  from datasketch import MinHash  # pylint: disable=g-import-not-at-top
  m = MinHash(num_perm=config.num_perm, seed=config.seed, scheme=SCHEME)
  m.update_batch(sorted(shingles(text, config.shingle_size)))
  return m.hashvalues.copy()


class NearDedupIndex:
  """The LSH index of kept documents: `add(key, signature)` says whose duplicate the
  document is (the key of the cluster's first document) or None, and indexes it if None."""

  def __init__(self, config: NearDedupConfig):
    from datasketch import MinHashLSH  # pylint: disable=g-import-not-at-top
    self.config = config
    params = None if config.bands is None else (config.bands, config.rows)
    self._lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm,
                           params=params)
    self._signatures: dict[str, np.ndarray] = {}
    self._order: dict[str, int] = {}

  @property
  def bands_rows(self) -> tuple[int, int]:
    return self._lsh.b, self._lsh.r

  def _lean(self, hashvalues):
    from datasketch import LeanMinHash  # pylint: disable=g-import-not-at-top
    return LeanMinHash(seed=self.config.seed, hashvalues=hashvalues, scheme=SCHEME)

  def add(self, key: str, hashvalues: np.ndarray) -> str | None:
    lean = self._lean(hashvalues)
    best = None
    for other in self._lsh.query(lean):
      similar = float(np.mean(self._signatures[other] == hashvalues))
      if similar >= self.config.threshold and (best is None
                                               or self._order[other] < self._order[best]):
        best = other
    if best is None:
      self._lsh.insert(key, lean)
      self._signatures[key] = hashvalues
      self._order[key] = len(self._order)
    return best
