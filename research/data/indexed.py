"""Batch sources whose batch i is a pure function of (seed, i), like the synthetic and the
arithmetic streams: their whole state is the index of the next batch."""
import abc
from typing import Iterator

import numpy as np


class IndexedSource(Iterator[dict]):
  """Yields batch(0), batch(1), ...; get_state / set_state are the index of the next one,
  so a source resumed from a checkpoint gives exactly the batches it would have given."""
  index = 0  # of the next batch

  @abc.abstractmethod
  def batch(self, index: int) -> dict[str, np.ndarray]:
    """Batch `index`, from nothing but the source's configuration and `index`."""

  def __next__(self) -> dict[str, np.ndarray]:
    batch = self.batch(self.index)
    self.index += 1
    return batch

  def get_state(self) -> dict:
    return {'index': self.index}

  def set_state(self, state: dict) -> None:
    self.index = int(state['index'])
