"""The trainer's metrics: metrics.jsonl + TensorBoard, progress line, MFU.

Whole run files are written atomically by research.runs. metrics.jsonl is appended one complete line per write (a rename per step
would be quadratic); on resume, lines past the restored step and any torn last line are
dropped, so the file always reads as one uninterrupted run.
"""
import functools
import json
import math
import os
import struct
import sys
import time
from typing import Any, Mapping, Optional

import gin
import jax
import jax.numpy as jnp
import numpy as np

from research import runs
# The writers of whole run files, under the names the trainer's callers know.
from research.runs import write_json_atomic  # noqa: F401
from research.runs import write_text_atomic as write_atomic

# Dense peak FLOP/s per device (bf16 matmul unless noted), from vendor data sheets.
# Matched by substring of jax's device_kind, first match wins.
PEAK_FLOPS_PER_DEVICE: tuple[tuple[str, float], ...] = (
    ('H200', 989e12),
    ('H100', 989e12),       # SXM; the PCIe part is 756e12
    ('A100', 312e12),
    ('L4', 121e12),
    ('A10G', 125e12),
    ('V100', 125e12),
    ('TPU v6', 918e12),
    ('TPU v5p', 459e12),
    ('TPU v5 lite', 197e12),
    ('TPU v5e', 197e12),
    ('TPU v4', 275e12),
    ('TPU v3', 123e12),
)


def measure_cpu_peak_flops(size: int = 1024, repeats: int = 10) -> float:
  """Achieved fp32 matmul FLOP/s of this host's device: the CPU stand-in for a peak.

  Best of `repeats` after warm-up calls, at a size (2 GFLOP, about 7 ms on 2 cores) where
  waking the worker threads does not count: 512 x 512 (1 ms) read anywhere from 0.16 to
  0.30 TFLOP/s on the 2-core VM, and MFUs above 100% with it."""
  x = jnp.ones((size, size), jnp.float32)
  matmul = jax.jit(lambda a: a @ a)
  for _ in range(3):
    matmul(x).block_until_ready()
  best = math.inf
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(x).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * size ** 3 / best


@gin.configurable
def peak_flops_per_device(device_kind: Optional[str] = None,
                          override: Optional[float] = None) -> float:
  """Peak FLOP/s of one device: `override` if given, else the table, else measured (CPU,
  once per process)."""
  if override:
    return float(override)
  kind = device_kind or jax.devices()[0].device_kind
  for name, flops in PEAK_FLOPS_PER_DEVICE:
    if name.lower() in kind.lower():
      return flops
  return _measured_cpu_peak_flops()


@functools.cache
def _measured_cpu_peak_flops() -> float:
  """`measure_cpu_peak_flops()` once per process (every train() asks; about 0.1 s)."""
  return measure_cpu_peak_flops()


