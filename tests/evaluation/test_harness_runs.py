"""`--model research` on the project's own run directories, and on bad input.

Each number the adapter returns is checked against a plain forward pass of the same params
(research.models.build(...).apply), laid out as the run was trained: a decoder reads
[0] + ids (seqio's BOS, research/data/converters.py), an encoder-decoder reads the context
in its encoder and [0] + continuation in its decoder. Bad input: a request longer than the
context is truncated from the left and said once; an unknown run directory and a task with
empty targets end the command with one line and exit status 1.
"""
import functools
import logging
import os
import subprocess
import sys

os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('HF_HUB_OFFLINE', '1')

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip('lm_eval')  # the test extra

from lm_eval import evaluator  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from research import decoding  # noqa: E402
from research import models  # noqa: E402
from research.data import tokenizers  # noqa: E402
from research.evaluation import harness  # noqa: E402
from tests.decoding import helpers  # noqa: E402
from tests.decoding import test_generate_entry as entry  # noqa: E402

REPO = entry.REPO
TASKS_DIR = os.path.join(REPO, 'tests', 'evaluation', 'tasks')
BYTES = tokenizers.ByteTokenizer()


def _write(workdir, family):
  _, params = helpers.tiny_model(family, **entry.MODEL)
  entry.write_run(workdir, params, steps=(1,))
  if family != 'decoder':
    with open(os.path.join(workdir, 'config.gin'), 'w') as f:
      f.write(entry.CONFIG_GIN.replace("'decoder'", f"'{family}'"))
  config, loaded, _ = decoding.load_run(workdir)
  return config, loaded


@pytest.fixture(scope='module')
def decoder_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('decoder_run'))
  config, params = _write(workdir, 'decoder')
  return workdir, config, params


@pytest.fixture(scope='module')
def lm(decoder_run):
  """One adapter for the decoder tests: each bucket shape compiles once."""
  return harness.ResearchLM(run_dir=decoder_run[0], batch_size=2)


@pytest.fixture(scope='module')
def encdec_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('encdec_run'))
  config, params = _write(workdir, 'encoder_decoder')
  return workdir, config, params


def _requests(kind, args):
  return [Instance(kind, {}, a, i, metadata=('toy', i, 1)) for i, a in enumerate(args)]


REFERENCE_WIDTH = 80


@functools.cache
def _forward(config):
  module = models.build(config)
  return jax.jit(lambda params, tokens: module.apply({'params': params},
                                                     decoder_input_tokens=tokens))


def _decoder_reference(config, params, ids, n_scored):
  """Summed log p of the last `n_scored` of `ids` given the rest, and greedy hits."""
  targets = np.asarray(ids[1:])
  # Right-padded to one width, so one compile serves every reference (causal: the padding
  # after a position does not change its logits).
  inputs = np.zeros((1, REFERENCE_WIDTH), np.int32)
  inputs[0, :len(ids) - 1] = ids[:-1]
  logits = np.asarray(_forward(config)(params, inputs))[0, :len(targets)]
  logp = jax.nn.log_softmax(logits, axis=-1)
  rows = np.arange(len(targets))[-n_scored:]
  return (float(logp[rows, targets[rows]].sum()),
          bool((logits[rows].argmax(-1) == targets[rows]).all()))


def test_decoder_loglikelihood_matches_the_forward_pass(decoder_run, lm):
  workdir, config, params = decoder_run
  del workdir
  pairs = [('def f(x):', ' return x'), ('', 'abc'), ('hello', ' world'), ('a', 'b')]
  got = lm.loglikelihood(_requests('loglikelihood', pairs))
  for (context, continuation), (logp, greedy) in zip(pairs, got):
    ids = [0] + BYTES.encode(context + continuation)
    ref, ref_greedy = _decoder_reference(config, params, ids, len(BYTES.encode(continuation)))
    assert logp == pytest.approx(ref, abs=1e-4)
    assert greedy == ref_greedy
    assert logp < 0


