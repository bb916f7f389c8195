"""Loading a trained run for decoding: model config from gin, params from orbax.

A run directory (DESIGN.md) holds `config.gin`, the operative config, and
`checkpoints/`, an orbax CheckpointManager directory. The trainer
(research/train/checkpoints.py) saves each step as two items, `state` (the
TrainState: step, params, opt_state, ...) and `host` (JSON); a checkpoint
saved as one default item holding a pytree with `params` loads too. Only the
params are kept, and every shape is checked against the model that
config.gin describes.
"""
import functools
import os
from typing import Optional

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from research import models
from research.decoding.config import DecodingError

# Items that may hold the params, in the order they are tried.
PARAM_ITEMS = ('state', 'default')


def load_model_config(gin_path: str) -> models.TransformerConfig:
  """The TransformerConfig bound in a run's operative config.

  Bindings of configurables this process has not imported (trainer, data) are
  skipped. Gin's global config is cleared before and after, so an entry point
  must parse its own gin files afterwards.
  """
  if not os.path.isfile(gin_path):
    raise DecodingError(f'no gin config at {gin_path}')
  with gin.unlock_config():
    gin.clear_config()
    try:
      gin.parse_config_file(gin_path, skip_unknown=True)
      return models.TransformerConfig()
    finally:
      gin.clear_config()


def _abstract_params(config: models.TransformerConfig):
  module = models.build(config)
  names = {'decoder': ['decoder_input_tokens'], 'encoder': ['encoder_input_tokens'],
           'encoder_decoder': ['encoder_input_tokens', 'decoder_input_tokens']}
  dummy = {n: jnp.ones((1, 1), jnp.int32) for n in names[config.family]}
  init = functools.partial(module.init, **dummy)
  return nn.meta.unbox(jax.eval_shape(init, jax.random.PRNGKey(0))['params'])


def check_params(config: models.TransformerConfig, params):
  """Raises DecodingError naming the first parameter whose shape differs."""
  expected = jax.tree_util.tree_flatten_with_path(_abstract_params(config))[0]
  got = dict((jax.tree_util.keystr(p), x) for p, x in
             jax.tree_util.tree_flatten_with_path(params)[0])
  for path, leaf in expected:
    name = jax.tree_util.keystr(path)
    if name not in got:
      raise DecodingError(f'checkpoint has no parameter {name} that config.gin needs')
    if tuple(got[name].shape) != tuple(leaf.shape):
      raise DecodingError(f'checkpoint parameter {name} has shape {tuple(got[name].shape)}'
                          f' but config.gin gives {tuple(leaf.shape)}')
  if len(got) != len(expected):
    extra = sorted(set(got) - {jax.tree_util.keystr(p) for p, _ in expected})
    raise DecodingError(f'checkpoint has parameters config.gin does not: {extra[:3]}')


def restore_params(checkpoint_dir: str, step: Optional[int] = None):
  """(params, step) of the latest (or given) checkpoint under `checkpoint_dir`."""
  checkpoint_dir = os.path.abspath(checkpoint_dir)
  if not os.path.isdir(checkpoint_dir):
    raise DecodingError(f'no checkpoint directory at {checkpoint_dir}')
  manager = ocp.CheckpointManager(checkpoint_dir,
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  step = manager.latest_step() if step is None else step
  if step is None or step not in manager.all_steps():
    raise DecodingError(f'no checkpoint{"" if step is None else f" at step {step}"} in '
                        f'{checkpoint_dir} (steps: {list(manager.all_steps())})')
  step_dir = os.path.join(checkpoint_dir, str(step))
  items = [i for i in PARAM_ITEMS if os.path.isdir(os.path.join(step_dir, i))]
  if not items:
    raise DecodingError(f'checkpoint {step_dir} has none of the items {PARAM_ITEMS}')
  from research.train import checkpoints  # pylint: disable=g-import-not-at-top
  try:
    with checkpoints.late_tracebacks_dropped_on_error():
      restored = manager.restore(step, args=ocp.args.Composite(
          **{items[0]: ocp.args.StandardRestore()}))[items[0]]
  except Exception as e:  # orbax, TensorStore and json raise many types; all mean this
    raise DecodingError(str(checkpoints.unreadable(checkpoint_dir, step, e))) from e
  manager.close()
  if not isinstance(restored, dict) or 'params' not in restored:
    raise DecodingError(f'checkpoint {step_dir}/{items[0]} holds no `params` entry')
  return jax.tree.map(jnp.asarray, restored['params']), step


def load_run(workdir: str, step: Optional[int] = None):
  """(model config, params, step) of a run directory, shapes checked."""
  config = load_model_config(os.path.join(workdir, 'config.gin'))
  params, step = restore_params(os.path.join(workdir, 'checkpoints'), step)
  check_params(config, params)
  return config, params, step