class MetricsWriter:
  """metrics.jsonl and TensorBoard events of one run (process 0 only)."""

  def __init__(self, workdir: str, resume_step: Optional[int] = None,
               enabled: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, runs.METRICS)
    self._tb = None
    if not enabled:
      return
    self.tb_dir = os.path.join(workdir, 'tensorboard')
    self._opened = 0
    self.truncate(resume_step or 0)

  def truncate(self, step: int) -> None:
    """Keeps only complete lines and TensorBoard events with step <= `step` (the restored
    checkpoint), so that a resumed or rolled-back run records every step once."""
    if not self.enabled:
      return
    if self._tb is not None:
      self._tb.close()
    if os.path.isdir(self.tb_dir):
      truncate_events(self.tb_dir, step)
    # A file name of its own: tensorboardX names files by the second and opens them with
    # 'wb', so a writer opened within the second of the last one would empty its file.
    self._opened += 1
    self._tb = _summary_writer_class()(
        self.tb_dir, filename_suffix=f'.from{step}.{os.getpid()}.{self._opened}')
    if not os.path.exists(self.path):
      return
    kept = []
    with open(self.path) as f:
      for line in f:
        if not line.endswith('\n'):
          break
        try:
          row = json.loads(line)
        except json.JSONDecodeError:
          break
        if row.get('step', 0) <= step:
          kept.append(line)
    write_atomic(self.path, ''.join(kept))

  def write(self, step: int, scalars: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    row = {'step': int(step)}
    row.update({k: _to_python(v) for k, v in scalars.items()})
    runs.append_jsonl(self.path, row)
    for key, value in row.items():
      if key != 'step' and isinstance(value, (int, float)):
        self._tb.add_scalar(key, value, step)

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def _summary_writer_class():
  """tensorboardX's SummaryWriter, imported (only where written) without PyTorch.

  tensorboardX imports torch whenever it is installed, only to accept torch tensors; the
  writer here is given Python floats. That import is most of tensorboardX's: 2.5 s of a
  tiny run's start-up on two idle cores (8 s at a load of 10), paid by every run of a sweep.
  A None in sys.modules makes `import torch` raise ImportError, which tensorboardX handles;
  it is removed right after, so a later `import torch` works."""
  if 'torch' in sys.modules:  # already paid for (or already blocked)
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    return SummaryWriter
  sys.modules['torch'] = None
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  finally:
    del sys.modules['torch']
  return SummaryWriter


def _records(path: str):
  """The payloads of a TFRecord file, stopping at a torn last record."""
  with open(path, 'rb') as f:
    data = f.read()
  at = 0
  while at + 12 <= len(data):
    (length,) = struct.unpack('<Q', data[at:at + 8])
    end = at + 12 + length + 4
    if end > len(data):
      break
    yield data[at + 12:at + 12 + length]
    at = end


def _record(payload: bytes) -> bytes:
  from tensorboardX.record_writer import masked_crc32c  # pylint: disable=g-import-not-at-top
  header = struct.pack('<Q', len(payload))
  return (header + struct.pack('<I', masked_crc32c(header)) + payload +
          struct.pack('<I', masked_crc32c(payload)))


def event_files(tb_dir: str) -> list[str]:
  return sorted(os.path.join(tb_dir, n) for n in os.listdir(tb_dir) if 'tfevents' in n)


def read_events(tb_dir: str) -> list:
  """Every event (tensorboard's Event proto) of the directory's files, in file order."""
  _summary_writer_class()  # imports tensorboardX without torch
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  events = []
  for path in event_files(tb_dir):
    for payload in _records(path):
      event = event_pb2.Event()
      event.ParseFromString(payload)
      events.append(event)
  return events


def truncate_events(tb_dir: str, step: int) -> None:
  """Rewrites the directory's event files as one holding only the events with
  step <= `step`, each (step, tags) once (the first file's name, written to a temporary
  file and renamed), then removes the others. TensorBoard's purge_step only hides later events from TensorBoard
  itself; other readers of the files would still see each replayed step twice."""
  paths = event_files(tb_dir)
  if not paths:
    return
  kept, seen, versioned = [], set(), False
  for event in read_events(tb_dir):
    if event.HasField('file_version'):
      if versioned:
        continue
      versioned = True
    else:
      # (step, tags) seen already: a copy left by a rewrite that stopped before removing
      # the files it had merged.
      key = (event.step, tuple(v.tag for v in event.summary.value))
      if event.step > step or key in seen:
        continue
      seen.add(key)
    kept.append(_record(event.SerializeToString()))
  tmp = paths[0] + '.tmp'
  with open(tmp, 'wb') as f:
    f.write(b''.join(kept))
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, paths[0])
  for path in paths[1:]:
    os.remove(path)


def _to_python(value):
  value = np.asarray(value).item() if np.ndim(value) == 0 else value
  if isinstance(value, float) and not math.isfinite(value):
    return repr(value)  # JSON has no NaN; keep it readable
  return value


def _duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  hours, rest = divmod(seconds, 3600)
  return f'{hours}h{rest // 60:02d}m' if hours else f'{rest // 60}m{rest % 60:02d}s'


class ProgressLine:
  """One-line live progress on stderr: step, loss, tokens/s, ETA."""

  def __init__(self, total_steps: int, stream=None):
    self.total_steps = total_steps
    self.stream = stream or sys.stderr

  def update(self, step: int, loss: float, tokens_per_s: float, steps_per_s: float,
             extra: str = '') -> None:
    eta = (self.total_steps - step) / steps_per_s if steps_per_s > 0 else 0.0
    line = (f'step {step}/{self.total_steps}  loss {loss:.4f}  '
            f'{tokens_per_s:,.0f} tok/s  eta {_duration(eta)}{extra}')
    end = '\r' if self.stream.isatty() else '\n'
    self.stream.write(line + end)
    self.stream.flush()

  def close(self) -> None:
    if self.stream.isatty():
      self.stream.write('\n')
