r"""Continuations from the latest checkpoint of a run (`research-generate`).

  research-generate --workdir=RUN_DIR --prompt='The cat' --strategy=beam \
      --gin_bindings='DecodeConfig.beam_width=8' --gin_bindings='DecodeConfig.max_new_tokens=64'
  python -m research.decoding --workdir=RUN_DIR --prompts_file=prompts.txt \
      --output=continuations.jsonl --strategy=sample --seed=3

Prompts are text (one per line in --prompts_file), encoded with the run's own tokenizer
(config.gin's `make_pipeline.tokenizer`: bytes, or the run's SentencePiece model); a
prefix-LM run reads its prompt as a bidirectional prefix. Every DecodeConfig field is a gin
binding (an explicit `DecodeConfig.prefix_lm` wins over the run's); --strategy is a
shortcut. Prints one line per prompt, or writes JSON lines {prompt, continuation, tokens,
score, step} to --output.
"""
import json
import os
import sys

from absl import flags
from absl import logging
import gin
import jax

from research import cli
from research import decoding
from research import runs
from research.decoding import loading

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (config.gin, checkpoints/).')
_PROMPT = flags.DEFINE_multi_string('prompt', [], 'A prompt; repeat for a batch.')
_PROMPTS_FILE = flags.DEFINE_string('prompts_file', None, 'Batch mode: one prompt a line.')
_OUTPUT = flags.DEFINE_string('output', None, 'JSON-lines file; default: print.')
_STRATEGY = flags.DEFINE_enum('strategy', None, list(decoding.STRATEGIES),
                              'Shortcut for DecodeConfig.strategy.')
_SEED = flags.DEFINE_integer('seed', 0, 'PRNG seed for sampling.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step; default: the latest.')
_GIN_FILE = flags.DEFINE_multi_string('gin_file', [], 'Gin files (DecodeConfig).')
_GIN_BINDINGS = flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings.')


def _read_prompts(prog: str) -> list[str]:
  prompts = list(_PROMPT.value)
  if _PROMPTS_FILE.value:
    if not os.path.isfile(_PROMPTS_FILE.value):
      cli.usage_error(prog, f'--prompts_file {_PROMPTS_FILE.value!r} does not exist')
    with open(_PROMPTS_FILE.value, encoding='utf-8') as f:
      prompts += [line.rstrip('\n') for line in f if line.strip()]
  if not prompts:
    cli.usage_error(prog, 'give --prompt or --prompts_file')
  return prompts


def _check_output(prog: str) -> None:
  if not _OUTPUT.value:
    return
  if os.path.isdir(_OUTPUT.value):
    cli.usage_error(prog, f'--output {_OUTPUT.value!r} is a directory; give a file name')
  if not os.path.isdir(os.path.dirname(os.path.abspath(_OUTPUT.value))):
    cli.usage_error(prog, f'--output {_OUTPUT.value!r}: its directory does not exist')


def _decode_config(prefix_lm: bool):
  """DecodeConfig from the command line's gin, the run's prompt mode where not bound."""
  gin.parse_config_files_and_bindings(_GIN_FILE.value, _GIN_BINDINGS.value)
  config = decoding.DecodeConfig()
  try:
    gin.query_parameter('DecodeConfig.prefix_lm')
  except ValueError:
    config = config.replace(prefix_lm=prefix_lm)
  if _STRATEGY.value:
    config = config.replace(strategy=_STRATEGY.value)
  return config


def main(prog: str) -> None:
  cli.require(prog, workdir=_WORKDIR.value)
  if not os.path.isdir(_WORKDIR.value):
    cli.usage_error(prog, f'--workdir {_WORKDIR.value!r} is not a directory')
  _check_output(prog)
  prompts = _read_prompts(prog)
  logging.set_verbosity(logging.ERROR)  # orbax logs every file it reads (and read-only notes)
  from research.parallel import host  # pylint: disable=g-import-not-at-top
  host.tune_allocator()  # before JAX allocates (research/parallel/host.py)
  try:
    text = loading.load_run_text(_WORKDIR.value)
    # Loading the model clears gin; the decoding config is parsed after it.
    model_config, params, step = decoding.load_run(_WORKDIR.value, _STEP.value)
  except decoding.DecodingError as e:
    # A failed restore leaves orbax's threads behind: end before they print.
    host.exit_at_once(f'{prog}: error: {cli.first_line(e)}', cli.RUNTIME_ERROR)
  try:
    config = _decode_config(text.prefix_lm)
    out = decoding.generate(model_config, params,
                            [text.tokenizer.encode(p) for p in prompts], config,
                            rng=jax.random.PRNGKey(_SEED.value))
  except (decoding.DecodingError, ValueError, SyntaxError) as e:  # bad gin or DecodeConfig
    cli.usage_error(prog, e)
  rows = []
  for prompt, tokens, length, score in zip(prompts, out.best, out.lengths[:, 0],
                                           out.scores[:, 0]):
    ids = [int(t) for t in tokens[:int(length)]]
    rows.append({'prompt': prompt, 'continuation': text.tokenizer.decode(ids),
                 'tokens': ids, 'score': float(score), 'step': step})
  if _OUTPUT.value:  # temp file + rename: an earlier output is never left half-written
    runs.write_text_atomic(_OUTPUT.value, ''.join(json.dumps(row) + '\n' for row in rows))
  else:
    for row in rows:
      print(f'{row["prompt"]!r} -> {row["continuation"]!r}')


def run() -> None:
  """`research-generate`, `python -m research.decoding` and experiments/generate.py.

  Errors name the command as it was called."""
  prog = os.path.basename(sys.argv[0]).replace('__main__.py', 'python -m research.decoding')
  cli.run(lambda argv: main(prog), prog)
