"""Run in a child process with 8 forced CPU devices; prints one JSON line of results.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m tests.parallel.sharded_checks
"""
import json
import sys
import tempfile

import gin
import jax
import numpy as np

from research import models
from research import parallel
from research.train import optimizers
from research.train import state as state_lib
from research.train import trainer
from tests.train import helpers


def _losses(family: str, mesh_bindings: str) -> list[float]:
  helpers.configure(family, steps=10, extra=mesh_bindings)
  with tempfile.TemporaryDirectory() as workdir:
    trainer.train(workdir)
    return [r['train_loss'] for r in helpers.read_metrics(workdir)]


def _specs(preset: str) -> dict:
  """Sharding specs (and one local shard shape) of parameters and Adam moments."""
  gin.clear_config()  # TransformerConfig is configurable: drop the last run's bindings
  cfg = models.TransformerConfig(vocab_size=64, d_model=32, num_layers=1, num_heads=4,
                                 d_ff=64, max_length=32)
  mesh = parallel.make_mesh(parallel.MeshConfig(data=2, fsdp=2, tensor=2))
  rules = parallel.logical_axis_rules(preset)
  tx, _ = optimizers.make_optimizer(10)
  setup = state_lib.make_state_setup(models.build(cfg), 'decoder', tx, mesh, rules)
  state = setup.init(0)
  layer = state.params['decoder']['layers_0']
  mu = state.opt_state[1][0].mu['decoder']['layers_0']
  pick = {
      'mlp_wi': layer['mlp']['wi']['kernel'],
      'mlp_wo': layer['mlp']['wo']['kernel'],
      'query': layer['attn']['query']['kernel'],
      'out': layer['attn']['out']['kernel'],
      'embedding': state.params['token_embed']['embedding'],
      'norm': layer['mlp_norm']['scale'],
      'mu_mlp_wi': mu['mlp']['wi']['kernel'],
  }
  return {name: {'spec': [list(a) if isinstance(a, tuple) else a
                          for a in x.sharding.spec],
                 'shard_shape': list(x.addressable_shards[0].data.shape),
                 'shape': list(x.shape)}
          for name, x in pick.items()}


def main():
  results = {'device_count': jax.device_count()}
  one = 'MeshConfig.num_devices = 1'
  cube = 'MeshConfig.data = 2\nMeshConfig.fsdp = 2\nMeshConfig.tensor = 2'
  for family in ('decoder', 'encoder_decoder'):
    results[family] = {'one': _losses(family, one), 'cube': _losses(family, cube)}
  results['specs'] = {preset: _specs(preset) for preset in ('fsdp_tensor', 'data_parallel')}
  subset = parallel.make_mesh(parallel.MeshConfig(fsdp=2, num_devices=4))
  results['subset'] = {'shape': dict(subset.shape),
                       'ids': sorted(d.id for d in subset.devices.flat),
                       'first_ids': sorted(d.id for d in jax.devices()[:4])}
  try:
    parallel.make_mesh(parallel.MeshConfig(data=3, fsdp=2, tensor=2))
    results['bad_mesh'] = None
  except parallel.MeshError as e:
    results['bad_mesh'] = str(e)
  print('RESULTS ' + json.dumps(results))


if __name__ == '__main__':
  sys.exit(main())
