"""Optimizers: AdamW with LLM-literature defaults, and Adafactor.

Both are chained after global-norm gradient clipping. Weight decay skips norms and biases
(any parameter with fewer than 2 dimensions, or whose path names a norm, scale or bias),
as in GPT-3, PaLM and LLaMA. The choice is a key in OPTIMIZERS, set from gin:
`make_optimizer.name = 'adafactor'`.
"""
import re
from typing import Any, Callable

import gin
import jax
import optax

from research.train import schedules as schedules_lib

PyTree = Any

# A parameter whose path matches is never decayed, whatever its rank.
_NO_DECAY_PATH = re.compile(r'(^|[/_])(norm|layer_?norm|rms_?norm|ln|scale|bias)', re.I)


def _path_str(path) -> str:
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))))
                  for k in path)


def decay_mask(params: PyTree) -> PyTree:
  """True where weight decay applies: matrices (ndim >= 2) not named as a norm or bias."""
  def one(path, leaf):
    return bool(leaf.ndim >= 2 and not _NO_DECAY_PATH.search(_path_str(path)))
  return jax.tree_util.tree_map_with_path(one, params)


def adamw(learning_rate: optax.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.95,
          eps: float = 1e-8, weight_decay: float = 0.1) -> optax.GradientTransformation:
  # Decoupled decay scaled by the learning rate (Loshchilov & Hutter as in optax/PyTorch).
  return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                     mask=decay_mask)


def adafactor(learning_rate: optax.ScalarOrSchedule, weight_decay: float = 0.0,
              decay_rate: float = 0.8, factored: bool = True,
              momentum: float | None = None) -> optax.GradientTransformation:
  # Clipping is done globally by make_optimizer, so Adafactor's own update clipping is off.
  return optax.adafactor(learning_rate, decay_rate=decay_rate, factored=factored,
                         momentum=momentum, clipping_threshold=None,
                         weight_decay_rate=weight_decay or None,
                         weight_decay_mask=decay_mask)


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    'adamw': adamw,
    'adafactor': adafactor,
}


@gin.configurable
def make_optimizer(total_steps: int, name: str = 'adamw', clip_norm: float | None = 1.0,
                   **kwargs) -> tuple[optax.GradientTransformation, schedules_lib.Schedule]:
  """The optimizer named `name` (with its hyper-parameters from gin), and its schedule.

  Extra keyword arguments (gin: `make_optimizer.weight_decay = 0.01`) go to the optimizer.
  """
  if name not in OPTIMIZERS:
    raise ValueError(f'unknown optimizer {name!r}; known: {", ".join(sorted(OPTIMIZERS))}')
  schedule = schedules_lib.make_schedule(total_steps)
  tx = OPTIMIZERS[name](schedule, **kwargs)
  if clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(clip_norm), tx)
  return tx, schedule
