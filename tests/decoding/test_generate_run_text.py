"""generate decodes a run with the run's own tokenizer and prompt mode.

A SentencePiece run, trained for a few steps by the real trainer on one repeated sentence,
continues a prompt in SentencePiece pieces, and the text it prints is those pieces (encoded
again it gives back the same ids), not the byte tokenizer's reading of them. A prefix-LM
run (its pipeline's `prefix_decoder` converter) reads the prompt as a bidirectional prefix.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from research import decoding
from research.data import tokenizers
from research.decoding import loading
from tests.decoding import helpers
from tests.decoding import test_generate_entry as entry

REPO = entry.REPO
SENTENCE = 'the quick brown fox jumps over the lazy dog.\n'


def _run(script, *args):
  return subprocess.run([sys.executable, os.path.join(REPO, 'experiments', script), *args],
                        capture_output=True, text=True, cwd=REPO, timeout=600)


@pytest.fixture(scope='module')
def sentencepiece_run(tmp_path_factory):
  root = tmp_path_factory.mktemp('spm_run')
  corpus = root / 'corpus'
  corpus.mkdir()
  for i in range(8):
    (corpus / f'{i}.txt').write_text(SENTENCE * 40)
  model = tokenizers.train_sentencepiece([SENTENCE * 40], str(root / 'spm'), 300)
  tokenizer = tokenizers.SentencePieceTokenizer(model)
  workdir = str(root / 'run')
  train = _run('train.py', '--gin_file=gin_configs/runs/tiny.gin',
               '--gin_file=gin_configs/data/sentencepiece.gin', f'--workdir={workdir}',
               f"--gin_bindings=SPM_MODEL = '{model}'",
               f"--gin_bindings=pipeline_source.dataset = 'text_files:{corpus}'",
               f"--gin_bindings=make_pipeline.data_dir = '{root / 'tfds'}'",
               '--gin_bindings=TRAIN_STEPS = 40', '--gin_bindings=BATCH_SIZE = 4',
               "--gin_bindings=TASK_FEATURE_LENGTHS = {'targets': 32}",
               f'--gin_bindings=TransformerConfig.vocab_size = {tokenizer.vocab_size}',
               '--gin_bindings=TransformerConfig.num_layers = 1',
               '--gin_bindings=make_schedule.peak = 1e-2',
               '--gin_bindings=make_schedule.warmup_steps = 5',
               '--gin_bindings=trainer.train.eval_every = 0')
  assert train.returncode == 0, train.stderr[-2000:]
  return workdir, tokenizer


def test_sentencepiece_run_decodes_with_its_own_tokenizer(sentencepiece_run, tmp_path):
  workdir, tokenizer = sentencepiece_run
  text = loading.load_run_text(workdir)
  assert isinstance(text.tokenizer, tokenizers.SentencePieceTokenizer) and not text.prefix_lm
  output = tmp_path / 'out.jsonl'
  result = _run('generate.py', f'--workdir={workdir}', '--prompt=the quick brown',
                f'--output={output}', '--gin_bindings=DecodeConfig.max_new_tokens=12')
  assert result.returncode == 0, result.stderr[-2000:]
  row = json.loads(output.read_text())
  ids = [t for t in row['tokens'] if t != tokenizer.eos_id]
  assert ids and all(tokenizer.ordinary_range[0] <= t < tokenizer.ordinary_range[1]
                     for t in ids)
  assert row['continuation'] == tokenizer.decode(row['tokens'])
  assert tokenizer.encode(row['continuation']) == ids
  # The trained run continues the sentence; the byte tokenizer would read its pieces as
  # unrelated bytes.
  assert row['continuation'].strip() and row['continuation'].strip() in SENTENCE * 2
  assert row['continuation'] != tokenizers.ByteTokenizer().decode(row['tokens'])


# Two layers: with one, every key and value is the prompt's embedding, the same either way.
PREFIX_GIN = entry.CONFIG_GIN.replace('num_layers = 1', 'num_layers = 2') + """
# Parameters for make_pipeline:
make_pipeline.feature_converter = 'prefix_decoder'
make_pipeline.tokenizer = @tokenizers.ByteTokenizer()
"""


def test_prefix_lm_run_reads_the_prompt_as_a_prefix(tmp_path):
  _, params = helpers.tiny_model(**dict(entry.MODEL, num_layers=2))
  workdir = str(tmp_path / 'run')
  entry.write_run(workdir, params, steps=(1,))
  with open(os.path.join(workdir, 'config.gin'), 'w') as f:
    f.write(PREFIX_GIN)
  assert loading.load_run_text(workdir).prefix_lm
  prompt = 'def f(x): return x'
  output = tmp_path / 'out.jsonl'
  result = entry._generate(f'--workdir={workdir}', f'--prompt={prompt}', f'--output={output}',
                           '--gin_bindings=DecodeConfig.max_new_tokens=8')
  assert result.returncode == 0, result.stderr[-2000:]
  row = json.loads(output.read_text())
  config, loaded, _ = decoding.load_run(workdir)
  ids = [tokenizers.ByteTokenizer().encode(prompt)]
  expected = {}
  for prefix_lm in (True, False):
    out = decoding.generate(config, loaded, ids, decoding.DecodeConfig(
        max_new_tokens=8, prefix_lm=prefix_lm))
    expected[prefix_lm] = (np.asarray(out.best[0, :int(out.lengths[0, 0])]).tolist(),
                           float(out.scores[0, 0]))
  # The prompt mode shows in the score of the continuation (a random model may pick the
  # same tokens either way).
  assert abs(expected[True][1] - expected[False][1]) > 1e-3
  assert row['tokens'] == expected[True][0]
  assert row['score'] == pytest.approx(expected[True][1], abs=1e-5)
  # An explicit binding wins over the run's prompt mode.
  result = entry._generate(f'--workdir={workdir}', f'--prompt={prompt}', f'--output={output}',
                           '--gin_bindings=DecodeConfig.max_new_tokens=8',
                           '--gin_bindings=DecodeConfig.prefix_lm=False')
  assert result.returncode == 0, result.stderr[-2000:]
  row = json.loads(output.read_text())
  assert row['score'] == pytest.approx(expected[False][1], abs=1e-5)
