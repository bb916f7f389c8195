"""Learning-rate schedules and the optional batch-size ramp.

A schedule is `step -> learning rate` (an optax schedule, jittable). The choice is a key in
SCHEDULES, set from gin: `make_schedule.name = 'inverse_sqrt'`.
"""
import math
from typing import Callable

import gin
import jax.numpy as jnp

from research import cli

Schedule = Callable[[jnp.ndarray], jnp.ndarray]


def warmup_cosine(peak: float, warmup_steps: int, total_steps: int,
                  final_fraction: float = 0.1) -> Schedule:
  """Linear warm-up from 0 to `peak`, then cosine decay to `final_fraction * peak`.

  lr(s) = peak * s / warmup for s < warmup; after, with t = (s - warmup) / (total - warmup)
  clipped to [0, 1]: lr = peak * (f + (1 - f) * (1 + cos(pi t)) / 2).
  """
  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    warm = peak * step / max(warmup_steps, 1)
    t = jnp.clip((step - warmup_steps) / max(total_steps - warmup_steps, 1), 0.0, 1.0)
    cosine = peak * (final_fraction + (1 - final_fraction) * 0.5 * (1 + jnp.cos(jnp.pi * t)))
    return jnp.where(step < warmup_steps, warm, cosine)
  return schedule


def constant(peak: float, warmup_steps: int = 0, total_steps: int = 0) -> Schedule:
  """Linear warm-up (if any) then `peak` for ever."""
  del total_steps
  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    return jnp.where(step < warmup_steps, peak * step / max(warmup_steps, 1), peak)
  return schedule


def inverse_sqrt(peak: float, warmup_steps: int, total_steps: int = 0) -> Schedule:
  """Linear warm-up, then peak * sqrt(warmup / step) (the original Transformer's decay)."""
  del total_steps
  warmup = max(warmup_steps, 1)
  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    return jnp.where(step < warmup, peak * step / warmup,
                     peak * jnp.sqrt(warmup / jnp.maximum(step, 1.0)))
  return schedule


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    'warmup_cosine': warmup_cosine,
    'constant': constant,
    'inverse_sqrt': inverse_sqrt,
}


@gin.configurable
def make_schedule(total_steps: int, name: str = 'warmup_cosine', peak: float = 1e-3,
                  warmup_steps: int = 100, final_fraction: float = 0.1) -> Schedule:
  """The learning-rate schedule named `name`; `total_steps` is TRAIN_STEPS."""
  # At zero or below nothing would be learned (or the loss pushed up) without an error.
  cli.check_positive(**{'make_schedule.peak (the learning rate)': peak})
  if name not in SCHEDULES:
    raise ValueError(f'unknown schedule {name!r}; known: {", ".join(sorted(SCHEDULES))}')
  kwargs = dict(peak=peak, warmup_steps=warmup_steps, total_steps=total_steps)
  if name == 'warmup_cosine':
    kwargs['final_fraction'] = final_fraction
  return SCHEDULES[name](**kwargs)


@gin.configurable
def batch_size_ramp(step: int, start_multiple: int = 1, final_multiple: int = 1,
                    ramp_steps: int = 0) -> int:
  """How many pipeline batches make up the global batch at `step` (GPT-3-style ramp).

  Grows linearly from `start_multiple` to `final_multiple` over `ramp_steps`, in whole
  multiples, so only a handful of batch shapes (and compilations) ever occur. The default
  (1, 1) is no ramp.
  """
  if ramp_steps <= 0 or step >= ramp_steps:
    return final_multiple
  frac = step / ramp_steps
  return max(1, int(math.floor(start_multiple + frac * (final_multiple - start_multiple))))

