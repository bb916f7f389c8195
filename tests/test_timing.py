"""research.timing: untimed warm-up calls first, then one wall time per timed call."""
import time

from research import timing


def test_warm_up_calls_come_first_and_every_timed_call_is_measured():
  calls = []

  def fn():
    calls.append(time.perf_counter())
    if len(calls) > 2:  # the timed calls sleep; the two warm-up calls return at once
      time.sleep(0.01)

  times = timing.call_seconds(fn, calls=3, warmup=2)
  assert len(calls) == 5 and len(times) == 3
  assert all(t >= 0.01 for t in times)


def test_no_warm_up_by_default():
  calls = []
  assert len(timing.call_seconds(lambda: calls.append(1), calls=4)) == 4
  assert len(calls) == 4
