"""Multi-host start-up: `jax.distributed.initialize`, its checks, and agreement across hosts.

Single-host runs never call `initialize`; on a pod / multi-node GPU job the entry point
calls it (behind a flag) before touching any device. Each host then loads only its rows
of the global batch: shard `process_index()` of `process_count()`.

`initialize` refuses what would otherwise hang or abort later: a process id outside
[0, num_processes), no coordinator where none can be detected. On CPU the processes talk
through gloo's collectives, which it selects unless another implementation was chosen.
`check_same_config` compares a hash of the configuration across processes right after,
and `any_process` is the OR of a flag over processes (the preemption request, so that every
host saves the same step).
"""
import dataclasses
import hashlib
from typing import Optional

import gin
import jax
import numpy as np


class DistributedError(ValueError):
  """The multi-host job cannot start as configured (a usage error: exit 2)."""


@gin.configurable
def initialize(coordinator_address: Optional[str] = None,
               num_processes: Optional[int] = None,
               process_id: Optional[int] = None,
               initialization_timeout: int = 300) -> None:
  """Joins the multi-host job. With no arguments, JAX auto-detects (TPU pods, SLURM)."""
  if num_processes is not None and num_processes < 1:
    raise DistributedError(f'initialize.num_processes must be >= 1, got {num_processes}')
  if process_id is not None and (process_id < 0 or (
      num_processes is not None and process_id >= num_processes)):
    raise DistributedError(
        f'initialize.process_id {process_id} is outside [0, {num_processes})'
        if num_processes is not None else
        f'initialize.process_id must be >= 0, got {process_id}')
  # CPU devices of different processes need a collectives implementation; 'none' would
  # fail at the first cross-process computation.
  if jax.config.jax_cpu_collectives_implementation in (None, '', 'none'):
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  try:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id,
                               initialization_timeout=initialization_timeout)
  except ValueError as e:
    if coordinator_address is None and 'coordinator' in str(e):
      raise DistributedError(
          '--multihost: no coordinator given and none detected (no TPU pod, SLURM or '
          'other cluster environment); bind initialize.coordinator_address, '
          'initialize.num_processes and initialize.process_id') from e
    raise DistributedError(f'--multihost: {e}') from e


def _all_processes(values: np.ndarray) -> np.ndarray:
  """[process_count, ...] : every process's `values` (a collective: all must call it)."""
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return np.asarray(multihost_utils.process_allgather(values)).reshape(
      (jax.process_count(),) + values.shape)


def config_digest(text: str) -> np.ndarray:
  """Eight bytes of the SHA-256 of `text`, as two int32 (what a collective carries)."""
  return np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], np.int32).copy()


def first_differing_process(text: str) -> Optional[int]:
  """The first process whose `text` differs from process 0's, or None. A collective."""
  if jax.process_count() == 1:
    return None
  digests = _all_processes(config_digest(text))
  differ = [p for p in range(len(digests)) if not np.array_equal(digests[p], digests[0])]
  return differ[0] if differ else None


def check_same_config(text: str) -> None:
  """Raises DistributedError on every process unless all processes passed the same text
  (the configuration with the per-process bindings left out). A collective."""
  differ = first_differing_process(text)
  if differ is not None:
    raise DistributedError(
        f'the gin config differs across processes: process {differ} has another '
        f'config than process 0 (compare their --gin_file and --gin_bindings)')


def any_process(flag: bool) -> bool:
  """True on every process if `flag` is true on any (one process: `flag`). A collective."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(_all_processes(np.array([int(bool(flag))], np.int32)).any())


@dataclasses.dataclass(frozen=True)
class HostShard:
  """Which slice of every global batch this process loads."""
  index: int
  count: int

  def local_batch_size(self, global_batch_size: int) -> int:
    if global_batch_size % self.count:
      raise ValueError(f'global batch size {global_batch_size} is not divisible by the '
                       f'{self.count} processes')
    return global_batch_size // self.count


def host_shard() -> HostShard:
  return HostShard(index=jax.process_index(), count=jax.process_count())
