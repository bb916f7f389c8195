"""The held-out evaluation: one stream whatever the run's seed, a larger final evaluation
with a standard error, and the per-sequence losses it saves."""
import json
import math

import flax.linen as nn
import gin
import jax
import numpy as np
import pytest

from research import heldout
from research import models
from research import runs
from research.models import losses
from research.data import sources
from research.train import evaluation
from research.train import sources as train_sources
from research.train import synthetic
from research.train import tasks
from research.train import trainer
from tests.train import helpers

SOURCE_CALLS = []  # (split, seed) of every batch source the trainer made


@gin.configurable
def seed_recording_source(**kwargs):
  SOURCE_CALLS.append((kwargs['split'], kwargs['seed']))
  return synthetic.synthetic_source(**kwargs)


@pytest.fixture(scope='module')
def seed_one_run(tmp_path_factory):
  """Seed 1 (the clean run is seed 0), 6 steps, evals at 3 and 6 of 2 batches of 8 rows,
  the final one of 5 batches."""
  SOURCE_CALLS.clear()
  workdir = tmp_path_factory.mktemp('seed1')
  helpers.configure('decoder', steps=6, extra="""
trainer.train.batch_source = @seed_recording_source
trainer.train.seed = 1
trainer.train.eval_every = 3
trainer.train.final_eval_batches = 5
""")
  summary = trainer.train(str(workdir))
  return workdir, summary, list(SOURCE_CALLS)


def _final(workdir) -> heldout.HeldOutLosses:
  return heldout.read_final(str(workdir))


def test_the_eval_split_shares_no_file_with_training(tmp_path):
  assert train_sources.SPLITS == {'train': 'train', 'eval': 'validation'}
  builder = sources.get_builder('python_stdlib/small', str(tmp_path))
  paths = {}
  for split in ('train', 'validation'):
    records = builder.as_data_source(split=split)
    paths[split] = {records[i]['path'] for i in range(len(records))}
  assert paths['validation'] and len(paths['train']) > 100
  assert not paths['train'] & paths['validation']


def test_the_eval_stream_does_not_depend_on_the_run_seed(seed_one_run, clean_run):
  workdir, _, calls = seed_one_run
  assert {seed for split, seed in calls if split == 'train'} == {1}
  assert {seed for split, seed in calls if split == 'eval'} == {evaluation.EVAL_SEED}
  # Read once: the final evaluation's 5 batches, which the intermediate one samples.
  assert len([c for c in calls if c[0] == 'eval']) == 1
  seed_one, seed_zero = _final(workdir), _final(clean_run[0])
  assert len(seed_zero) == 16 and len(seed_one) == 40
  # The same sequences in the same order (the seed-0 run read the first 2 of the 5
  # batches), scored by two different models.
  np.testing.assert_array_equal(seed_one.fingerprint[:16], seed_zero.fingerprint)
  np.testing.assert_array_equal(seed_one.tokens[:16], seed_zero.tokens)
  # Equal prints exactly where the rows are equal (small progressions repeat).
  source = synthetic.synthetic_source('decoder', 8, {'targets': 16}, evaluation.EVAL_SEED,
                                      split='eval', vocab_size=64)
  rows = np.concatenate([next(source)['decoder_target_tokens'] for _ in range(5)])
  pairs = {(r.tobytes(), p) for r, p in zip(rows, seed_one.fingerprint.tolist())}
  assert len(pairs) == len({r for r, _ in pairs}) == len({p for _, p in pairs}) < 40
  assert not np.allclose(seed_one.loss_sum[:16], seed_zero.loss_sum)


def test_final_eval_batches_are_read_only_at_the_last_step(seed_one_run):
  workdir, summary, _ = seed_one_run
  evals = [r for r in helpers.read_metrics(str(workdir)) if 'eval_loss' in r]
  assert [r['step'] for r in evals] == [3, 6]
  assert [r['eval_sequences'] for r in evals] == [2 * 8, 5 * 8]
  assert summary['eval_sequences'] == 40 and summary['eval_loss_se'] > 0
  completed = json.loads((workdir / runs.COMPLETION_MARKER).read_text())
  assert completed['eval_loss_se'] == summary['eval_loss_se']
  assert not [p.name for p in workdir.iterdir() if p.name.startswith('.tmp')]


def test_eval_loss_se_is_the_ratio_estimators_se_over_the_saved_sequences(seed_one_run):
  workdir, summary, _ = seed_one_run
  saved = _final(workdir)
  loss, tokens = saved.loss_sum, saved.tokens
  assert (tokens == 16).all()  # synthetic rows: 16 targets, none padding
  n, ratio = len(loss), loss.sum() / tokens.sum()
  linearized = (loss - ratio * tokens) / tokens.mean()
  se = math.sqrt(np.sum(linearized ** 2) / (n * (n - 1)))
  assert summary['eval_loss'] == pytest.approx(ratio, rel=1e-6)
  assert summary['eval_loss_se'] == pytest.approx(se, rel=1e-9)
  # With equal token counts it is the textbook SE of the mean per-token loss.
  per_token = loss / tokens
  assert se == pytest.approx(per_token.std(ddof=1) / math.sqrt(n), rel=1e-9)


def test_eval_step_rows_add_up_to_the_batch_and_print_their_tokens():
  helpers.configure('decoder')
  config = models.TransformerConfig()
  module = models.build(config)
  batch = synthetic.make_batch('decoder', np.random.default_rng(0), 4,
                               {'targets': 16}, config.vocab_size)
  batch['decoder_target_tokens'][3] = batch['decoder_target_tokens'][0]
  batch['decoder_loss_weights'][1, 10:] = 0.0
  inputs = tasks.model_inputs('decoder', batch)
  params = nn.meta.unbox(module.init(jax.random.PRNGKey(0), **inputs,
                                     deterministic=True)['params'])
  out = jax.device_get(jax.jit(evaluation.make_eval_step(module, 'decoder'))(params, batch))
  assert out['loss_sum'].shape == (4,)
  np.testing.assert_allclose(out['weight_sum'], [16, 10, 16, 16])
  logits = module.apply({'params': params}, **inputs, deterministic=True)
  whole, _, _ = losses.cross_entropy_loss(logits, batch['decoder_target_tokens'],
                                          batch['decoder_loss_weights'])
  assert out['loss_sum'].sum() == pytest.approx(float(whole), rel=1e-5)
  prints = out['fingerprint'].tolist()
  assert prints[3] == prints[0] and len(set(prints[:3])) == 3


def test_intermediate_evals_sample_the_final_evals_batches_evenly(tmp_path, monkeypatch):
  seen = []
  real = evaluation.evaluate

  def recording(step_fn, source, num_batches):
    batches = list(source)[:num_batches]
    seen.append([b['decoder_target_tokens'].tobytes() for b in batches])
    return real(step_fn, iter(batches), num_batches)

  monkeypatch.setattr(evaluation, 'evaluate', recording)
  helpers.configure('decoder', steps=4, extra="""
trainer.train.eval_every = 2
trainer.train.eval_batches = 2
trainer.train.final_eval_batches = 5
""")
  trainer.train(str(tmp_path / 'run'))
  source = synthetic.synthetic_source('decoder', 8, {'targets': 16}, evaluation.EVAL_SEED,
                                      split='eval', vocab_size=64)
  stream = [next(source)['decoder_target_tokens'].tobytes() for _ in range(5)]
  # Step 2: batches 0 and 4 of the 5 (spread evenly), step 4: all of them.
  assert seen == [[stream[0], stream[4]], stream]
