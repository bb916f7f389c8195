"""Greedy packing of converted examples into fixed-length rows (t5x/seqio "packing": several
examples per row, told apart by segment ids 1, 2, ...; 0 is padding; positions restart at 0 in
each segment; attention never crosses segments, which the models enforce from segment ids).

The packer is first-fit over a small pool of open rows: an example goes into the first open row
where every length group still has room; when none has room and the pool is full, the oldest
row is emitted. Rows that come out exactly full are emitted at once. The pool holds raw
examples (plain int lists), so its whole state is JSON and a resumed pipeline rebuilds exactly
the rows it would have built.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np


class Packer:

  def __init__(self, converter, group_lengths: Mapping[str, int], max_open_rows: int = 8,
               pack: bool = True):
    self.converter = converter
    self.group_lengths = dict(group_lengths)
    self.max_open_rows = max_open_rows if pack else 1
    self.pack = pack
    self._open: list[dict] = []  # each {'examples': [...], 'used': {group: n}}
    self.ready: list[list[dict]] = []  # finished rows, oldest first

  def add(self, example: dict) -> None:
    lengths = self.converter.example_lengths(example)
    for group, n in lengths.items():
      if n > self.group_lengths[group]:
        raise ValueError(
            f'example of {group} length {n} exceeds the configured {self.group_lengths[group]}'
            f' (the objective\'s chunk length arithmetic should prevent this)')
    for row in self._open:
      if self.pack and all(row['used'][g] + n <= self.group_lengths[g]
                           for g, n in lengths.items()):
        self._place(row, example, lengths)
        return
    if len(self._open) >= self.max_open_rows:
      self.ready.append(self._open.pop(0)['examples'])
    row = {'examples': [], 'used': {g: 0 for g in self.group_lengths}}
    self._open.append(row)
    self._place(row, example, lengths)

  def _place(self, row, example, lengths):
    row['examples'].append(example)
    for g, n in lengths.items():
      row['used'][g] += n
    # A row with one full group can take nothing more (every example has length there).
    if not self.pack or any(row['used'][g] == self.group_lengths[g] for g in lengths):
      self._open = [r for r in self._open if r is not row]
      self.ready.append(row['examples'])

  def flush(self) -> None:
    """Emits every open row (end of a finite stream, e.g. an eval set)."""
    self.ready.extend(row['examples'] for row in self._open)
    self._open = []

  def take_random(self, n: int, rng: np.random.Generator) -> list[list[dict]]:
    """n finished rows drawn at random (without replacement); the rest keep their order."""
    picked = sorted(rng.choice(len(self.ready), size=min(n, len(self.ready)),
                               replace=False).tolist())
    rows = [self.ready[i] for i in picked]
    # The rows between the picked ones, by slices: a pool of thousands costs a few list
    # copies, not a Python loop over the pool per batch.
    rest, start = [], 0
    for i in picked:
      rest += self.ready[start:i]
      start = i + 1
    rest += self.ready[start:]
    self.ready = rest
    return rows

  def take(self, n: int) -> list[list[dict]]:
    rows, self.ready = self.ready[:n], self.ready[n:]
    return rows

  # State: rows as lists of examples. get_state returns references to the (never mutated)
  # example arrays so that taking it after every batch is cheap; callers turn it into JSON.
  # A finished row is never changed once in `ready`, so the outer list is copied, not each
  # row (the pipeline takes this after every batch, and `ready` may pool thousands of rows).
  def get_state(self) -> dict:
    return {'open': [list(r['examples']) for r in self._open],
            'ready': list(self.ready)}

  def set_state(self, state: dict) -> None:
    dec = lambda rows: [[{k: np.asarray(v, np.int32) for k, v in ex.items()} for ex in r]
                        for r in rows]
    self.ready = dec(state['ready'])
    self._open = []
    for examples in dec(state['open']):
      used = {g: 0 for g in self.group_lengths}
      for ex in examples:
        for g, n in self.converter.example_lengths(ex).items():
          used[g] += n
      self._open.append({'examples': examples, 'used': used})


def rows_to_batch(rows: Sequence[Sequence[dict]], converter,
                  group_lengths: Mapping[str, int]) -> dict[str, np.ndarray]:
  """Lays out rows of examples as int32 [batch, length] arrays (zeros = padding)."""
  batch_size = len(rows)
  out: dict[str, np.ndarray] = {}
  for g, length in group_lengths.items():
    out[f'{g}_segment_ids'] = np.zeros([batch_size, length], np.int32)
    out[f'{g}_positions'] = np.zeros([batch_size, length], np.int32)
  for b, row in enumerate(rows):
    offset = {g: 0 for g in group_lengths}
    for segment, ex in enumerate(row, start=1):
      lengths = converter.example_lengths(ex)
      for g, n in lengths.items():
        out[f'{g}_segment_ids'][b, offset[g]:offset[g] + n] = segment
        out[f'{g}_positions'][b, offset[g]:offset[g] + n] = np.arange(n)
      for name, value in converter.example_features(ex).items():
        g = name.split('_', 1)[0]
        if name not in out:
          out[name] = np.zeros([batch_size, group_lengths[g]], np.int32)
        out[name][b, offset[g]:offset[g] + len(value)] = value
      for g, n in lengths.items():
        offset[g] += n
  return out


def pack_examples(examples: Iterable[dict], converter, group_lengths: Mapping[str, int],
                  pack: bool = True, max_open_rows: int = 8) -> dict[str, np.ndarray]:
  """All examples -> one big batch of rows (convenience for tests and eval sets)."""
  packer = Packer(converter, group_lengths, max_open_rows=max_open_rows, pack=pack)
  for ex in examples:
    packer.add(ex)
  packer.flush()
  return rows_to_batch(packer.take(len(packer.ready)), converter, group_lengths)
