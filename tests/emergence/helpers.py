"""A tiny arithmetic model trained in-test (optax, no trainer), and fake run directories
in the trainer's layout (run_info.json, orbax checkpoints/<step>/state, completion marker)."""
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import models
from research.data import arithmetic

TINY = models.TransformerConfig(family='decoder', vocab_size=arithmetic.VOCAB_SIZE, d_model=32,
                                num_layers=2, num_heads=2, d_ff=96, max_length=96)
TRAIN_LENGTHS = (1, 2)


def train_tiny(steps: int = 250, seed: int = 0, snapshots=()):
  """(config, final params, {step: params}) after `steps` Adam steps on L in {1, 2}."""
  module = models.build(TINY)
  source = arithmetic.ArithmeticSource(64, 60, seed, lengths=TRAIN_LENGTHS, mul_fraction=0.0)
  batch = next(source)
  params = nn.meta.unbox(module.init(jax.random.PRNGKey(seed),
                                     decoder_input_tokens=batch['decoder_input_tokens'])['params'])
  tx = optax.adam(3e-3)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, batch):
    def loss_fn(p):
      logits = module.apply({'params': p}, decoder_input_tokens=batch['decoder_input_tokens'],
                            decoder_segment_ids=batch['decoder_segment_ids'],
                            decoder_positions=batch['decoder_positions'])
      losses = optax.softmax_cross_entropy_with_integer_labels(
          logits, batch['decoder_target_tokens'])
      w = batch['decoder_loss_weights']
      return jnp.sum(losses * w) / jnp.sum(w)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt = tx.update(grads, opt)
    return optax.apply_updates(params, updates), opt, loss

  kept = {}
  for i in range(1, steps + 1):
    params, opt, _ = step(params, opt, next(source))
    if i in snapshots:
      kept[i] = params
  return TINY, params, kept


def write_run(run_dir: str, config, params_by_step: dict, *, n_params: int, seed: int = 0,
              completed: bool = True):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  os.makedirs(run_dir, exist_ok=True)
  import dataclasses  # pylint: disable=g-import-not-at-top
  with open(os.path.join(run_dir, 'run_info.json'), 'w') as f:
    json.dump({'architecture': dataclasses.asdict(config), 'n_params': n_params,
               'n_params_nonembed': n_params - 16 * config.d_model, 'seed': seed}, f)
  checkpointer = ocp.StandardCheckpointer()
  for step, params in params_by_step.items():
    path = os.path.abspath(os.path.join(run_dir, 'checkpoints', str(step), 'state'))
    checkpointer.save(path, {'step': np.int32(step), 'params': params})
  checkpointer.wait_until_finished()
  if completed:
    with open(os.path.join(run_dir, 'COMPLETED'), 'w') as f:
      json.dump({'step': max(params_by_step)}, f)
