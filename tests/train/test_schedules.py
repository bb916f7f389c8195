"""Schedules and the batch-size ramp against hand-computed values."""
import math

import numpy as np
import pytest

from research.train import schedules


def test_warmup_cosine_hand_values():
  lr = schedules.warmup_cosine(peak=1.0, warmup_steps=10, total_steps=110, final_fraction=0.1)
  assert float(lr(0)) == 0.0
  assert float(lr(5)) == pytest.approx(0.5)
  assert float(lr(10)) == pytest.approx(1.0)
  # Halfway through the decay: 0.1 + 0.9 * (1 + cos(pi/2)) / 2 = 0.55.
  assert float(lr(60)) == pytest.approx(0.55, abs=1e-6)
  # A quarter: 0.1 + 0.9 * (1 + cos(pi/4)) / 2.
  assert float(lr(35)) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)), abs=1e-6)
  assert float(lr(110)) == pytest.approx(0.1)
  assert float(lr(1000)) == pytest.approx(0.1)  # stays at 10% of peak


def test_constant_and_inverse_sqrt_hand_values():
  const = schedules.constant(peak=3e-4, warmup_steps=4)
  assert [float(const(s)) for s in (0, 2, 4, 1000)] == pytest.approx([0, 1.5e-4, 3e-4, 3e-4])
  inv = schedules.inverse_sqrt(peak=1.0, warmup_steps=100)
  assert float(inv(50)) == pytest.approx(0.5)
  assert float(inv(100)) == pytest.approx(1.0)
  assert float(inv(400)) == pytest.approx(0.5)  # sqrt(100 / 400)
  assert float(inv(10000)) == pytest.approx(0.1)


def test_make_schedule_registry():
  with pytest.raises(ValueError, match='unknown schedule'):
    schedules.make_schedule(100, name='linear_wobble')
  lr = schedules.make_schedule(100, name='constant', peak=2.0, warmup_steps=0)
  assert float(lr(50)) == 2.0


def test_batch_size_ramp():
  ramp = lambda s: schedules.batch_size_ramp(s, start_multiple=1, final_multiple=4,
                                             ramp_steps=30)
  assert [ramp(s) for s in (0, 9, 10, 20, 29, 30, 100)] == [1, 1, 2, 3, 3, 4, 4]
  assert schedules.batch_size_ramp(0) == 1  # default: no ramp


def test_schedules_are_jittable():
  import jax
  lr = jax.jit(schedules.warmup_cosine(1.0, 10, 110))
  np.testing.assert_allclose(lr(np.int32(60)), 0.55, atol=1e-6)