def test_rolling_equals_the_whole_document(decoder_run, lm):
  workdir, config, params = decoder_run
  del workdir
  short, long_ = 'the cat sat.', 'x' * 150  # the second spans three windows of 64
  got = lm.loglikelihood_rolling(_requests('loglikelihood_rolling', [(short,), (long_,)]))
  ids = BYTES.encode(short)
  assert got[0] == pytest.approx(_decoder_reference(config, params, [0] + ids, len(ids))[0],
                                 abs=1e-4)
  ids = BYTES.encode(long_)  # windows: [0] + ids[:63] -> ids[:64], then 64 more, then 22
  expected = _decoder_reference(config, params, [0] + ids[:64], 64)[0]
  expected += _decoder_reference(config, params, ids[63:128], 64)[0]
  expected += _decoder_reference(config, params, ids[85:150], 22)[0]
  assert got[1] == pytest.approx(expected, abs=1e-3)


def test_a_long_request_is_truncated_from_the_left_and_said_once(decoder_run, lm, caplog):
  workdir, config, params = decoder_run
  del workdir
  lm._truncation_logged = False  # pylint: disable=protected-access
  context = ''.join(chr(97 + i % 26) for i in range(100))  # 101 tokens with the BOS
  pairs = [(context, ' yes'), (context + 'q', ' no')]
  with caplog.at_level(logging.WARNING, logger=harness.__name__):
    got = lm.loglikelihood(_requests('loglikelihood', pairs))
  said = [r for r in caplog.records if 'truncated from the left' in r.getMessage()]
  assert len(said) == 1
  for (ctx, cont), (logp, _) in zip(pairs, got):
    ids = ([0] + BYTES.encode(ctx + cont))[-(config.max_length + 1):]
    assert logp == pytest.approx(_decoder_reference(config, params, ids, len(cont))[0],
                                 abs=1e-4)


def test_generate_until_is_greedy_decoding_cut_at_the_stop_string(decoder_run, lm):
  workdir, config, params = decoder_run
  del workdir
  contexts = ['def f(x):', 'hello']
  kwargs = {'until': ['\n\n'], 'max_gen_toks': 12, 'do_sample': False}
  got = lm.generate_until(_requests('generate_until', [(c, dict(kwargs)) for c in contexts]))
  # The same prompts through decoding.generate, at the adapter's padded shape (one compile;
  # padding invariance is tested in tests/decoding).
  prompts = decoding.pad_prompts([[0] + BYTES.encode(c) for c in contexts], width=16)
  out = decoding.generate(config, params, prompts, decoding.DecodeConfig(max_new_tokens=12))
  for row, text in enumerate(got):
    ids = np.asarray(out.best[row, :int(out.lengths[row, 0])]).tolist()
    assert text == BYTES.decode(ids).split('\n\n')[0]
  assert any(got)


def test_a_prefix_lm_run_reads_the_context_bidirectionally(tmp_path):
  from tests.decoding import test_generate_run_text as run_text  # pylint: disable=g-import-not-at-top
  _, params = helpers.tiny_model(**dict(entry.MODEL, num_layers=2))
  workdir = str(tmp_path / 'run')
  entry.write_run(workdir, params, steps=(1,))
  with open(os.path.join(workdir, 'config.gin'), 'w') as f:
    f.write(run_text.PREFIX_GIN)
  config, params, _ = decoding.load_run(workdir)
  prefix_lm = harness.ResearchLM(run_dir=workdir, batch_size=2)
  assert prefix_lm.prefix_lm
  context, continuation = 'def f(x):', ' return x'
  (got, _), = prefix_lm.loglikelihood(_requests('loglikelihood', [(context, continuation)]))
  ids = [0] + BYTES.encode(context + continuation)
  n_ctx, n_cont = 1 + len(BYTES.encode(context)), len(BYTES.encode(continuation))
  inputs = np.asarray([ids[:-1]])
  prefix = (np.arange(len(ids) - 1) < n_ctx)[None].astype(np.int32)  # seqio: inputs + 1
  logits = np.asarray(models.build(config).apply(
      {'params': params}, decoder_input_tokens=inputs, decoder_causal_attention=prefix))[0]
  logp = jax.nn.log_softmax(logits, axis=-1)
  rows = np.arange(len(ids) - 1)[-n_cont:]
  assert got == pytest.approx(float(logp[rows, np.asarray(ids[1:])[rows]].sum()), abs=1e-4)
  causal = harness.ResearchLM(run_dir=workdir, batch_size=2, prefix_lm='false')
  (other, _), = causal.loglikelihood(_requests('loglikelihood', [(context, continuation)]))
  assert abs(other - got) > 1e-3  # the mode shows in the score


