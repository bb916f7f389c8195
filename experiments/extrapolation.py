r"""Held-out loss against token position, up to 8x the training context (Press et al. 2022,
"Train Short, Test Long", Fig. 1): do the position types extrapolate?

  python experiments/extrapolation.py --run=sinusoidal=/tmp/lc/sinusoidal --run=rope=/tmp/lc/rope \
      --run=alibi=/tmp/lc/alibi --run=t5_relative=/tmp/lc/t5_relative --rope_run=rope \
      --eval_length=512 --out_dir=docs/figures --name=long_context

Every `--run` (NAME=RUN_DIR, a finished run of experiments/train.py on the python_stdlib
corpus) is evaluated on the same held-out rows: `--eval_rows` validation chunks of
`--eval_length` tokens, unpacked (each row one document's chunk, positions from 0), one
forward pass each. Causal attention makes the loss at position p the loss of a model that
reads p tokens, so the mean loss over positions < n is the loss at inference length n,
for every n up to --eval_length at once.

The `--rope_run` is also evaluated with each RoPE scaling (layers.rope_scaling: 'linear'
position interpolation, 'ntk', 'yarn') at factor eval_length / train_length, applied at
evaluation only; and, for 'linear' and 'yarn', after a short fine-tune at eval_length with
the scaling on (`--fine_tune_steps` Adam steps on training rows of that length; Chen et al.
2023 and Peng et al. 2023 fine-tune the same way, for 1000 and 400 steps). The same
fine-tune of plain RoPE is the control: what the extra steps at the longer length buy
without any scaling.

Writes <out_dir>/<name>.png (loss against position, one curve per model, and the training
length marked) and <out_dir>/<name>.json (per-position means, the table below, the
commands' settings), each written to a temporary file and renamed; prints the table: mean
loss at inference lengths train_length * 1, 2, 4, 8.
"""
import json
import os
import sys
import time

from absl import flags

from research import cli

PROG = 'extrapolation.py'

_RUN = flags.DEFINE_multi_string('run', [], 'NAME=RUN_DIR: a trained run to evaluate.')
_ROPE_RUN = flags.DEFINE_string('rope_run', '', 'NAME of the --run (position rope) to '
                                'evaluate with each RoPE scaling and to fine-tune.')
_EVAL_LENGTH = flags.DEFINE_integer('eval_length', 512, 'Tokens per held-out row.')
_EVAL_ROWS = flags.DEFINE_integer('eval_rows', 128, 'Held-out rows (validation split).')
_FINE_TUNE_STEPS = flags.DEFINE_integer('fine_tune_steps', 60, 'Steps of each fine-tune '
                                        '(0: none).')
_FINE_TUNE_BATCH = flags.DEFINE_integer('fine_tune_batch', 4, 'Rows per fine-tune step.')
_FINE_TUNE_LR = flags.DEFINE_float('fine_tune_lr', 1e-3, 'Adam learning rate of the '
                                   'fine-tunes (after 10 warm-up steps).')
_BIN = flags.DEFINE_integer('bin', 32, 'Positions per point of the plotted curves.')
_OUT_DIR = flags.DEFINE_string('out_dir', None, 'Where the PNG and JSON go.')
_NAME = flags.DEFINE_string('name', 'long_context', 'File name stem of the outputs.')

SCALINGS = ('linear', 'ntk', 'yarn')
# 'none': the same fine-tune without scaling, the control for the extra training.
FINE_TUNED = ('none', 'linear', 'yarn')


def _parse_runs():
  runs = {}
  for spec in _RUN.value:
    name, sep, path = spec.partition('=')
    if not sep or not name or not path:
      cli.usage_error(PROG, f'--run={spec!r} is not NAME=RUN_DIR')
    if not os.path.isdir(path):
      cli.usage_error(PROG, f'--run={spec!r}: no such run directory {path}')
    if name in runs:
      cli.usage_error(PROG, f'--run name {name!r} given twice')
    runs[name] = path
  if not runs:
    cli.usage_error(PROG, 'give at least one --run=NAME=RUN_DIR')
  if _ROPE_RUN.value and _ROPE_RUN.value not in runs:
    cli.usage_error(PROG, f'--rope_run={_ROPE_RUN.value!r} is not a --run name '
                          f'({", ".join(runs)})')
  return runs


