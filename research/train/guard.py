"""Stability guard: detect bad steps on device, roll back and skip their batches on host.

On device (inside the jitted step), a step whose loss or gradient norm is non-finite, or
whose loss exceeds `spike_factor` times the running mean of recent good losses, applies no
update: the parameters and optimizer state pass through unchanged, so one bad batch can
never poison the state. On host, the loop sees the bad steps at its next sync, restores the
last good checkpoint, and replays the data from there with the offending batches skipped
(what PaLM and OPT did by hand). Each event is counted; more than `max_rollbacks` rollbacks
stop the run with a clear message instead of looping.
"""
import dataclasses

import gin
import jax.numpy as jnp
from flax import struct


class StabilityError(RuntimeError):
  """Too many rollbacks: the run diverges whatever batches are skipped."""


@gin.configurable
@dataclasses.dataclass(frozen=True)
class GuardConfig:
  enabled: bool = True
  spike_factor: float = 3.0     # a loss above spike_factor * running mean is a spike
  ema_decay: float = 0.99       # running mean of good losses (bias-corrected EMA)
  spike_warmup_steps: int = 50  # no spike test before this many good steps
  max_rollbacks: int = 5        # over the whole run; then StabilityError
  skip_after: int = 0           # also skip this many batches after each bad one


@struct.dataclass
class GuardState:
  """Device-side statistics; part of the train state, so it is checkpointed."""
  loss_ema: jnp.ndarray   # fp32 scalar, un-normalized EMA
  good_steps: jnp.ndarray  # int32 scalar
  bad_steps: jnp.ndarray   # int32 scalar, cumulative count of skipped updates

  @classmethod
  def create(cls) -> 'GuardState':
    return cls(loss_ema=jnp.zeros((), jnp.float32), good_steps=jnp.zeros((), jnp.int32),
               bad_steps=jnp.zeros((), jnp.int32))


def assess(state: GuardState, loss, grad_norm, config: GuardConfig):
  """Returns (ok, new_state); traced inside the train step."""
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  if not config.enabled:
    return jnp.asarray(True), state
  mean = state.loss_ema / (1.0 - config.ema_decay ** jnp.maximum(state.good_steps, 1))
  spike = ((state.good_steps >= config.spike_warmup_steps)
           & (loss > config.spike_factor * mean))
  ok = finite & ~spike
  safe_loss = jnp.where(ok, loss, 0.0)
  new = GuardState(
      loss_ema=jnp.where(ok, config.ema_decay * state.loss_ema
                         + (1 - config.ema_decay) * safe_loss, state.loss_ema),
      good_steps=state.good_steps + ok.astype(jnp.int32),
      bad_steps=state.bad_steps + (~ok).astype(jnp.int32))
  return ok, new


def batches_to_skip(bad_batch_indices, config: GuardConfig) -> set[int]:
  """The batch ordinals to skip on replay: each bad one and `skip_after` after it."""
  skip = set()
  for index in bad_batch_indices:
    skip.update(range(index, index + 1 + config.skip_after))
  return skip
