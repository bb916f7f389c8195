"""The training loop in-process on one CPU: run directory, guard, accumulation, eval."""
import json
import math
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from research.train import checkpoints as ckpt_lib
from research.train import guard as guard_lib
from research.train import trainer
from tests.train import helpers


def test_run_directory_layout_and_metrics(clean_run):
  workdir, summary = clean_run
  steps = 10
  assert summary['step'] == steps and not summary['preempted']
  names = set(os.listdir(workdir))
  assert {'config.gin', 'run_info.json', 'metrics.jsonl', 'tensorboard', 'checkpoints',
          trainer.COMPLETION_MARKER} <= names
  assert not [n for n in names if n.startswith('.tmp')]  # atomic writes left no temp files
  assert os.listdir(workdir / 'tensorboard')
  assert sorted(os.listdir(workdir / 'checkpoints'), key=int) == ['4', '8', '10']  # keep 3
  assert 'TransformerConfig.d_model = 32' in (workdir / 'config.gin').read_text()

  info = json.loads((workdir / 'run_info.json').read_text())
  assert info['n_params'] == info['n_params_actual']
  assert info['n_params'] == info['n_params_embedding'] + info['n_params_nonembed']
  assert set(info['flops_per_token']) >= {'6N', 'kaplan', 'chinchilla'}
  tokens = steps * 8 * 16
  assert info['tokens'] == tokens and info['seed'] == 0 and info['versions']['jax']

  rows = helpers.read_metrics(str(workdir))
  assert [r['step'] for r in rows] == list(range(1, steps + 1))
  for row in rows:
    for key in ('train_loss', 'learning_rate', 'tokens', 'flops', 'grad_norm',
                'tokens_per_s', 'mfu', 'flops_kaplan', 'flops_chinchilla', 'guard_events'):
      assert key in row, key
  assert rows[-1]['tokens'] == tokens
  assert rows[-1]['flops'] == pytest.approx(info['flops_per_token']['6N'] * tokens)
  assert rows[0]['learning_rate'] == 0.0  # warm-up starts at zero
  assert rows[2]['learning_rate'] == pytest.approx(1e-2)  # peak right after warm-up
  assert rows[-1]['train_loss'] < rows[0]['train_loss']
  eval_rows = [r for r in rows if 'eval_loss' in r]
  assert [r['step'] for r in eval_rows] == [5, 10]
  assert eval_rows[-1]['eval_perplexity'] == pytest.approx(
      math.exp(eval_rows[-1]['eval_loss']), rel=1e-5)
  assert 0.0 <= eval_rows[-1]['eval_accuracy'] <= 1.0
  completed = json.loads((workdir / trainer.COMPLETION_MARKER).read_text())
  assert completed['step'] == steps

  # Restarting a finished run is a no-op: nothing recomputed, nothing rewritten.
  before = (workdir / 'metrics.jsonl').read_text()
  helpers.configure('decoder', steps=steps)
  assert trainer.train(str(workdir))['step'] == steps
  assert (workdir / 'metrics.jsonl').read_text() == before


def test_injected_nan_is_rolled_back_skipped_and_counted(tmp_path):
  # Batch ordinal 5 is step 6's batch; the guard sees it at the sync after step 6 (every
  # 3 steps), rolls back to the checkpoint at 4 and replays steps 5.. without it.
  helpers.configure('decoder', steps=10, extra="""
trainer.train.batch_source = @faulty_source
trainer.train.log_every = 3
faulty_source.nan_at = (5,)
""")
  summary = trainer.train(str(tmp_path))
  assert summary['step'] == 10
  assert summary['guard_events'] == 1 and summary['guard_rollbacks'] == 1
  rows = helpers.read_metrics(str(tmp_path))
  # Every 3 steps plus each checkpoint step; each logged once although 5 and 6 ran twice.
  assert [r['step'] for r in rows] == [3, 4, 6, 8, 9, 10]
  # TensorBoard too: the rollback dropped the events of step 6's first pass.
  assert helpers.tensorboard_steps(str(tmp_path)) == [3, 4, 6, 8, 9, 10]
  assert all(np.isfinite(r['train_loss']) for r in rows)
  assert rows[-1]['guard_events'] == 1


