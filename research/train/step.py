"""The pure train step, and the train and eval steps compiled once with explicit shardings
(the pure eval step is research/train/evaluation.py).

`train_step(state, batch) -> (state, metrics)`: the dropout key is the base key folded with
the step number, so a resumed run draws the same keys; gradient accumulation scans over
micro-batches; the stability guard decides on device whether the update is applied; the
state is donated. Metrics stay on device until the loop fetches them.
"""
import contextlib
import dataclasses
from typing import Any, Callable

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from research import parallel
from research.models import losses
from research.train import guard as guard_lib
from research.train import tasks
from research.train.state import TrainState

PyTree = Any


@gin.configurable
@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Rematerialization is not here but per block in the model
  (TransformerConfig.remat_policy): a checkpoint around the whole loss recomputes the
  forward without lowering the peak."""
  num_microbatches: int = 1   # gradient accumulation: the batch is split this many ways
  # Apply the models' activation constraints (nn.with_logical_constraint) under the mesh,
  # so activations are laid out by the same rules table as the parameters.
  constrain_activations: bool = True

  def __post_init__(self):
    if self.num_microbatches < 1:
      raise ValueError(f'num_microbatches must be >= 1, got {self.num_microbatches}')


def _split_microbatches(batch, num_microbatches: int):
  """[B, ...] -> [m, B/m, ...], micro-batch j = rows j, j+m, ... so each stays on-device."""
  def split(x):
    rows = x.shape[0]
    if rows % num_microbatches:
      raise ValueError(f'batch of {rows} rows does not split into {num_microbatches} '
                       'micro-batches')
    x = x.reshape((rows // num_microbatches, num_microbatches) + x.shape[1:])
    return jnp.swapaxes(x, 0, 1)
  return jax.tree.map(split, batch)


def _loss_sums(module: nn.Module, family: str, z_loss: float, params, batch, rng,
               deterministic: bool = False):
  """Sums over the batch: (objective incl. z-loss, z-loss, weights, correct tokens)."""
  features = tasks.FAMILY_FEATURES[family]
  logits = module.apply({'params': params}, **tasks.model_inputs(family, batch),
                        deterministic=deterministic, rngs={'dropout': rng})
  targets, weights = batch[features.targets], batch[features.weights]
  loss_sum, z_sum, weight_sum = losses.cross_entropy_loss(logits, targets, weights, z_loss)
  correct = jnp.sum((first_argmax(logits) == targets) * weights.astype(jnp.float32))
  return loss_sum, (z_sum, weight_sum, correct)


def first_argmax(x):
  """jnp.argmax over the last axis (the first index of the largest value) as two plain
  reductions: XLA:CPU runs argmax's variadic (value, index) reduce as a slow loop (3.5
  against 0.9 ms on the CPU benchmark's [16, 256, 384] logits), and the max is shared
  with the loss's logsumexp."""
  largest = jnp.max(x, -1, keepdims=True)
  index = jnp.arange(x.shape[-1], dtype=jnp.int32)
  return jnp.min(jnp.where(x == largest, index, x.shape[-1]), -1)


