"""Harness parity: the harness's own `hf` model and `--model research` agree.

A tiny random Llama (a LlamaConfig, no download) with a word-level tokenizer built here is
saved to a temporary directory. lm-evaluation-harness scores the local tasks under
tests/evaluation/tasks (multiple choice, rolling perplexity over documents longer than the
context, greedy generation) once through `lm_eval.models.huggingface.HFLM` on those files
and once through this project's adapter on the same weights converted by
`research.models.from_hf`: every log-likelihood agrees within 1e-4 and every generation is
the same string.
"""
import os

os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('HF_HUB_OFFLINE', '1')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

lm_eval = pytest.importorskip('lm_eval')  # the test extra
torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from lm_eval import evaluator  # noqa: E402
from lm_eval.models import huggingface  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from research.evaluation import harness  # noqa: E402

# Imports lm_eval, torch and transformers and evaluates three tasks twice: ~35 s on 2 cores.
pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TASKS_DIR = os.path.join(REPO, 'tests', 'evaluation', 'tasks')
TASKS = ['research_toy_mc', 'research_toy_rolling', 'research_toy_gen']
WORDS = ('the a cat dog bird fish cow fox red blue green black sees likes eats finds '
         'and on in . is').split()
CONTEXT = 32  # shorter than the longest rolling document: several windows per document


def build_tokenizer(directory):
  """A word-level tokenizer over WORDS, saved as a PreTrainedTokenizerFast."""
  from tokenizers import Tokenizer, models, pre_tokenizers  # pylint: disable=g-import-not-at-top
  vocab = {w: i for i, w in enumerate(['<pad>', '<s>', '</s>', '<unk>'] + WORDS)}
  tok = Tokenizer(models.WordLevel(vocab, unk_token='<unk>'))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  fast = transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, bos_token='<s>', eos_token='</s>', unk_token='<unk>',
      pad_token='<pad>', model_max_length=CONTEXT)
  fast.save_pretrained(directory)
  return fast


def build_llama(directory, vocab_size, seed=0):
  torch.manual_seed(seed)
  config = transformers.LlamaConfig(
      vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=CONTEXT,
      rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
      pad_token_id=0, initializer_range=0.5)  # large weights: peaked, varied predictions
  model = transformers.LlamaForCausalLM(config).eval()
  model.save_pretrained(directory)
  return model


@pytest.fixture(scope='module')
def hf_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('tiny_llama'))
  tok = build_tokenizer(directory)
  build_llama(directory, len(tok))
  return directory


def _evaluate(model, tasks=TASKS):
  return evaluator.simple_evaluate(
      model=model, tasks=tasks, task_manager=TaskManager(include_path=TASKS_DIR),
      log_samples=True, bootstrap_iters=0, random_seed=0, numpy_random_seed=0,
      torch_random_seed=0, fewshot_random_seed=0)


def _responses(results):
  """{(task, doc_id, request index): the model's raw answer}."""
  out = {}
  for task, samples in results['samples'].items():
    for sample in samples:
      for i, response in enumerate(sample['resps']):
        out[(task, sample['doc_id'], i)] = response[0]
  return out


@pytest.fixture(scope='module')
def both(hf_dir):
  cwd = os.getcwd()
  os.chdir(REPO)  # the task files name their data relative to the repository
  try:
    theirs = _evaluate(huggingface.HFLM(pretrained=hf_dir, backend='causal', device='cpu',
                                        batch_size=4, dtype='float32'))
    ours = _evaluate(harness.ResearchLM(hf_model=hf_dir, batch_size=4))
  finally:
    os.chdir(cwd)
  return _responses(theirs), _responses(ours), theirs, ours


def test_every_request_is_answered_by_both(both):
  theirs, ours, _, _ = both
  assert set(theirs) == set(ours)
  tasks = {task for task, _, _ in theirs}
  assert tasks == set(TASKS)
  assert len(theirs) == 6 * 3 + 6 + 6  # 3 choices per mc doc, 6 rolling, 6 generations


def test_loglikelihoods_agree_within_1e4(both):
  theirs, ours, _, _ = both
  diffs, per_task = [], {}
  for key, value in theirs.items():
    if key[0] == 'research_toy_gen':
      continue
    ref, got = (value[0], ours[key][0]) if isinstance(value, (tuple, list)) else (value,
                                                                                 ours[key])
    diffs.append(abs(float(ref) - float(got)))
    per_task.setdefault(key[0], []).append(diffs[-1])
    assert np.isfinite(ref) and ref < 0
    if isinstance(value, (tuple, list)):  # the greedy flag of multiple choice
      assert bool(value[1]) == bool(ours[key][1]), key
  for task, values in sorted(per_task.items()):  # quoted in docs/evaluation.md (pytest -s)
    print(f'{task}: {len(values)} log-likelihoods, max |hf - research| = {max(values):.1e}')
  assert max(diffs) < 1e-4, max(diffs)


def test_rolling_documents_span_several_windows(both, hf_dir):
  theirs, ours, _, _ = both
  tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
  with open(os.path.join(TASKS_DIR, 'toy_rolling.jsonl')) as f:
    longest = max(len(tok.encode(line.split('"')[3])) for line in f)
  assert longest > CONTEXT + 1  # at least two windows


def test_greedy_generations_are_identical(both):
  theirs, ours, _, _ = both
  generated = {k: v for k, v in theirs.items() if k[0] == 'research_toy_gen'}
  assert len(generated) == 6
  assert any(v.strip() for v in generated.values())  # not all empty: a real comparison
  for key, value in generated.items():
    assert ours[key] == value, key
  print(f'research_toy_gen: {len(generated)} of {len(generated)} greedy generations identical, '
        f'{sum(bool(v.strip()) for v in generated.values())} non-empty')


def test_task_metrics_agree(both):
  _, _, theirs, ours = both
  for task in TASKS:
    for name, value in theirs['results'][task].items():
      if isinstance(value, float) and not name.endswith('_stderr,none'):
        assert ours['results'][task][name] == pytest.approx(value, rel=1e-5, abs=1e-5), (
            task, name)

