"""The train state and its creation: shapes first, then shardings, then one jitted init.

`TrainState` is everything a resumed run needs from the device: step, parameters, optimizer
state, the base PRNG key (raw uint32 data, so checkpoints are plain arrays) and the
stability guard's statistics. The data position lives beside it in the checkpoint.
"""
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from research import parallel
from research.train import guard as guard_lib
from research.train import tasks

PyTree = Any


@struct.dataclass
class TrainState:
  step: jnp.ndarray        # int32 scalar: updates attempted so far
  params: PyTree
  opt_state: PyTree
  rng: jnp.ndarray         # uint32[2]: base key; each step folds in its step number
  guard: guard_lib.GuardState


@dataclasses.dataclass(frozen=True)
class StateSetup:
  """What the loop needs to create, shard, save and restore the state."""
  abstract: TrainState      # ShapeDtypeStructs carrying their shardings
  shardings: TrainState     # NamedShardings, same structure
  boxed_params: PyTree      # abstract params with their logical names (for tests and logs)

  def init(self, seed: int) -> TrainState:
    return self._init_fn(jnp.asarray(seed, jnp.uint32))

  _init_fn: Any = None


def _dummy_inputs(family: str) -> dict[str, jnp.ndarray]:
  # Parameter shapes do not depend on batch or length, so a 1x1 example suffices.
  return {name: jnp.ones((1, 1), jnp.int32) for name in tasks.FAMILY_FEATURES[family].tokens}


def make_state_setup(module: nn.Module, family: str, tx: optax.GradientTransformation,
                     mesh: Mesh, rules) -> StateSetup:
  """Derives shapes (eval_shape) and shardings, and returns a jitted sharded init."""
  def init_boxed(seed):
    key = jax.random.PRNGKey(seed)
    # Constraints are no-ops without active rules; shardings come from out_shardings.
    variables = module.init({'params': key, 'dropout': key}, **_dummy_inputs(family),
                            deterministic=True)
    return variables['params']

  def init_state(seed):
    params = nn.meta.unbox(init_boxed(seed))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=tx.init(params),
                      rng=jax.random.PRNGKey(seed + jnp.uint32(1)),
                      guard=guard_lib.GuardState.create())

  seed0 = jax.ShapeDtypeStruct((), jnp.uint32)
  boxed = jax.eval_shape(init_boxed, seed0)
  abstract = jax.eval_shape(init_state, seed0)
  params_sh = parallel.param_shardings(boxed, mesh, rules)
  replicated = NamedSharding(mesh, P())
  shardings = TrainState(
      step=replicated, params=params_sh,
      opt_state=parallel.shardings_like_params(abstract.opt_state, abstract.params,
                                               params_sh, mesh),
      rng=replicated,
      guard=jax.tree.map(lambda _: replicated, abstract.guard))
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, shardings)
  init_fn = jax.jit(init_state, out_shardings=shardings)
  return StateSetup(abstract=abstract, shardings=shardings, boxed_params=boxed,
                    _init_fn=init_fn)
