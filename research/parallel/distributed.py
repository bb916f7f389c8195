"""Multi-host start-up: `jax.distributed.initialize` and per-host data sharding.

Single-host runs never call `initialize`; on a pod / multi-node GPU job the entry point
calls it (behind a flag) before touching any device. Each host then loads only its rows
of the global batch: shard `process_index()` of `process_count()`.
"""
import dataclasses
from typing import Optional

import gin
import jax


@gin.configurable
def initialize(coordinator_address: Optional[str] = None,
               num_processes: Optional[int] = None,
               process_id: Optional[int] = None) -> None:
  """Joins the multi-host job. With no arguments, JAX auto-detects (TPU pods, SLURM)."""
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)


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
