r"""Compiled peak memory of the train step for each per-block remat policy, scan on and off.

  python benchmarks/remat_memory.py --gin_file=gin_configs/runs/bench_350m_gpu.gin \
      --gin_bindings='BATCH_SIZE = 8' [--policies=none,full] [--scan=false,true]

The model, optimizer, sharded state and step are built by research/train as the trainer
builds them (as benchmarks/train_step.py does), then the step is lowered from abstract
shapes and compiled, never run: nothing is allocated, so a model larger than the machine's
memory can be measured on the backend at hand. XLA's buffer assignment
(`compiled.memory_analysis()`) gives the figures:

  peak = argument + output - alias + temp

argument: the train state and the batch; output: the new state and the metrics; alias: the
outputs that reuse a donated argument's buffer (the state is donated, so it is counted
once); temp: everything live inside the step (activations kept for the backward pass,
gradients, the optimizer's intermediates). The model's dtype and attention implementation
are the config's; what 'auto' and 'cudnn' attention run depends on the backend.
"""
import os
import time

from absl import flags


PROG = 'remat_memory.py'
_GIN_FILE = flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s).')
_GIN_BINDINGS = flags.DEFINE_multi_string('gin_bindings', [], 'Extra gin bindings.')
_POLICIES = flags.DEFINE_list(
    'policies', None, 'TransformerConfig.remat_policy values to compile; default: all.')
_SCAN = flags.DEFINE_list('scan', ['false', 'true'],
                          'TransformerConfig.scan_layers values to compile.')

FIELDS = ('argument', 'output', 'alias', 'temp')
GIB = 2.0 ** 30


def _load_config():
  """(TransformerConfig, batch size, feature lengths); a bad flag or gin config exits 2."""
  import gin
  from research import cli, models
  from research.models import config as config_lib
  from research.train import trainer  # pylint: disable=unused-import  (its configurables)
  cli.require(PROG, gin_file=_GIN_FILE.value)
  for path in _GIN_FILE.value:
    if not os.path.exists(path):
      cli.usage_error(PROG, f'--gin_file {path!r} does not exist')
  policies = _POLICIES.value or list(config_lib.REMAT_POLICIES)
  for policy in policies:
    if policy not in config_lib.REMAT_POLICIES:
      cli.usage_error(PROG, f'--policies: {policy!r} is not one of '
                      f'{", ".join(config_lib.REMAT_POLICIES)}')
  scans = []
  for value in _SCAN.value:
    if value.lower() not in ('true', 'false'):
      cli.usage_error(PROG, f'--scan: {value!r} is neither true nor false')
    scans.append(value.lower() == 'true')
  try:
    gin.parse_config_files_and_bindings(_GIN_FILE.value, _GIN_BINDINGS.value)
    cfg = models.TransformerConfig()
    batch_size = gin.query_parameter('%BATCH_SIZE')
    lengths = dict(gin.query_parameter('%TASK_FEATURE_LENGTHS'))
  except Exception as e:  # gin raises many types; all mean "this config is wrong"
    cli.usage_error(PROG, f'bad gin config: {e}')
  return cfg, batch_size, lengths, policies, scans


def compiled_memory(cfg, batch_size: int, lengths: dict) -> dict:
  """{field: bytes} of the compiled train step (FIELDS, 'peak'), and 'compile_s'."""
  import jax
  from research.train import standalone
  built = standalone.build(cfg, batch_size, lengths)
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=built.shardings[k])
           for k, v in built.batch_np.items()}
  start = time.perf_counter()
  stats = built.train_fn.lower(built.setup.abstract, batch).compile().memory_analysis()
  result = {name: getattr(stats, f'{name}_size_in_bytes') for name in FIELDS}
  result['peak'] = (result['argument'] + result['output'] - result['alias']
                    + result['temp'])
  result['compile_s'] = time.perf_counter() - start
  return result


def main(argv):
  del argv
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  import jax
  from research import models
  cfg, batch_size, lengths, policies, scans = _load_config()
  print(f'model: {cfg.family}, {models.count_params(cfg)["total"]:,} params, '
        f'{cfg.num_layers} layers, batch {batch_size}, lengths {lengths}, dtype {cfg.dtype} '
        f'(params {cfg.param_dtype}), attention {cfg.attention_impl}, backend '
        f'{jax.default_backend()} ({jax.devices()[0].device_kind})')
  print('peak = argument + output - alias + temp (GiB); ratio = peak / the first row\'s')
  header = (f'{"remat_policy":<14}{"scan":<7}' + ''.join(f'{f:>10}' for f in FIELDS)
            + f'{"peak":>10}{"ratio":>8}{"compile_s":>11}')
  print(header)
  base = None
  for scan in scans:
    for policy in policies:
      got = compiled_memory(cfg.replace(remat_policy=policy, scan_layers=scan),
                            batch_size, lengths)
      base = base or got['peak']
      print(f'{policy:<14}{str(scan).lower():<7}'
            + ''.join(f'{got[f] / GIB:>10.2f}' for f in FIELDS)
            + f'{got["peak"] / GIB:>10.2f}{got["peak"] / base:>8.2f}'
            + f'{got["compile_s"]:>11.1f}', flush=True)


if __name__ == '__main__':
  from research import cli  # pylint: disable=g-import-not-at-top
  cli.run(main, PROG)
