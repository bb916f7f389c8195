"""Multi-host training as two local processes (one CPU device each) on localhost.

The global batch of every step is the same on one host or two (host-invariant data order),
so the two-process run is compared with one process; a job killed with SIGKILL or stopped
with SIGTERM resumes, on two processes or on one, to the numbers of the uninterrupted job.
About 20 s a test on two cores (the shared two-process job another 20 s).
"""
import os
import shutil
import signal

import pytest

from tests.parallel import multiprocess as mp
from tests.train import helpers

STEPS = 12
RTOL = 1e-4  # one device or two sum the gradient in a different order


@pytest.fixture(scope='module')
def gin_file(tmp_path_factory):
  return mp.write_gin(str(tmp_path_factory.mktemp('gin')), STEPS)


@pytest.fixture(scope='module')
def two_process_run(gin_file, tmp_path_factory):
  """The uninterrupted two-process job: every step logged, checkpoints at 4, 8, 12."""
  workdir = str(tmp_path_factory.mktemp('two') / 'run')
  mp.run(gin_file, workdir, 2)
  return workdir


def _close(got, want, rtol=RTOL):
  assert [r['step'] for r in got] == [r['step'] for r in want]
  for a, b in zip(got, want):
    assert abs(a['train_loss'] - b['train_loss']) <= rtol * abs(b['train_loss']), (a, b)
    assert a['tokens'] == b['tokens']


def test_two_processes_train_the_same_global_batches_as_one(gin_file, two_process_run,
                                                            tmp_path):
  one = str(tmp_path / 'one')
  mp.run(gin_file, one, 1)
  two = mp.read_metrics(two_process_run)
  assert [r['step'] for r in two] == list(range(1, STEPS + 1))
  _close(two, mp.read_metrics(one))
  # Not trivially equal: the loss moves, so a different data order would show.
  assert two[-1]['train_loss'] < two[0]['train_loss'] - 0.5
  assert mp.checkpoint_steps(two_process_run) == [4, 8, 12]
  assert os.path.exists(os.path.join(two_process_run, 'COMPLETED'))


def _killed_after_checkpoint(gin_file, workdir, tmp_path):
  """A two-process job SIGKILLed while both processes wait to draw step 7's batch: the
  checkpoint at 4 is written, steps 5 and 6 are logged and lost."""
  release = str(tmp_path / 'never')
  procs = mp.start(gin_file, workdir, 2, bindings=[
      'trainer.train.batch_source = @pausing_source', 'pausing_source.pause_at = 6',
      f'pausing_source.release_file = {release!r}', 'CheckpointConfig.async_save = False'])
  metrics = os.path.join(workdir, 'metrics.jsonl')
  mp.wait_for(lambda: os.path.exists(metrics) and '"step": 6' in open(metrics).read(), procs)
  for p in procs:
    p.send_signal(signal.SIGKILL)
  mp.finish(procs)
  assert mp.checkpoint_steps(workdir) == [0, 4]


def test_sigkill_then_restart_on_two_or_one_processes_equals_uninterrupted(
    gin_file, two_process_run, tmp_path):
  killed = str(tmp_path / 'killed')
  _killed_after_checkpoint(gin_file, killed, tmp_path)
  on_one = str(tmp_path / 'on_one')
  shutil.copytree(killed, on_one)
  want = mp.read_metrics(two_process_run)

  mp.run(gin_file, killed, 2)  # the same two commands again
  got = mp.read_metrics(killed)
  assert [r['step'] for r in got] == list(range(1, STEPS + 1))
  assert [r['train_loss'] for r in got] == [r['train_loss'] for r in want]
  assert [r['tokens'] for r in got] == [r['tokens'] for r in want]
  assert helpers.tensorboard_steps(killed) == list(range(1, STEPS + 1))

  mp.run(gin_file, on_one, 1)  # resumed on another host count
  _close(mp.read_metrics(on_one), want)
  assert helpers.tensorboard_steps(on_one) == list(range(1, STEPS + 1))


def test_sigterm_to_one_process_saves_the_same_step_on_both_and_resumes(
    gin_file, two_process_run, tmp_path):
  workdir = str(tmp_path / 'run')
  release = str(tmp_path / 'release')
  procs = mp.start(gin_file, workdir, 2, bindings=[
      'trainer.train.batch_source = @pausing_source', 'pausing_source.pause_at = 6',
      f'pausing_source.release_file = {release!r}'])
  metrics = os.path.join(workdir, 'metrics.jsonl')
  mp.wait_for(lambda: os.path.exists(metrics) and '"step": 6' in open(metrics).read(), procs)
  procs[1].send_signal(signal.SIGTERM)  # host 1 only; host 0 never sees a signal
  open(release, 'w').close()
  results = mp.finish(procs, timeout=120)  # a host left behind would wait for ever
  for i, (code, out) in enumerate(results):
    assert code == 0, f'process {i} exited {code}:\n{out[-3000:]}'
    assert 'preempted: checkpoint saved at step 7' in out, out[-3000:]
  assert mp.checkpoint_steps(workdir)[-1] == 7
  assert not os.path.exists(os.path.join(workdir, 'COMPLETED'))

  mp.run(gin_file, workdir, 2)
  got, want = mp.read_metrics(workdir), mp.read_metrics(two_process_run)
  assert [r['train_loss'] for r in got] == [r['train_loss'] for r in want]
  assert helpers.tensorboard_steps(workdir) == list(range(1, STEPS + 1))


@pytest.mark.slow
def test_two_processes_match_one_over_the_first_hundred_logged_steps(tmp_path):
  """The equality above, over 100 logged steps (a checkpoint every 50), at tiny.gin's
  peak learning rate: the two sum a gradient in different orders, and at the faster rate
  of the tests above (1e-2) that rounding grows past 1e-4 by step 21."""
  gin_100 = mp.write_gin(str(tmp_path), 100)
  one, two = str(tmp_path / 'one'), str(tmp_path / 'two')
  bindings = ['CheckpointConfig.every_steps = 50', 'make_schedule.peak = 3e-3']
  mp.run(gin_100, one, 1, bindings=bindings, timeout=600)
  mp.run(gin_100, two, 2, bindings=bindings, timeout=600)
  got = mp.read_metrics(two)
  assert [r['step'] for r in got] == list(range(1, 101))
  _close(got, mp.read_metrics(one))