def make_train_step(module: nn.Module, family: str, tx: optax.GradientTransformation,
                    schedule: Callable, z_loss: float = 0.0,
                    config: StepConfig = StepConfig(),
                    guard_config: guard_lib.GuardConfig = guard_lib.GuardConfig()):
  """The pure (uncompiled) step; `compile_train_step` jits it."""
  sums = _loss_sums

  def micro_grads(params, micro, rng, weight_total):
    def objective(p):
      loss_sum, aux = sums(module, family, z_loss, p, micro, rng)
      return loss_sum / weight_total, (loss_sum, aux)
    (_, (loss_sum, (z_sum, weight_sum, correct))), grads = jax.value_and_grad(
        objective, has_aux=True)(params)
    return grads, jnp.stack([loss_sum, z_sum, weight_sum, correct])

  def train_step(state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    weights = batch[tasks.FAMILY_FEATURES[family].weights].astype(jnp.float32)
    # Normalize by the whole batch's weight so accumulation equals one big batch.
    weight_total = jnp.maximum(jnp.sum(weights), 1.0)
    if config.num_microbatches == 1:
      grads, totals = micro_grads(state.params, batch, rng, weight_total)
    else:
      micro = _split_microbatches(batch, config.num_microbatches)
      def body(carry, xs):
        grads_acc, totals_acc = carry
        micro_batch, index = xs
        grads, totals = micro_grads(state.params, micro_batch,
                                    jax.random.fold_in(rng, index), weight_total)
        return (jax.tree.map(jnp.add, grads_acc, grads), totals_acc + totals), None
      zeros = (jax.tree.map(jnp.zeros_like, state.params), jnp.zeros((4,), jnp.float32))
      (grads, totals), _ = jax.lax.scan(
          body, zeros, (micro, jnp.arange(config.num_microbatches)))
    loss_sum, z_sum, weight_sum, correct = totals
    loss = loss_sum / jnp.maximum(weight_sum, 1.0)
    grad_norm = optax.global_norm(grads)
    ok, guard = guard_lib.assess(state.guard, loss, grad_norm, guard_config)

    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # A bad step leaves parameters and optimizer state exactly as they were.
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
    new_state = state.replace(step=state.step + 1, params=keep(params, state.params),
                              opt_state=keep(opt_state, state.opt_state), guard=guard)
    denom = jnp.maximum(weight_sum, 1.0)
    metrics = {
        'train_loss': (loss_sum - z_sum) / denom,  # cross-entropy per target token
        'train_z_loss': z_sum / denom,
        'train_accuracy': correct / denom,
        'train_weight': weight_sum,
        'grad_norm': grad_norm,
        'learning_rate': schedule(state.step),
        'guard_ok': ok,
    }
    return new_state, metrics

  return train_step


def make_multi_step(train_step, steps_per_call: int):
  """Up to `steps_per_call` train steps in one call: `(state, batches, count) -> (state,
  metrics)`, where `batches` stacks `steps_per_call` batches on a new leading axis and the
  first `count` of them are trained on, in order; `metrics[name][i]` is step i's (rows from
  `count` on are zeros). For tiny models a step is a few milliseconds of compute, and the
  host's work per call (dispatch, device_put of the batch, Python bookkeeping) is
  comparable; one call per several steps pays it once. `count` is a traced scalar, so the
  shorter groups that end at a log, eval or checkpoint step reuse the same program."""
  def multi_step(state: TrainState, batches, count):
    first = jax.tree.map(lambda x: x[0], batches)
    shapes = jax.eval_shape(train_step, state, first)[1]
    buffers = jax.tree.map(lambda s: jnp.zeros((steps_per_call,) + s.shape, s.dtype), shapes)

    def body(i, carry):
      state, buffers = carry
      batch = jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False),
                           batches)
      state, metrics = train_step(state, batch)
      buffers = jax.tree.map(lambda b, m: jax.lax.dynamic_update_index_in_dim(b, m, i, 0),
                             buffers, metrics)
      return state, buffers

    return jax.lax.fori_loop(0, count, body, (state, buffers))

  return multi_step


def _with_rules(fn, mesh: Mesh, rules, constrain_activations: bool):
  """Traces `fn` with the logical-axis rules (and the mesh, for activation constraints)."""
  def wrapped(*args):
    with contextlib.ExitStack() as stack:
      if constrain_activations:
        stack.enter_context(jax.sharding.use_abstract_mesh(mesh.abstract_mesh))
      stack.enter_context(nn.logical_axis_rules(rules))
      return fn(*args)
  return wrapped


def compile_train_step(train_step, state_shardings: TrainState, mesh: Mesh, rules,
                       constrain_activations: bool = False):
  """One jax.jit with explicit in/out shardings and the state donated."""
  batch_sharding = NamedSharding(mesh, parallel.batch_spec(rules))
  replicated = NamedSharding(mesh, P())
  return jax.jit(_with_rules(train_step, mesh, rules, constrain_activations),
                 in_shardings=(state_shardings, batch_sharding),
                 out_shardings=(state_shardings, replicated),
                 donate_argnums=(0,))


def compile_multi_step(multi_step, state_shardings: TrainState, mesh: Mesh, rules,
                       constrain_activations: bool = False):
  """`compile_train_step` for `make_multi_step`'s function: the stacked batches are
  sharded like one batch on their second axis, the step count is replicated."""
  stacked_sharding = NamedSharding(mesh, P(None, *parallel.batch_spec(rules)))
  replicated = NamedSharding(mesh, P())
  return jax.jit(_with_rules(multi_step, mesh, rules, constrain_activations),
                 in_shardings=(state_shardings, stacked_sharding, replicated),
                 out_shardings=(state_shardings, replicated),
                 donate_argnums=(0,))


def compile_eval_step(eval_step, params_shardings, mesh: Mesh, rules,
                      constrain_activations: bool = False):
  batch_sharding = NamedSharding(mesh, parallel.batch_spec(rules))
  return jax.jit(_with_rules(eval_step, mesh, rules, constrain_activations),
                 in_shardings=(params_shardings, batch_sharding),
                 out_shardings=NamedSharding(mesh, P()))
