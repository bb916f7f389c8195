"""Host (CPU) process set-up: keep glibc from unmapping XLA:CPU's per-step buffers.

XLA:CPU allocates each execution's temporaries as one block (hundreds of MB for a train
step: every activation the backward needs) and frees it when the step ends. glibc serves any
allocation above its mmap threshold (at most 32 MiB) with a fresh `mmap` and returns it with
`munmap`, so every step the kernel maps, zero-fills and faults in that block again, page by
page. On the 2-core CI-class VM a 4-layer MLP's fwd+bwd (benchmarks/train_step.py's shapes)
took 76,000 minor page faults per step, and 127 ms of its 280 ms went to the kernel.
PyTorch's eager tensors are separate allocations of at most a few MB, which glibc recycles
from its heap, so the comparison of benchmarks/train_step.py --torch was paying this on one
side only.

`tune_allocator()` sets three `mallopt` parameters before JAX allocates anything:
  M_MMAP_MAX = 0              serve large blocks from the heap, never from a fresh mmap;
  M_TRIM_THRESHOLD = 2^31-1   keep freed heap pages (the next step reuses them);
  M_ARENA_MAX = 1             one heap for all threads, so a block freed on one runtime thread
                              is reused by the next step wherever it allocates.
Measured on that VM: that fwd+bwd went from 280 to 229 ms per step and 10 ms of kernel time
(benchmarks/train_step.py: see the README's "Training" section). The cost is that the
process keeps its peak heap for its lifetime, which a training process does anyway.
And one arena serializes malloc across threads: the causal-LM input pipeline
(benchmarks/input_pipeline.py) fell from 17 to 11-13 M tokens/s, still 2,200x what the
trainer reads; the other objectives did not move.

glibc only (Linux); elsewhere, or with RESEARCH_TUNE_MALLOC=0, it does nothing.
"""
import ctypes
import ctypes.util
import os
import sys

from absl import logging

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_NEVER_TRIM = 2 ** 31 - 1  # the largest int: trim only when 2 GiB lie free at the top

_done = False


def tune_allocator() -> bool:
  """Applies the settings above once per process; True where they took effect."""
  global _done
  if _done:
    return True
  if not sys.platform.startswith('linux') or os.environ.get('RESEARCH_TUNE_MALLOC') == '0':
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    mallopt = libc.mallopt
  except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
    return False
  mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
  mallopt.restype = ctypes.c_int
  ok = all(mallopt(param, value) == 1 for param, value in (
      (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER_TRIM), (_M_ARENA_MAX, 1)))
  if not ok:
    logging.warning('mallopt refused a setting; XLA:CPU steps may page-fault their buffers')
  _done = ok
  return ok


def exit_at_once(line: str, code: int = 1) -> None:
  """Writes `line` to stderr and ends the process without the interpreter's teardown.

  For a failure during start-up with background threads still alive (orbax's, after a
  checkpoint failed to restore): a normal exit lets them and the garbage collector print
  tracebacks of their own, dozens of lines after the one that explains the failure.
  Nothing may be being written when this is called.
  """
  sys.stdout.flush()
  sys.stderr.flush()
  stderr = os.dup(2)
  os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
  os.write(stderr, (line.rstrip('\n') + '\n').encode())
  os._exit(code)  # pylint: disable=protected-access

