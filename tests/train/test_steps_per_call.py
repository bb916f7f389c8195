"""Several optimizer steps per jitted call (trainer.train.steps_per_call) changes nothing
but the number of calls: the same losses, metrics and parameters, bit for bit, as one step
per call, across logging, evaluation, checkpoints, the stability guard and a resume."""
import os
import shutil

import numpy as np
import pytest

from research import cli
from research.train import trainer
from tests.train import helpers
from tests.train.test_trainer import _final_params

_SAME = ('train_loss', 'grad_norm', 'learning_rate', 'train_accuracy', 'tokens', 'flops',
         'eval_loss', 'eval_accuracy')
# Syncs at steps 4, 5, 8, 10 (checkpoints every 4, logs and evals every 5): with 3 steps
# per call, the calls train steps 1-3, 4, 5, 6-8 and 9-10.
_EXTRA = """
trainer.train.log_every = 5
trainer.train.eval_every = 5
trainer.train.steps_per_call = {k}
"""


@pytest.fixture(scope='module')
def one_step_per_call(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('k1')
  helpers.configure('decoder', steps=10, extra=_EXTRA.format(k=1))
  trainer.train(str(workdir))
  return workdir


def _assert_same_run(got_dir, want_dir, steps):
  got, want = helpers.read_metrics(str(got_dir)), helpers.read_metrics(str(want_dir))
  assert [r['step'] for r in got] == [r['step'] for r in want]
  for key in _SAME:
    assert [r.get(key) for r in got] == [r.get(key) for r in want], key
  for a, b in zip(_final_params(str(got_dir), steps), _final_params(str(want_dir), steps)):
    np.testing.assert_array_equal(a, b)


def _train_one_and_k(tmp_path, steps, extra, k):
  """Trains the same config with 1 and with k steps per call; returns the two run dirs."""
  for per_call in (1, k):
    helpers.configure('decoder', steps=steps,
                      extra=extra + f'\ntrainer.train.steps_per_call = {per_call}')
    trainer.train(str(tmp_path / f'k{per_call}'))
  return tmp_path / 'k1', tmp_path / f'k{k}'


def test_three_steps_per_call_equal_one(one_step_per_call, tmp_path):
  helpers.configure('decoder', steps=10, extra=_EXTRA.format(k=3))
  trainer.train(str(tmp_path))
  assert [r['step'] for r in helpers.read_metrics(str(tmp_path))] == [4, 5, 8, 10]
  _assert_same_run(tmp_path, one_step_per_call, 10)


def test_calls_that_end_at_log_eval_and_checkpoint_steps(tmp_path):
  # Log every 3, eval every 5, checkpoint every 4, 11 steps, 8 steps per call: the calls
  # train 3, 1, 1, 1, 2, 1, 1, 1 steps (up to each step that syncs), with one program.
  one, eight = _train_one_and_k(tmp_path, 11, """
trainer.train.log_every = 3
trainer.train.eval_every = 5
""", 8)
  rows = helpers.read_metrics(str(eight))
  assert [r['step'] for r in rows] == [3, 4, 5, 6, 8, 9, 10, 11]
  assert [r['step'] for r in rows if 'eval_loss' in r] == [5, 10, 11]
  _assert_same_run(eight, one, 11)


def test_resume_with_several_steps_per_call_is_exact(one_step_per_call, tmp_path):
  # A run that stopped after its checkpoint at step 4 (later checkpoints and the marker
  # gone) resumes and ends exactly where the uninterrupted one-step-per-call run ends.
  extra = _EXTRA.format(k=3)
  helpers.configure('decoder', steps=10, extra=extra)
  workdir = tmp_path / 'resumed'
  trainer.train(str(workdir))
  for step in ('8', '10'):
    shutil.rmtree(workdir / 'checkpoints' / step)
  os.remove(workdir / trainer.COMPLETION_MARKER)
  helpers.configure('decoder', steps=10, extra=extra)
  assert trainer.train(str(workdir))['step'] == 10
  _assert_same_run(workdir, one_step_per_call, 10)


def test_the_guard_skips_a_bad_batch_inside_a_call_exactly(tmp_path):
  # Batch ordinal 5 (step 6, in the call that trains steps 6-8) is bad: the guard rolls
  # back to step 4 and replays without it, as with one step per call.
  one, five = _train_one_and_k(tmp_path, 10, """
trainer.train.batch_source = @faulty_source
faulty_source.nan_at = (5,)
trainer.train.log_every = 5
""", 5)
  rows = helpers.read_metrics(str(five))
  assert rows[-1]['guard_events'] == 1 and rows[-1]['guard_rollbacks'] == 1
  _assert_same_run(five, one, 10)


@pytest.mark.parametrize('k', [0, -2])
def test_steps_per_call_of_zero_or_less_is_refused(tmp_path, k):
  helpers.configure('decoder', steps=4, extra=f'trainer.train.steps_per_call = {k}')
  workdir = tmp_path / 'run'
  with pytest.raises(cli.UsageError) as info:
    trainer.train(str(workdir))
  assert str(info.value).splitlines()[0] == (
      f'trainer.train.steps_per_call must be positive, got {k}')
  assert not workdir.exists()
