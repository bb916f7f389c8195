"""The trainer's compiled step for one model config, fed a synthetic batch: what the
benchmarks time and measure, built exactly as research/train/trainer.py builds it."""
import dataclasses
from typing import Any, Callable

import numpy as np

from research import models
from research import parallel
from research.train import optimizers
from research.train import state as state_lib
from research.train import step as step_lib
from research.train import synthetic
from research.train import tasks


@dataclasses.dataclass
class StandaloneStep:
  module: Any
  setup: Any               # state_lib.StateSetup: init, abstract state, shardings
  train_fn: Callable       # compiled (state, batch) -> (state, metrics)
  batch_np: dict           # the host batch, as the trainer feeds it
  shardings: dict          # the batch's shardings on the mesh
  mesh: Any
  rules: Any


def build(cfg: models.TransformerConfig, batch_size: int, lengths: dict,
          seed: int = 0) -> StandaloneStep:
  mesh = parallel.make_mesh(parallel.MeshConfig())
  rules = parallel.logical_axis_rules()
  module = models.build(cfg)
  tx, schedule = optimizers.make_optimizer(1000)
  setup = state_lib.make_state_setup(module, cfg.family, tx, mesh, rules)
  step_config = step_lib.StepConfig()
  train_fn = step_lib.compile_train_step(
      step_lib.make_train_step(module, cfg.family, tx, schedule, cfg.z_loss, step_config),
      setup.shardings, mesh, rules, step_config.constrain_activations)
  batch_np = tasks.without_empty_prefix(synthetic.make_batch(
      cfg.family, np.random.default_rng(seed), batch_size, lengths, cfg.vocab_size))
  return StandaloneStep(module, setup, train_fn, batch_np,
                        parallel.batch_shardings(batch_np, mesh, rules), mesh, rules)