def per_position_losses(config, params, batches):
  """(sum of token losses [length], token count [length]) over `batches`, by the position
  of the token read (decoder_positions), padding excluded."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from research import models
  module = models.build(config)

  @jax.jit
  def token_losses(params, batch):
    logits = module.apply({'params': params}, decoder_input_tokens=batch['tokens'],
                          decoder_segment_ids=batch['segments'],
                          decoder_positions=batch['positions'])
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, batch['targets'][..., None], -1)[..., 0]

  length = batches[0]['decoder_input_tokens'].shape[1]
  sums, counts = np.zeros(length), np.zeros(length)
  for b in batches:
    loss = np.asarray(token_losses(params, {
        'tokens': b['decoder_input_tokens'], 'segments': b['decoder_segment_ids'],
        'positions': b['decoder_positions'], 'targets': b['decoder_target_tokens']}))
    weight = np.asarray(b['decoder_loss_weights'], np.float64)
    pos = np.asarray(b['decoder_positions'])
    np.add.at(sums, pos, loss * weight)
    np.add.at(counts, pos, weight)
  return sums, counts


def fine_tune(config, params, batches, lr):
  """Adam on the next-token loss, one step per batch; the fine-tuned params and the last
  step's loss."""
  import jax
  import jax.numpy as jnp
  import optax
  from research import models
  module = models.build(config)
  tx = optax.adam(optax.linear_schedule(0.0, lr, 10))
  opt_state = tx.init(params)

  def loss_fn(params, batch):
    logits = module.apply({'params': params},
                          decoder_input_tokens=batch['decoder_input_tokens'],
                          decoder_segment_ids=batch['decoder_segment_ids'],
                          decoder_positions=batch['decoder_positions'])
    logp = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(logp, batch['decoder_target_tokens'][..., None], -1)[..., 0]
    weight = batch['decoder_loss_weights'].astype(jnp.float32)
    return jnp.sum(nll * weight) / jnp.maximum(jnp.sum(weight), 1.0)

  @jax.jit
  def step(params, opt_state, batch):
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  loss = float('nan')
  for batch in batches:
    batch = {k: batch[k] for k in ('decoder_input_tokens', 'decoder_segment_ids',
                                   'decoder_positions', 'decoder_target_tokens',
                                   'decoder_loss_weights')}
    params, opt_state, loss = step(params, opt_state, batch)
  return params, float(loss)


def _write_atomic(path, write):
  tmp = f'{path}.tmp{os.getpid()}'
  write(tmp)
  os.replace(tmp, path)


