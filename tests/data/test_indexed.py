"""research.data.indexed: a source of batch(0), batch(1), ... whose state is the next index."""
import numpy as np
import pytest

from research.data import indexed


class _Counting(indexed.IndexedSource):
  def batch(self, index):
    return {'index': np.asarray([index])}


def test_a_resumed_source_continues_with_the_next_batch():
  source = _Counting()
  assert [int(next(source)['index'][0]) for _ in range(3)] == [0, 1, 2]
  state = source.get_state()
  assert state == {'index': 3}
  resumed = _Counting()
  resumed.set_state(state)
  assert int(next(resumed)['index'][0]) == 3 and resumed.get_state() == {'index': 4}
  assert _Counting().get_state() == {'index': 0}  # each source counts from 0 on its own


def test_a_source_must_say_what_its_batches_are():
  with pytest.raises(TypeError):
    indexed.IndexedSource()  # pylint: disable=abstract-class-instantiated
