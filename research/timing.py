"""Wall-clock timing of repeated calls, for the benchmark scripts."""
import time
from typing import Callable


def call_seconds(fn: Callable[[], object], calls: int, warmup: int = 0) -> list[float]:
  """Wall seconds of each of `calls` calls of fn(), after `warmup` untimed ones (the first
  compiles; later ones settle caches and thread pools). fn must return only once its work
  is done: block on a JAX result inside it."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times