def plot(curves, table, train_length, eval_length, bin_size, path):
  """Left: loss against position, in bins of `bin_size`; right: Press et al.'s Fig. 1, the
  mean loss at each inference length."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  import numpy as np
  fig, (ax, ax_n) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={'width_ratios': [3, 2]})
  edges = np.arange(0, eval_length + 1, bin_size)
  for label, (sums, counts) in curves.items():
    s = np.add.reduceat(sums, edges[:-1])
    c = np.add.reduceat(counts, edges[:-1])
    style = '--' if 'fine-tuned' in label else (':' if '+' in label else '-')
    line, = ax.plot(edges[:-1] + bin_size / 2, s / np.maximum(c, 1), style, label=label)
    lengths = sorted(table[label])
    ax_n.plot(lengths, [table[label][n] for n in lengths], style, marker='o',
              color=line.get_color(), label=label)
  for a in (ax, ax_n):
    a.axvline(train_length, color='gray', lw=0.8)
    a.set_ylabel('held-out loss (nats per byte)')
  ax.set_xlabel(f'token position (mean over bins of {bin_size})')
  ax.set_title(f'Loss by position; trained at {train_length} tokens (gray line)')
  ax_n.set_xscale('log', base=2)
  ax_n.set_xlabel('inference length n (mean loss over the first n tokens)')
  ax_n.set_title('Press et al. 2022 Fig. 1 style')
  ax.legend(fontsize=8)
  fig.tight_layout()
  _write_atomic(path, lambda tmp: fig.savefig(tmp, format='png', dpi=100))
  plt.close(fig)


def main(argv):
  del argv
  cli.require(PROG, out_dir=_OUT_DIR.value)
  cli.require_positive(PROG, eval_length=_EVAL_LENGTH.value, eval_rows=_EVAL_ROWS.value,
                       bin=_BIN.value, fine_tune_batch=_FINE_TUNE_BATCH.value)
  if _FINE_TUNE_STEPS.value < 0:
    cli.usage_error(PROG, f'--fine_tune_steps must be >= 0, got {_FINE_TUNE_STEPS.value}')
  if _EVAL_LENGTH.value % _BIN.value:
    cli.usage_error(PROG, f'--bin={_BIN.value} does not divide --eval_length='
                          f'{_EVAL_LENGTH.value}')
  runs = _parse_runs()
  cli.show_own_info()
  import numpy as np
  from research import runs as runs_lib
  from research.data import pipeline

  configs, params, train_lengths = {}, {}, {}
  for name, path in runs.items():
    try:
      info = runs_lib.read_run_info(path)
      configs[name] = runs_lib.model_config(path)
      params[name], _ = runs_lib.load_params(path)
    except Exception as e:  # pylint: disable=broad-except  # orbax raises many types
      cli.fail(PROG, f'--run {name}: {cli.first_line(e)}')
    if configs[name].family != 'decoder':
      cli.usage_error(PROG, f'--run {name}: family {configs[name].family!r} is not decoder')
    train_lengths[name] = int(info['feature_lengths']['targets'])
  if len(set(train_lengths.values())) != 1:
    cli.usage_error(PROG, f'the runs were trained at different lengths: {train_lengths}')
  train_length = next(iter(train_lengths.values()))
  eval_length = _EVAL_LENGTH.value
  if eval_length < train_length:
    cli.usage_error(PROG, f'--eval_length={eval_length} is shorter than the training '
                          f'length {train_length}')
  if _ROPE_RUN.value and configs[_ROPE_RUN.value].position != 'rope':
    cli.usage_error(PROG, f'--rope_run={_ROPE_RUN.value!r} has position '
                          f'{configs[_ROPE_RUN.value].position!r}, not rope')
  factor = eval_length / train_length

  lengths = {'targets': eval_length}
  held_out = pipeline.make_eval_batches(task_feature_lengths=lengths, batch_size=16,
                                        num_batches=-(-_EVAL_ROWS.value // 16), pack=False)
  models_to_eval = {}  # label -> (config, params)
  for name in runs:
    # max_length only sizes learned tables and decoding checks: the context grows.
    models_to_eval[name] = (configs[name].replace(max_length=eval_length), params[name])
  fine_tune_log = {}
  if _ROPE_RUN.value:
    base = configs[_ROPE_RUN.value]
    for kind in SCALINGS:
      scaled = base.replace(max_length=eval_length, rope_scaling=kind,
                            rope_scaling_factor=factor, rope_original_length=train_length)
      models_to_eval[f'{_ROPE_RUN.value} + {kind}'] = (scaled, params[_ROPE_RUN.value])
    if _FINE_TUNE_STEPS.value:
      train = pipeline.make_pipeline('python_stdlib', 'train', task_feature_lengths=lengths,
                                     batch_size=_FINE_TUNE_BATCH.value, seed=1, prefetch=0,
                                     shuffle_rows=64)
      batches = [next(train) for _ in range(_FINE_TUNE_STEPS.value)]
      for kind in FINE_TUNED:
        label = _ROPE_RUN.value if kind == 'none' else f'{_ROPE_RUN.value} + {kind}'
        scaled, start = models_to_eval[label]
        t0 = time.time()
        tuned, last = fine_tune(scaled, start, batches, _FINE_TUNE_LR.value)
        fine_tune_log[kind] = {'steps': _FINE_TUNE_STEPS.value, 'last_loss': last,
                               'seconds': round(time.time() - t0, 1)}
        print(f'{PROG}: fine-tuned {label}: {_FINE_TUNE_STEPS.value} steps '
              f'of {_FINE_TUNE_BATCH.value} x {eval_length} tokens, last loss {last:.3f}, '
              f'{time.time() - t0:.0f} s', file=sys.stderr)
        models_to_eval[f'{label}, fine-tuned'] = (scaled, tuned)

  curves, table = {}, {}
  inference_lengths = [n for n in (train_length * 2 ** i for i in range(8)) if n <= eval_length]
  for label, (config, p) in models_to_eval.items():
    sums, counts = per_position_losses(config, p, held_out)
    curves[label] = (sums, counts)
    cum_s, cum_c = np.cumsum(sums), np.cumsum(counts)
    table[label] = {n: float(cum_s[n - 1] / cum_c[n - 1]) for n in inference_lengths}

  os.makedirs(_OUT_DIR.value, exist_ok=True)
  png = os.path.join(_OUT_DIR.value, f'{_NAME.value}.png')
  plot(curves, table, train_length, eval_length, _BIN.value, png)
  out = {'train_length': train_length, 'eval_length': eval_length, 'scaling_factor': factor,
         'eval_rows': int(sum(int((b['decoder_segment_ids'][:, 0] > 0).sum())
                              for b in held_out)),
         'runs': runs, 'fine_tune': fine_tune_log,
         'fine_tune_batch': _FINE_TUNE_BATCH.value, 'fine_tune_lr': _FINE_TUNE_LR.value,
         'mean_loss_at_length': table,
         'per_position': {k: {'loss_sum': [round(x, 3) for x in s.tolist()],
                              'tokens': [int(x) for x in c.tolist()]}
                          for k, (s, c) in curves.items()}}
  path = os.path.join(_OUT_DIR.value, f'{_NAME.value}.json')
  _write_atomic(path, lambda tmp: open(tmp, 'w').write(json.dumps(out, indent=1)))
  width = max(len(k) for k in table)
  print(f'mean held-out loss (nats/byte) over the first n tokens; trained at n = {train_length}')
  print(f'{"model":<{width}}  ' + '  '.join(f'n={n:<5d}' for n in inference_lengths))
  for label, row in table.items():
    print(f'{label:<{width}}  ' + '  '.join(f'{row[n]:<7.3f}' for n in inference_lengths))
  print(f'wrote {png} and {path}')


if __name__ == '__main__':
  cli.run(main, PROG)