def test_injected_nan_is_skipped_exactly(clean_run, tmp_path):
  # Skipping means: roll back, then replay as if the bad batch had never been in the data.
  # So the run equals, step for step and bit for bit, a clean run whose source omits batch
  # ordinal 5 (and equals the uninterrupted run until step 5, whose batch is ordinal 4).
  helpers.configure('decoder', steps=10, extra="""
trainer.train.batch_source = @faulty_source
faulty_source.nan_at = (5,)
""")
  trainer.train(str(tmp_path / 'nan'))
  helpers.configure('decoder', steps=10, extra="""
trainer.train.batch_source = @faulty_source
faulty_source.omit = (5,)
""")
  trainer.train(str(tmp_path / 'omitted'))
  nan_rows = helpers.read_metrics(str(tmp_path / 'nan'))
  omitted_rows = helpers.read_metrics(str(tmp_path / 'omitted'))
  clean_rows = helpers.read_metrics(str(clean_run[0]))
  assert [r['step'] for r in nan_rows] == list(range(1, 11))
  assert [r['step'] for r in omitted_rows] == list(range(1, 11))
  for key in ('train_loss', 'grad_norm', 'learning_rate', 'tokens'):
    assert [r[key] for r in nan_rows] == [r[key] for r in omitted_rows], key
  assert [r['train_loss'] for r in nan_rows[:5]] == [r['train_loss'] for r in clean_rows[:5]]
  assert nan_rows[5]['train_loss'] != clean_rows[5]['train_loss']
  assert nan_rows[-1]['guard_events'] == 1 and omitted_rows[-1]['guard_events'] == 0
  got = _final_params(str(tmp_path / 'nan'), 10)
  want = _final_params(str(tmp_path / 'omitted'), 10)
  assert len(got) == len(want) > 0
  for a, b in zip(got, want):
    np.testing.assert_array_equal(a, b)


def _final_params(workdir, step):
  """The parameters leaves of the checkpoint at `step`, as numpy arrays."""
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'),
                                  item_names=('state', 'host'))
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(), host=ocp.args.JsonRestore()))
  manager.close()
  return [np.asarray(x) for x in jax.tree.leaves(restored['state']['params'])]


def test_a_checkpoint_unreadable_at_rollback_stops_with_one_clear_error(tmp_path,
                                                                        monkeypatch):
  # The guard must roll back to step 4, but that checkpoint cannot be read: the run stops
  # with an error that says where, and the metrics it logged so far are on disk.
  helpers.configure('decoder', steps=10, extra="""
trainer.train.batch_source = @faulty_source
trainer.train.log_every = 3
faulty_source.nan_at = (5,)
""")

  def unreadable(self, step, abstract):
    raise ckpt_lib.CheckpointError(f'checkpoint at step {step} is corrupt')
  monkeypatch.setattr(ckpt_lib.Checkpointer, 'restore', unreadable)
  with pytest.raises(ckpt_lib.CheckpointError) as info:
    trainer.train(str(tmp_path))
  # (gin appends the configurable's name on a line of its own; train.py prints line one)
  assert str(info.value).splitlines()[0] == ('stability guard: rolling back from step 6: '
                                             'checkpoint at step 4 is corrupt')
  assert [r['step'] for r in helpers.read_metrics(str(tmp_path))] == [3, 4]


def test_repeated_failure_stops_with_a_clear_error(tmp_path):
  helpers.configure('decoder', steps=10, extra="""
trainer.train.batch_source = @faulty_source
faulty_source.nan_at = (5, 6, 7, 8, 9, 10, 11, 12)
GuardConfig.max_rollbacks = 2
""")
  with pytest.raises(guard_lib.StabilityError, match='3 rollbacks'):
    trainer.train(str(tmp_path))


def test_gradient_accumulation_equals_one_big_batch(clean_run, tmp_path):
  helpers.configure('decoder', steps=10, extra='StepConfig.num_microbatches = 4')
  trainer.train(str(tmp_path))
  accumulated = [r['train_loss'] for r in helpers.read_metrics(str(tmp_path))]
  clean = [r['train_loss'] for r in helpers.read_metrics(str(clean_run[0]))]
  np.testing.assert_allclose(accumulated, clean, rtol=1e-5)


def test_remat_and_adafactor_train(tmp_path):
  # Per-block rematerialization recomputes each block's forward pass; it must not change
  # the numbers. With dropout on (the recomputed forward must draw the same masks), the
  # remat run's losses, gradient norms and final parameters match the plain run's to fp32
  # rounding.
  runs = {}
  for policy in ('none', 'full'):
    helpers.configure('encoder', steps=4, extra=f"""
TransformerConfig.remat_policy = '{policy}'
make_optimizer.name = 'adafactor'
TransformerConfig.dropout_rate = 0.1
""")
    summary = trainer.train(str(tmp_path / policy))
    assert summary['step'] == 4 and np.isfinite(summary['train_loss'])
    runs[policy] = helpers.read_metrics(str(tmp_path / policy))
  plain, remat = runs['none'], runs['full']
  assert [r['step'] for r in remat] == [r['step'] for r in plain] == [1, 2, 3, 4]
  for key in ('train_loss', 'grad_norm'):
    np.testing.assert_allclose([r[key] for r in remat], [r[key] for r in plain],
                               rtol=1e-6, atol=0, err_msg=key)
  got, want = _final_params(str(tmp_path / 'full'), 4), _final_params(str(tmp_path / 'none'), 4)
  assert len(got) == len(want) > 0
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
