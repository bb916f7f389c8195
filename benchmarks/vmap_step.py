r"""Is a tiny model's train step bound by per-step overhead or by its work per token?

  python benchmarks/vmap_step.py --sizes=1x8,1x32,2x64 --batch=8 --models=4

For each size (layers x width, heads of 8, d_ff = 4 d, the main job's byte vocabulary and
128-byte rows) it times, in turns so that the machine's drift cancels:
- one model's step at --batch rows,
- one model's step at --models x --batch rows (a larger batch),
- --models models of that shape in one jitted step (`jax.vmap` over the train state and
  over --models batches of --batch rows: seeds or learning rates trained together),
and prints milliseconds per call and the gain in useful FLOP/s (6N per token) of the last
two against one model: if per-step overhead dominated, both would approach --models.
docs/performance.md has what it showed on the 2-core machine.
"""
import statistics

from absl import flags
import numpy as np

from research import cli
from research import timing

PROG = 'vmap_step.py'
_SIZES = flags.DEFINE_list('sizes', ['1x8', '1x32', '2x64'], 'Sizes as LAYERSxWIDTH.')
_BATCH = flags.DEFINE_integer('batch', 8, 'Rows of 128 bytes per model and step.')
_MODELS = flags.DEFINE_integer('models', 4, 'Models per vmapped step (and the batch '
                               'multiple of the larger-batch step).')
_CALLS = flags.DEFINE_integer('calls', 20, 'Timed calls of each variant per round.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Rounds of the three variants, in turns.')
LENGTH, VOCAB = 128, 384


def _parse_size(text: str) -> tuple[int, int]:
  try:
    layers, width = (int(v) for v in text.lower().split('x'))
  except ValueError:
    cli.usage_error(PROG, f'--sizes wants LAYERSxWIDTH entries such as 1x8, got {text!r}')
  if layers < 1 or width < 1:
    cli.usage_error(PROG, f'--sizes entries must be positive, got {text!r}')
  return layers, width


def variants(layers: int, width: int, batch: int, models: int) -> dict:
  """{name: a synchronized call} for one size, built as the trainer builds a step."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from research import models as models_lib
  from research.train import guard as guard_lib
  from research.train import optimizers, synthetic, tasks
  from research.train import state as state_lib
  from research.train import step as step_lib

  cfg = models_lib.TransformerConfig(family='decoder', vocab_size=VOCAB, d_model=width,
                                     num_layers=layers, num_heads=max(1, width // 8),
                                     d_ff=4 * width, max_length=LENGTH)
  module = models_lib.build(cfg)
  tx, schedule = optimizers.make_optimizer(1000)
  train_step = step_lib.make_train_step(module, 'decoder', tx, schedule, cfg.z_loss)

  def init(seed):
    key = jax.random.PRNGKey(seed)
    params = nn.meta.unbox(module.init({'params': key, 'dropout': key},
                                       **state_lib._dummy_inputs('decoder'),  # pylint: disable=protected-access
                                       deterministic=True)['params'])
    return state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                opt_state=tx.init(params), rng=jax.random.PRNGKey(seed + 1),
                                guard=guard_lib.GuardState.create())

  def batch_of(rows, seed=0):
    return {k: jnp.asarray(v) for k, v in tasks.without_empty_prefix(synthetic.make_batch(
        'decoder', np.random.default_rng(seed), rows, {'targets': LENGTH}, VOCAB)).items()}

  single = jax.jit(train_step, donate_argnums=0)
  vmapped = jax.jit(jax.vmap(train_step), donate_argnums=0)
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs),
                         *[batch_of(batch, seed) for seed in range(models)])
  setups = {'one model': (single, init(0), batch_of(batch)),
            f'batch x{models}': (single, init(0), batch_of(batch * models)),
            f'vmap x{models}': (vmapped, jax.vmap(init)(jnp.arange(models)), stacked)}
  calls = {}
  for name, (fn, state, data) in setups.items():
    holder = {'state': state}

    def call(fn=fn, holder=holder, data=data):
      holder['state'], metrics = fn(holder['state'], data)
      jax.block_until_ready(metrics)
    calls[name] = call
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(init(0).params))
  return calls, n_params


def main(argv):
  del argv
  cli.require_positive(PROG, **{'--batch': _BATCH.value, '--models': _MODELS.value,
                                '--calls': _CALLS.value, '--rounds': _ROUNDS.value})
  sizes = [_parse_size(s) for s in _SIZES.value]
  batch, models = _BATCH.value, _MODELS.value
  for layers, width in sizes:
    calls, n_params = variants(layers, width, batch, models)
    times = {name: [] for name in calls}
    for name, call in calls.items():
      call()  # compile
    for r in range(_ROUNDS.value):
      order = list(calls) if r % 2 == 0 else list(reversed(calls))
      for name in order:
        times[name] += timing.call_seconds(calls[name], _CALLS.value, warmup=1)
    ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    base = ms['one model']
    flops = 6 * n_params * batch * LENGTH / (base / 1e3) / 1e9
    line = (f'L{layers}d{width} N={n_params:>8,d}  one model {base:7.2f} ms '
            f'({flops:5.1f} GFLOP/s useful)')
    for name in list(calls)[1:]:
      line += f'  {name} {ms[name]:7.2f} ms (gain {models * base / ms[name]:4.2f}x)'
    print(line, flush=True)


if __name__ == '__main__':
  cli.run(main, PROG)
