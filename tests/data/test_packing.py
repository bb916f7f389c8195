"""The packer's pool: random draws keep the rest in order, and a state taken earlier is not
changed by later draws (the pipeline takes one after every batch, by reference)."""
import numpy as np

from research.data import converters, packing


def _packer_with_rows(n):
  packer = packing.Packer(converters.get_converter('decoder'), {'decoder': 4})
  for i in range(n):  # each 4-token example fills a row at once
    packer.add({'inputs': np.zeros(0, np.int32), 'targets': np.full(4, i, np.int32)})
  return packer


def _ids(rows):
  return [int(row[0]['targets'][0]) for row in rows]


def test_take_random_draws_the_picked_rows_and_keeps_the_rest_in_order():
  packer = _packer_with_rows(50)
  picked = sorted(np.random.default_rng(7).choice(50, size=8, replace=False).tolist())
  rows = packer.take_random(8, np.random.default_rng(7))
  assert _ids(rows) == picked
  assert _ids(packer.ready) == [i for i in range(50) if i not in picked]
  assert len(_ids(packer.take_random(100, np.random.default_rng(1)))) == 42
  assert packer.ready == []


def test_a_taken_state_does_not_change_with_later_draws():
  packer = _packer_with_rows(20)
  state = packer.get_state()
  before = _ids(state['ready'])
  packer.take_random(5, np.random.default_rng(0))
  packer.add({'inputs': np.zeros(0, np.int32), 'targets': np.full(4, 99, np.int32)})
  assert _ids(state['ready']) == before == list(range(20))
