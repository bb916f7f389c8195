r"""Continuations from the latest checkpoint of a run.

  python experiments/generate.py --workdir=RUN_DIR --prompt='The cat' --strategy=beam \
      --gin_bindings='DecodeConfig.beam_width=8' --gin_bindings='DecodeConfig.max_new_tokens=64'
  python experiments/generate.py --workdir=RUN_DIR --prompts_file=prompts.txt \
      --output=continuations.jsonl --strategy=sample --seed=3

Prompts are text (one per line in --prompts_file), encoded with the byte
tokenizer. Every DecodeConfig field is a gin binding; --strategy is a shortcut.
Prints one line per prompt, or writes JSON lines {prompt, continuation, tokens,
score} to --output.
"""
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
import gin
import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from research import decoding  # noqa: E402
from research.data import tokenizers  # noqa: E402
from research.train import metrics  # noqa: E402

FLAGS = flags.DEFINE_string('workdir', None, 'Run directory (config.gin, checkpoints/).')
_PROMPT = flags.DEFINE_multi_string('prompt', [], 'A prompt; repeat for a batch.')
_PROMPTS_FILE = flags.DEFINE_string('prompts_file', None, 'Batch mode: one prompt a line.')
_OUTPUT = flags.DEFINE_string('output', None, 'JSON-lines file; default: print.')
_STRATEGY = flags.DEFINE_enum('strategy', None, list(decoding.STRATEGIES),
                              'Shortcut for DecodeConfig.strategy.')
_SEED = flags.DEFINE_integer('seed', 0, 'PRNG seed for sampling.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step; default: the latest.')
_GIN_FILE = flags.DEFINE_multi_string('gin_file', [], 'Gin files (DecodeConfig).')
_GIN_BINDINGS = flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings.')
flags.mark_flag_as_required('workdir')


def read_prompts():
  prompts = list(_PROMPT.value)
  if _PROMPTS_FILE.value:
    with open(_PROMPTS_FILE.value, encoding='utf-8') as f:
      prompts += [line.rstrip('\n') for line in f if line.strip()]
  if not prompts:
    raise decoding.DecodingError('give --prompt or --prompts_file')
  return prompts


def main(argv):
  if len(argv) > 1:
    sys.exit(f'generate.py: unexpected arguments: {" ".join(argv[1:])}')
  if _OUTPUT.value and not os.path.isdir(os.path.dirname(os.path.abspath(_OUTPUT.value))):
    sys.exit(f'generate.py: --output {_OUTPUT.value!r}: its directory does not exist')
  if _OUTPUT.value and os.path.isdir(_OUTPUT.value):
    sys.exit(f'generate.py: --output {_OUTPUT.value!r} is a directory; give a file name')
  logging.set_verbosity(logging.ERROR)  # orbax logs every file it reads (and read-only notes)
  from research.parallel import host
  host.tune_allocator()  # before JAX allocates (research/parallel/host.py)
  try:
    prompts = read_prompts()
    model_config, params, step = decoding.load_run(FLAGS.value, _STEP.value)
    # The run's gin was cleared after reading the model; now the decoding config.
    gin.parse_config_files_and_bindings(_GIN_FILE.value, _GIN_BINDINGS.value)
    config = decoding.DecodeConfig()
    if _STRATEGY.value:
      config = config.replace(strategy=_STRATEGY.value)
    tokenizer = tokenizers.ByteTokenizer()
    out = decoding.generate(model_config, params, [tokenizer.encode(p) for p in prompts],
                            config, rng=jax.random.PRNGKey(_SEED.value))
  except (decoding.DecodingError, ValueError, OSError, SyntaxError) as e:
    host.exit_at_once(f'generate.py: {str(e).splitlines()[0]}')
  rows = []
  for prompt, tokens, length, score in zip(prompts, out.best, out.lengths[:, 0],
                                           out.scores[:, 0]):
    ids = [int(t) for t in tokens[:int(length)]]
    rows.append({'prompt': prompt, 'continuation': tokenizer.decode(ids), 'tokens': ids,
                 'score': float(score), 'step': step})
  if _OUTPUT.value:  # temp file + rename: an earlier output is never left half-written
    metrics.write_atomic(_OUTPUT.value, ''.join(json.dumps(row) + '\n' for row in rows))
  else:
    for row in rows:
      print(f'{row["prompt"]!r} -> {row["continuation"]!r}')


if __name__ == '__main__':
  from research import cli  # pylint: disable=g-import-not-at-top
  app.run(main, flags_parser=cli.flags_parser('generate.py'))
