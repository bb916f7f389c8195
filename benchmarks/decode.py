r"""Decode speed with and without the KV cache for a ~10M-parameter decoder on CPU.

  python benchmarks/decode.py [--lengths=128,512,2048] [--batch=1] [--uncached_steps=8]

For each output length L the model gets a 16-token prompt and a cache (or, uncached, a
token buffer) of 16 + L slots. Three numbers per L:
  generate:     end-to-end `decoding.generate` (greedy, jitted while loop) producing L
                tokens per row, compile excluded: tokens/s.
  cached step:  seconds per decode step over the cache, timed over --cached_steps steps.
  uncached step: seconds per step that recomputes the full forward pass over the
                16 + L buffer (`DecodeConfig(use_cache=False)`), timed over
                --uncached_steps steps; it costs the same at every step, so a few steps
                give its tokens/s without running all L (2048 uncached steps take hours).
The cached step attends over the whole (masked) cache, as t5x does, so its cost grows
slowly with L through attention; the uncached step grows with L through everything.

Measured (`python benchmarks/decode.py`, 2-core CPU VM, idle, best of 3; jax 0.10.2,
10.8M parameters, batch 1):
       L  generate tok/s  cached ms/step  uncached ms/step  uncached tok/s  speed-up
     128           414.7            2.02              31.5           31.70       16x
     512           419.3            2.34             135.0            7.41       58x
    2048           157.3            4.71            1002.7            1.00      213x
Before the cache layouts and the read-before-write step of research/models/attention.py
(and `decoding.compiler_options()`), the compiled loop copied every layer's whole K/V
cache at every step: 2.37 / 3.95 / 26.1 ms per cached step at these lengths.
"""
import functools
import json
import os

from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research import cli
from research import decoding
from research import models
from research import timing
from research.decoding import adapters
from research.train import metrics

PROG = 'decode.py'
_LENGTHS = flags.DEFINE_list('lengths', ['128', '512', '2048'], 'Output lengths.')
# At least 1 each: below that there is nothing to decode, a division by zero steps, or no
# timed run to keep the best of.
_BATCH = flags.DEFINE_integer('batch', 1, 'Prompts decoded together.', lower_bound=1)
_PROMPT_LEN = flags.DEFINE_integer('prompt_len', 16, 'Prompt tokens.', lower_bound=1)
_CACHED_STEPS = flags.DEFINE_integer('cached_steps', 64, 'Timed cached steps.', lower_bound=1)
_UNCACHED_STEPS = flags.DEFINE_integer('uncached_steps', 8, 'Timed uncached steps.',
                                       lower_bound=1)
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed runs of each measurement; best kept.',
                                lower_bound=1)
_OUTPUT = flags.DEFINE_string('output', None, 'Write the results as JSON here.')

# The shape of gin_configs/runs/bench_10m_cpu.gin: 10.8M parameters.
MODEL = dict(family='decoder', vocab_size=384, d_model=384, num_layers=6, num_heads=6,
             d_ff=1536, position='rope')


def _seconds(fn, *args):
  """Best wall seconds of fn(*args) over --repeats runs after one untimed (compiling)
  call: the minimum is the least disturbed by other work on a shared machine."""
  return min(timing.call_seconds(lambda: jax.block_until_ready(fn(*args)), _REPEATS.value,
                                 warmup=1))


def seconds_per_step(model_config, params, prompts, new_tokens, steps, use_cache):
  """Seconds per decode step with state sized for `new_tokens` continuations."""
  decode_config = decoding.DecodeConfig(use_cache=use_cache)
  adapter = adapters.make_adapter(models.build(model_config), model_config, decode_config)
  logits, state, _ = jax.jit(adapter.init, static_argnums=2)(params, prompts, new_tokens)

  @functools.partial(jax.jit, compiler_options=decoding.compiler_options())
  def run(params, state, token):
    def body(_, carry):
      state, token = carry
      logits, state = adapter.step(params, state, token)
      return state, jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jax.lax.fori_loop(0, steps, body, (state, token))[1]

  token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  return _seconds(run, params, state, token) / steps


def main(argv):
  del argv
  try:
    lengths = [int(n) for n in _LENGTHS.value]
  except ValueError:
    cli.usage_error(PROG, f'--lengths takes integers, got {",".join(_LENGTHS.value)!r}')
  if not lengths or min(lengths) < 1:
    cli.usage_error(PROG, f'--lengths takes positive integers, got '
                          f'{",".join(_LENGTHS.value)!r}')
  if _OUTPUT.value and not os.path.isdir(os.path.dirname(os.path.abspath(_OUTPUT.value))):
    cli.usage_error(PROG, f'--output {_OUTPUT.value!r}: its directory does not exist')
  if _OUTPUT.value and os.path.isdir(_OUTPUT.value):
    cli.usage_error(PROG, f'--output {_OUTPUT.value!r} is a directory; give a file name')
  from research.parallel import host
  host.tune_allocator()
  b, p = _BATCH.value, _PROMPT_LEN.value
  config = models.TransformerConfig(**MODEL, max_length=p + max(lengths))
  module = models.build(config)
  params = jax.jit(module.init)(jax.random.PRNGKey(0),
                                decoder_input_tokens=jnp.ones((1, 1), jnp.int32))['params']
  params = nn.meta.unbox(params)
  prompt_ids = np.random.default_rng(0).integers(3, 259, (b, p)).tolist()
  prompts = decoding.pad_prompts(prompt_ids)
  print(f'{models.count_params(config)["total"] / 1e6:.1f}M parameters, batch {b}, prompt {p}, '
        f'{jax.devices()[0].device_kind}, {os.cpu_count()} CPUs')
  print(f'{"L":>6} {"generate tok/s":>15} {"cached ms/step":>15} {"uncached ms/step":>17} '
        f'{"uncached tok/s":>15} {"speed-up":>9}')
  results = []
  for n in lengths:
    decode_config = decoding.DecodeConfig(max_new_tokens=n)
    gen = lambda: decoding.generate(config, params, prompts, decode_config)  # noqa: E731
    elapsed = _seconds(gen)
    out = gen()
    tokens = int(np.asarray(out.lengths).sum())
    cached = seconds_per_step(config, params, prompts, n, min(n, _CACHED_STEPS.value), True)
    uncached = seconds_per_step(config, params, prompts, n, _UNCACHED_STEPS.value, False)
    row = {'length': n, 'generate_tokens_per_s': tokens / elapsed, 'generated': tokens,
           'cached_ms_per_step': 1e3 * cached, 'uncached_ms_per_step': 1e3 * uncached,
           'uncached_tokens_per_s': b / uncached, 'cached_tokens_per_s': b / cached}
    results.append(row)
    print(f'{n:>6} {row["generate_tokens_per_s"]:>15.1f} {1e3 * cached:>15.2f} '
          f'{1e3 * uncached:>17.1f} {b / uncached:>15.2f} {uncached / cached:>8.0f}x',
          flush=True)
  if _OUTPUT.value:  # temp file + rename: an earlier output is never left half-written
    metrics.write_atomic(_OUTPUT.value, json.dumps(
        {'model': MODEL, 'batch': b, 'prompt_len': p, 'results': results}, indent=1))


if __name__ == '__main__':
  cli.run(main, PROG)
