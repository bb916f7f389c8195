r"""Tokens/s and trainable parameters of one train step under each PEFT method.

  python benchmarks/peft_step.py [--d_model=256 --num_layers=4 --batch=8 --length=128]

One decoder (GPT-2-style sizes from the flags, byte vocabulary, RoPE) is trained on
synthetic batches with AdamW: fully, and with LoRA (r=8 on q and v), prompt tuning
(20 virtual tokens), P-tuning v2 (prefix 20 per layer) and bottleneck adapters (m=64).
A PEFT step differentiates the loss with respect to the PEFT parameters only (the base
is a constant of the jitted step), so the frozen base needs no weight gradients and no
optimizer state. Each step is compiled once, then --steps steps are timed after
--warmup and the median reported; the methods run in turns (--rounds rounds) so that the
machine's drift affects them alike.
"""
import json
import os
import statistics

from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import cli
from research import models
from research import timing
from research.adapt import peft
from research.train import metrics

PROG = 'peft_step.py'
_D_MODEL = flags.DEFINE_integer('d_model', 256, 'Model width.')
_LAYERS = flags.DEFINE_integer('num_layers', 4, 'Decoder blocks.')
_BATCH = flags.DEFINE_integer('batch', 8, 'Rows per step.')
_LENGTH = flags.DEFINE_integer('length', 128, 'Tokens per row.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps per round.')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed steps after compilation.')
_ROUNDS = flags.DEFINE_integer('rounds', 2, 'Rounds over the methods.')
_OUTPUT = flags.DEFINE_string('output', None, 'Optional JSON file for the table.')
_FIGURE = flags.DEFINE_string('figure', None, 'Optional PNG: trainable parameters against '
                              'tokens/s, one point per method.')

METHODS = {
    'full fine-tuning': None,
    'LoRA r=8 (q, v)': peft.PeftConfig(method='lora', lora_rank=8, lora_alpha=16.0,
                                       lora_targets=('query', 'value')),
    'prompt tuning n=20': peft.PeftConfig(method='prompt', num_virtual_tokens=20),
    'P-tuning v2 n=20': peft.PeftConfig(method='ptuning_v2', prefix_length=20),
    'adapters m=64': peft.PeftConfig(method='adapter', adapter_size=64),
}


def build_step(config, batch):
  """(run one synchronized step, trainable parameter count)."""
  module = models.build(config)
  params = nn.meta.unbox(jax.jit(module.init)(jax.random.PRNGKey(0),
                                              decoder_input_tokens=batch[:1, :4]))['params']
  tx = optax.adamw(1e-4)
  if config.peft is None:
    trainable, frozen, count = params, {}, models.count_params(config)['total']
  else:
    trainable, frozen = peft.split(params)
    count = peft.count_trainable(params)

  def loss_fn(trainable, frozen):
    p = trainable if not frozen else peft.combine(frozen, trainable)
    logits = module.apply({'params': p}, decoder_input_tokens=batch[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()

  @jax.jit
  def step(trainable, opt_state, frozen):
    loss, grads = jax.value_and_grad(loss_fn)(trainable, frozen)
    updates, opt_state = tx.update(grads, opt_state, trainable)
    return optax.apply_updates(trainable, updates), opt_state, loss

  state = [trainable, tx.init(trainable)]

  def one():
    state[0], state[1], loss = step(state[0], state[1], frozen)
    jax.block_until_ready(loss)
  return one, count


def main(argv):
  del argv
  cli.require_positive(PROG, d_model=_D_MODEL.value, num_layers=_LAYERS.value,
                       batch=_BATCH.value, length=_LENGTH.value, steps=_STEPS.value,
                       rounds=_ROUNDS.value)
  base = models.TransformerConfig(
      d_model=_D_MODEL.value, num_layers=_LAYERS.value, num_heads=max(_D_MODEL.value // 64, 1),
      d_ff=4 * _D_MODEL.value, max_length=_LENGTH.value + 32, position='rope')
  batch = jnp.asarray(np.random.default_rng(0).integers(
      3, 259, (_BATCH.value, _LENGTH.value + 1)), jnp.int32)
  steps, counts, times = {}, {}, {}
  for name, pc in METHODS.items():
    steps[name], counts[name] = build_step(base.replace(peft=pc), batch)
    timing.call_seconds(steps[name], 1)  # compile
    times[name] = []
  for _ in range(_ROUNDS.value):
    for name in METHODS:
      times[name] += timing.call_seconds(steps[name], _STEPS.value, _WARMUP.value)
  total = models.count_params(base)['total']
  tokens = _BATCH.value * _LENGTH.value
  print(f'{total / 1e6:.2f}M-parameter decoder (d_model {_D_MODEL.value}, {_LAYERS.value} '
        f'layers), batch {_BATCH.value} x {_LENGTH.value} tokens, {jax.devices()[0].device_kind}, '
        f'{os.cpu_count()} CPUs')
  print('| method | trainable parameters | % of model | step ms | tokens/s |')
  print('|---|---:|---:|---:|---:|')
  rows = []
  for name in METHODS:
    seconds = statistics.median(times[name])
    rows.append({'method': name, 'trainable': counts[name], 'step_ms': 1e3 * seconds,
                 'tokens_per_s': tokens / seconds})
    print(f'| {name} | {counts[name]:,} | {100 * counts[name] / total:.3f} | '
          f'{1e3 * seconds:.0f} | {tokens / seconds:,.0f} |')
  if _OUTPUT.value:
    metrics.write_atomic(_OUTPUT.value, json.dumps({'rows': rows}, indent=1))
  if _FIGURE.value:
    _plot(rows, _FIGURE.value, f'{total / 1e6:.2f}M-parameter decoder, CPU train step')


def _plot(rows, path, title):
  """Trainable parameters (log) against tokens/s; written to a temp file, then renamed."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 3.6))
  for row in rows:
    ax.scatter(row['trainable'], row['tokens_per_s'], s=40)
    ax.annotate(row['method'], (row['trainable'], row['tokens_per_s']),
                textcoords='offset points', xytext=(5, 5), fontsize=8)
  ax.set_xscale('log')
  ax.set_xlabel('trainable parameters')
  ax.set_ylabel('train tokens/s')
  ax.set_title(title, fontsize=10)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  tmp = path + '.tmp.png'
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  os.replace(tmp, path)


if __name__ == '__main__':
  cli.run(main, PROG)
