"""Checkpoints with orbax: train state plus the host-side position of the data.

Each checkpoint holds two items: `state` (the TrainState, restored straight into its
shardings) and `host` (JSON: the data iterator's state, the batches drawn, the batches to
skip, the guard's counters). Orbax writes each step into a temporary directory and renames
it when complete, so a SIGKILL mid-save leaves the previous checkpoint intact.
"""
import dataclasses
import os
from typing import Any, Optional

import gin
import orbax.checkpoint as ocp

from research.runs import CheckpointError, late_tracebacks_dropped_on_error, unreadable  # noqa: F401
from research.train.state import TrainState


@gin.configurable
@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  every_steps: int = 1000   # save every this many steps (and at the end, and on SIGTERM)
  keep: int = 3             # most recent checkpoints kept
  async_save: bool = True   # write in a background thread while training continues


class Checkpointer:
  """Thin wrapper over orbax's CheckpointManager for (state, host) pairs."""

  def __init__(self, directory: str, config: CheckpointConfig = CheckpointConfig()):
    self.config = config
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.keep, create=True,
        enable_async_checkpointing=config.async_save,
        # Every save is an explicit decision of the loop (periodic, rollback point,
        # preemption); the manager should not second-guess it.
        save_interval_steps=1)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=('state', 'host'))

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state: TrainState, host: dict[str, Any]) -> None:
    if step in self.manager.all_steps():
      return
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    host=ocp.args.JsonSave(host)),
                      force=True)

  def restore(self, step: int, abstract_state: TrainState) -> tuple[TrainState, dict]:
    """Restores onto the shardings carried by `abstract_state`'s ShapeDtypeStructs."""
    self.manager.wait_until_finished()
    try:
      with late_tracebacks_dropped_on_error():
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                          host=ocp.args.JsonRestore()))
    except Exception as e:  # orbax, TensorStore and json raise many types; all mean this
      raise unreadable(self.directory, step, e) from e
    return restored['state'], restored['host']

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