@pytest.mark.slow  # compiles an encoder-decoder forward and decode loop: ~30 s
def test_encoder_decoder_loglikelihood_and_generation(encdec_run):
  workdir, config, params = encdec_run
  lm = harness.ResearchLM(run_dir=workdir, batch_size=2)
  assert lm.backend == 'seq2seq'
  pairs = [('translate: cat', ' chat'), ('q', 'answer')]
  got = lm.loglikelihood(_requests('loglikelihood', pairs))
  module = models.build(config)
  for (context, continuation), (logp, _) in zip(pairs, got):
    enc, cont = BYTES.encode(context), BYTES.encode(continuation)
    logits = np.asarray(module.apply({'params': params},
                                     encoder_input_tokens=np.asarray([enc]),
                                     decoder_input_tokens=np.asarray([[0] + cont[:-1]])))[0]
    logp_ref = jax.nn.log_softmax(logits, axis=-1)[np.arange(len(cont)), cont].sum()
    assert logp == pytest.approx(float(logp_ref), abs=1e-4)
  kwargs = {'until': ['zz'], 'max_gen_toks': 6, 'do_sample': False}
  text = lm.generate_until(_requests('generate_until', [('abc', kwargs)]))[0]
  out = decoding.generate(config, params, [BYTES.encode('abc')],
                          decoding.DecodeConfig(max_new_tokens=6))
  assert text == BYTES.decode(np.asarray(out.best[0, :int(out.lengths[0, 0])]).tolist()
                              ).split('zz')[0]


def test_an_empty_target_is_refused_before_any_work(lm):
  requests = _requests('loglikelihood', [('abc', ' d'), ('abc', '')])
  with pytest.raises(harness.HarnessError, match="task 'toy' doc 1: the target '' is empty"):
    lm.loglikelihood(requests)


@pytest.mark.slow  # indexes the harness's task registry: ~20 s
def test_a_task_with_empty_targets_is_refused_naming_it(decoder_run):
  workdir, _, _ = decoder_run
  cwd = os.getcwd()
  os.chdir(REPO)
  try:
    with pytest.raises(harness.HarnessError, match="task 'research_toy_empty' doc 0: the "
                       "target '' is empty"):
      evaluator.simple_evaluate(model=harness.ResearchLM(run_dir=workdir),
                                tasks=['research_toy_empty'],
                                task_manager=TaskManager(include_path=TASKS_DIR))
  finally:
    os.chdir(cwd)


@pytest.mark.parametrize('model_args,message', [
    ('run_dir=/no/such/run', "run_dir '/no/such/run' is not a directory"),
    ('run_dir={tmp},batch_size=0', "run_dir '{tmp}' has no config.gin"),
    ('hf_model=/no/such/dir', "hf_model '/no/such/dir' is not a directory"),
])
def test_bad_model_args_fail_in_process(model_args, message, tmp_path):
  args = dict(kv.split('=') for kv in model_args.format(tmp=tmp_path).split(','))
  with pytest.raises(harness.HarnessError, match=message.format(tmp=tmp_path)):
    harness.ResearchLM(**args)


def test_bad_numbers_in_model_args(decoder_run):
  workdir, _, _ = decoder_run
  with pytest.raises(harness.HarnessError, match="batch_size='x' must be a positive"):
    harness.ResearchLM(run_dir=workdir, batch_size='x')
  with pytest.raises(harness.HarnessError, match='max_length=100 exceeds the model context'):
    harness.ResearchLM(run_dir=workdir, max_length=100)
  with pytest.raises(harness.HarnessError, match='exactly one of'):
    harness.ResearchLM()


@pytest.mark.slow  # a fresh process importing jax and lm_eval: ~20 s
def test_the_command_line_names_an_unknown_run_directory_in_one_line(tmp_path):
  missing = str(tmp_path / 'nope')
  result = subprocess.run(
      [sys.executable, '-m', 'research.evaluation', '--model', 'research', '--model_args',
       f'run_dir={missing}', '--tasks', 'research_toy_mc', '--include_path', TASKS_DIR],
      capture_output=True, text=True, cwd=REPO, timeout=120,
      env=dict(os.environ, PYTHONPATH=REPO))
  assert result.returncode == 1, result.stderr[-2000:]
  assert 'Traceback' not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last == (f"python -m research.evaluation: error: run_dir '{missing}' is not a "
                  'directory')
