"""Harness parity for an encoder-decoder: a tiny random T5 (a T5Config, no download) with
the word-level tokenizer of test_harness_parity.py, scored on the local multiple-choice and
rolling tasks by the harness's own `hf` model (backend='seq2seq') and by `--model research`
on the same weights converted by `research.models.from_hf`: every log-likelihood agrees
within 1e-4.

Log-likelihoods only: for seq2seq the harness's hf model lets generate() run to
max_length = context width + max_gen_toks decoder tokens (HFLM.generate_until), where the
adapter generates max_gen_toks, so generations agree only when a stop string comes first.
"""
import os

os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('HF_HUB_OFFLINE', '1')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip('lm_eval')  # the test extra
torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from lm_eval.models import huggingface  # noqa: E402

from research.evaluation import harness  # noqa: E402
from tests.evaluation.test_harness_parity import (  # noqa: E402
    REPO, _evaluate, _responses, build_tokenizer)

# Imports lm_eval, torch and transformers and evaluates two tasks twice: ~40 s on 2 cores.
pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def t5_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('tiny_t5'))
  tok = build_tokenizer(directory)
  torch.manual_seed(1)
  config = transformers.T5Config(
      vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
      relative_attention_num_buckets=8, relative_attention_max_distance=16,
      feed_forward_proj='gated-gelu', dropout_rate=0.0, pad_token_id=0, eos_token_id=2,
      decoder_start_token_id=0, tie_word_embeddings=False, initializer_factor=1.0)
  transformers.T5ForConditionalGeneration(config).eval().save_pretrained(directory)
  return directory


def test_encoder_decoder_loglikelihoods_agree_within_1e4(t5_dir):
  tasks = ['research_toy_mc', 'research_toy_rolling']
  cwd = os.getcwd()
  os.chdir(REPO)
  try:
    theirs = _responses(_evaluate(huggingface.HFLM(
        pretrained=t5_dir, backend='seq2seq', device='cpu', batch_size=4, dtype='float32'),
        tasks))
    ours = _responses(_evaluate(harness.ResearchLM(hf_model=t5_dir, batch_size=4), tasks))
  finally:
    os.chdir(cwd)
  assert set(theirs) == set(ours) and len(theirs) == 6 * 3 + 6
  diffs = []
  for key, value in theirs.items():
    ref = value[0] if isinstance(value, (tuple, list)) else value
    got = ours[key][0] if isinstance(value, (tuple, list)) else ours[key]
    assert np.isfinite(ref) and ref < 0
    diffs.append(abs(float(ref) - float(got)))
  print(f'T5 (seq2seq): {len(diffs)} log-likelihoods, max |hf - research| = {max(diffs):.1e}')
  assert max(diffs) < 1e-4, max(diffs)
