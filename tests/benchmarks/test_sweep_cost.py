"""sweep_cost.py's projection: packing, interpolation, and cold versus warm start-ups."""
import collections

import pytest

from research.sweeps import cost as sweep_cost

P = collections.namedtuple('P', 'size flops_per_token train_steps')


def test_interpolation_is_linear_in_log_flops_and_held_at_the_ends():
  measured = {1e4: (10.0, 4.0, 0.01), 1e6: (20.0, 8.0, 0.21)}
  assert list(sweep_cost.interpolate(measured, 1e5)) == pytest.approx([15.0, 6.0, 0.11])
  assert list(sweep_cost.interpolate(measured, 1e3)) == pytest.approx([10.0, 4.0, 0.01])
  assert list(sweep_cost.interpolate(measured, 1e7)) == pytest.approx([20.0, 8.0, 0.21])


def test_first_run_of_a_size_starts_cold_the_others_warm():
  measured = {1e4: (10.0, 4.0, 0.01), 1e6: (10.0, 4.0, 0.01)}
  points = [P('a', 1e4, 100), P('b', 1e6, 100), P('a', 1e4, 200)]
  assert sweep_cost.run_seconds(points, measured) == pytest.approx([11.0, 11.0, 6.0])
