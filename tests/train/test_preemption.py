"""Kill and resume in child processes: SIGKILL after a checkpoint, and SIGTERM."""
import os
import signal

import numpy as np
import orbax.checkpoint as ocp

from tests.train import helpers


def _final_params(workdir, step):
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'),
                                  item_names=('state', 'host'))
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(), host=ocp.args.JsonRestore()))
  manager.close()
  return restored['state']['params']


def _steps(workdir):
  return sorted(int(n) for n in os.listdir(os.path.join(workdir, 'checkpoints'))
                if n.isdigit())


def test_sigkill_after_checkpoint_then_restart_equals_uninterrupted(clean_run, tmp_path):
  workdir = str(tmp_path / 'run')
  release = str(tmp_path / 'never')
  # The child checkpoints at 4, logs steps 5 and 6, then blocks drawing batch ordinal 6
  # (step 7's): SIGKILL lands after the checkpoint at 4 with later steps half-recorded.
  killed = helpers.start_child(workdir, extra=f"""
trainer.train.batch_source = @faulty_source
faulty_source.pause_at = 6
faulty_source.release_file = {release!r}
CheckpointConfig.async_save = False
""")
  metrics = os.path.join(workdir, 'metrics.jsonl')
  helpers.wait_for(lambda: os.path.exists(metrics) and
                   '"step": 6' in open(metrics).read(), proc=killed)
  assert 4 in _steps(workdir)
  killed.send_signal(signal.SIGKILL)
  killed.wait()

  resumed = helpers.start_child(workdir)
  out, _ = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, out

  clean_dir = str(clean_run[0])
  got = helpers.read_metrics(workdir)
  want = helpers.read_metrics(clean_dir)
  assert [r['step'] for r in got] == list(range(1, 11))
  assert helpers.tensorboard_steps(workdir) == list(range(1, 11))  # 5 and 6 once each
  for key in ('train_loss', 'grad_norm', 'learning_rate', 'tokens', 'flops'):
    assert [r[key] for r in got] == [r[key] for r in want], key
  got_params, want_params = _final_params(workdir, 10), _final_params(clean_dir, 10)
  for a, b in zip(jax_leaves(got_params), jax_leaves(want_params)):
    np.testing.assert_array_equal(a, b)


def jax_leaves(tree):
  import jax
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_sigterm_saves_the_current_step_and_exits_zero(tmp_path):
  workdir = str(tmp_path / 'run')
  proc = helpers.start_child(workdir, steps=200, extra="""
trainer.train.batch_source = @faulty_source
faulty_source.slow_after = 3
CheckpointConfig.every_steps = 1000
""")
  metrics = os.path.join(workdir, 'metrics.jsonl')
  helpers.wait_for(lambda: os.path.exists(metrics) and
                   '"step": 4' in open(metrics).read(), proc=proc)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out
  assert "'preempted': True" in out
  last_logged = helpers.read_metrics(workdir)[-1]['step']
  assert 4 <= last_logged < 200
  assert _steps(workdir) == [0, last_logged]  # the start and the step it was stopped at
  assert not os.path.exists(os.path.join(workdir, 'COMPLETED'))
