"""Sweeps on SLURM that keep work: the time-limit requeue from a checkpoint, job ids kept for a
re-launched sweep, job arrays, multi-node runs, and SlurmConfig checked at start-up.

Jobs run through submitit's LocalExecutor, which sends the preemption signal the way SLURM
does (USR2, signal_delay_s before the limit) and requeues on the same exit path; the sbatch
text, arrays and sacct-based re-attaching are checked against fake sbatch / sacct / srun
scripts on PATH. Most runs use tests/scaling/fake_trainer.py; one uses the real trainer.
"""
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import submitit

from research import runs
from research import sweeps
from research.sweeps import executors

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE_TRAINER = [sys.executable, '-m', 'tests.scaling.fake_trainer']


def _env(**extra):
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(p for p in (REPO, env.get('PYTHONPATH', '')) if p)
  env.update(extra)
  return env


def _starts(run_dir):
  path = os.path.join(run_dir, 'fake_starts.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f]


def _wait_until(predicate, timeout, what):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return
    time.sleep(0.2)
  raise AssertionError(f'timed out waiting for {what}')


def _children(pid):
  try:
    with open(f'/proc/{pid}/task/{pid}/children') as f:
      return [int(x) for x in f.read().split()]
  except OSError:
    return []


def _kill_tree(pid):
  """Ends a job's controller and what it started (processes these tests started)."""
  for child in _children(pid):
    _kill_tree(child)
  try:
    os.kill(pid, signal.SIGKILL)
  except ProcessLookupError:
    pass


# --- start-up checks ------------------------------------------------------------------------

@pytest.mark.parametrize('kwargs,message', [
    (dict(nodes=0), 'SlurmConfig.nodes must be an integer >= 1, got 0'),
    (dict(tasks_per_node=-1), 'SlurmConfig.tasks_per_node must be an integer >= 1'),
    (dict(array_parallelism=0), 'SlurmConfig.array_parallelism must be None'),
    (dict(timeout_min=0), 'SlurmConfig.timeout_min must be > 0'),
    (dict(timeout_min=1, signal_delay_s=60), 'must be shorter than the time limit'),
])
def test_an_impossible_slurm_config_is_refused(kwargs, message):
  with pytest.raises(sweeps.SweepError, match=re.escape(message)):
    sweeps.SlurmConfig(**kwargs)


@pytest.mark.parametrize('binding,executor,message', [
    ('sweep.SlurmConfig.nodes = 0', 'slurm', 'SlurmConfig.nodes must be an integer >= 1'),
    ('sweep.SlurmConfig.array_parallelism = 0', 'slurm',
     'SlurmConfig.array_parallelism must be None'),
    ('sweep.SlurmConfig.tasks_per_node = 2', 'submitit_local',
     'several processes per run need --executor=slurm'),
])
def test_a_bad_slurm_config_fails_at_plan_time_in_one_line(tmp_path, binding, executor,
                                                           message):
  proc = subprocess.run(
      [sys.executable, '-m', 'research.sweeps', '--gin_file=gin_configs/sweeps/ci.gin',
       f'--gin_bindings={binding}', f'--executor={executor}', '--plan_only'],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stdout + proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], proc.stderr
  assert not proc.stdout.strip()


def test_multi_process_runs_get_multihost():
  assert executors.multihost('slurm', sweeps.SlurmConfig(nodes=2))
  assert executors.multihost('slurm', sweeps.SlurmConfig(tasks_per_node=4))
  assert not executors.multihost('slurm', sweeps.SlurmConfig())
  assert not executors.multihost('local', None)
  config = sweeps.SweepConfig(sizes={'a': {}}, token_budgets=(1e4,))
  point = sweeps.Point(run_id='r', size='a', family='decoder', objective='causal_lm', seed=0,
                       flop_budget=None, token_budget=1e4, train_steps=1, tokens=1,
                       n_params=1, flops_per_token=1.0, gin_files=(), bindings=())
  assert sweeps.command(config, point, '/tmp/r', multihost=True)[-1] == '--multihost'
  assert '--multihost' not in sweeps.command(config, point, '/tmp/r')


# --- the sbatch side, against fake SLURM commands --------------------------------------------

FAKE_SBATCH = """#!/bin/bash
n=$(( $(cat "$FAKE_SLURM/next") )); echo $(( n + 1 )) > "$FAKE_SLURM/next"
cp "${@: -1}" "$FAKE_SLURM/sbatch.$n"
echo "Submitted batch job $n"
"""
FAKE_SACCT = """#!/bin/bash
echo "JobID|State|NodeList"
cat "$FAKE_SLURM/states"
"""


_FIRST_JOB_ID = [7000]


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
  bin_dir, state = tmp_path / 'bin', tmp_path / 'slurm'
  bin_dir.mkdir()
  state.mkdir()
  # Job ids differ between tests: submitit's sacct watcher is shared by the process.
  _FIRST_JOB_ID[0] += 100
  (state / 'next').write_text(str(_FIRST_JOB_ID[0]))
  submitit.SlurmJob.watcher.clear()
  (state / 'states').write_text('')
  for name, text in (('sbatch', FAKE_SBATCH), ('sacct', FAKE_SACCT),
                     ('srun', '#!/bin/bash\n'),
                     ('scancel', '#!/bin/bash\necho "$@" >> "$FAKE_SLURM/scancel_calls"\n')):
    (bin_dir / name).write_text(text)
    (bin_dir / name).chmod(0o755)
  monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
  monkeypatch.setenv('FAKE_SLURM', str(state))
  return state


def _sbatch_files(state):
  return sorted(p for p in state.iterdir() if p.name.startswith('sbatch.'))


def test_slurm_jobs_ask_for_nodes_tasks_and_the_preemption_signal(tmp_path, fake_slurm):
  slurm = sweeps.SlurmConfig(nodes=2, tasks_per_node=4, gpus_per_node=4, timeout_min=60,
                             signal_delay_s=100, partition='gpu')
  runner = executors.make_executor('slurm', str(tmp_path), slurm)
  (handle,) = runner.start_many([(['python', '-m', 'research.train'], str(tmp_path / 'r'))])
  (script,) = _sbatch_files(fake_slurm)
  text = script.read_text()
  for line in ('#SBATCH --nodes=2', '#SBATCH --ntasks-per-node=4', '#SBATCH --gpus-per-node=4',
               '#SBATCH --signal=USR2@100', '#SBATCH --time=60', '#SBATCH --partition=gpu'):
    assert line in text, text
  assert '--array' not in text
  assert handle.job.num_tasks == 8
  # The submitted callable is the checkpointable trainer job.
  submitted = submitit.helpers.DelayedSubmission.load(handle.job.paths.submitted_pickle)
  assert isinstance(submitted.function, submitit.helpers.Checkpointable)
  assert submitted.function.cmd == ['python', '-m', 'research.train']
  assert submitted._timeout_countdown == slurm.max_num_timeout  # pylint: disable=protected-access


def test_pending_runs_go_as_one_job_array_and_live_jobs_are_reattached(tmp_path, fake_slurm):
  slurm = sweeps.SlurmConfig(array_parallelism=2, gpus_per_node=0)
  runner = executors.make_executor('slurm', str(tmp_path), slurm)
  items = [(['python', '-c', 'pass'], str(tmp_path / f'r{i}')) for i in range(3)]
  handles = runner.start_many(items)
  (script,) = _sbatch_files(fake_slurm)  # one sbatch for the three runs
  assert '#SBATCH --array=0-2%2' in script.read_text()
  array_id = script.name.split('.')[1]
  assert [h.job_id for h in handles] == [f'{array_id}_{i}' for i in range(3)]
  assert [h.run_dir for h in handles] == [run_dir for _, run_dir in items]

  # A later sweep re-attaches to the jobs SLURM still has queued or running, not the others.
  fake_slurm.joinpath('states').write_text(
      f'{array_id}_0|PENDING|None\n{array_id}_1|RUNNING|n1\n{array_id}_2|COMPLETED|n2\n')
  later = executors.make_executor('slurm', str(tmp_path), slurm)
  attached = [later.attach(h.job_id, h.run_dir) for h in handles]
  assert [a is not None for a in attached] == [True, True, False]
  assert later.poll(attached[0]) is None and later.poll(attached[1]) is None
  # A job SLURM no longer knows is submitted again.
  assert later.attach('99999999', str(tmp_path / 'r0')) is None
  assert len(_sbatch_files(fake_slurm)) == 1


# --- the time limit, through submitit's local executor ---------------------------------------

def test_a_job_at_its_time_limit_is_requeued_and_resumes_from_its_checkpoint(tmp_path,
                                                                             monkeypatch):
  """The controller sends USR2 at timeout - signal_delay_s = 8 s; the trainer gets SIGTERM,
  checkpoints, and the job is requeued with the same command until it completes."""
  monkeypatch.setenv('FAKE_TRAINER_STEP_S', '0.25')
  monkeypatch.setenv('PYTHONPATH', _env()['PYTHONPATH'])
  slurm = sweeps.SlurmConfig(timeout_min=0.5, signal_delay_s=22, max_num_timeout=4)
  runner = executors.make_executor('submitit_local', str(tmp_path), slurm)
  run_dir = tmp_path / 'run'
  run_dir.mkdir()
  cmd = FAKE_TRAINER + ['--gin_bindings=TRAIN_STEPS = 40', f'--workdir={run_dir}']
  (handle,) = runner.start_many([(cmd, str(run_dir))])
  try:
    _wait_until(lambda: runner.poll(handle) is not None, 150, 'the job to end')
  finally:
    _kill_tree(handle.job._process.pid)  # pylint: disable=protected-access
  assert runner.poll(handle) == 0, (run_dir / 'train.log').read_text()
  assert runs.is_complete(str(run_dir))
  starts = _starts(str(run_dir))
  assert len(starts) >= 2, starts  # requeued at least once
  assert starts[0]['start_step'] == 0
  assert all(s['start_step'] > 0 for s in starts[1:]), starts  # resumed, never from 0
  assert [s['start_step'] for s in starts] == sorted(s['start_step'] for s in starts)
  assert all(s['usr2_ignored'] and not s['multihost'] for s in starts)
  log = (run_dir / 'train.log').read_text()
  assert log.count('--- job ') == len(starts)
  assert 'checkpointed at step' in log


def _tiny_trainer_cmd(run_dir, steps):
  return [sys.executable, '-m', 'research.train',
          f'--gin_file={os.path.join(REPO, "gin_configs/runs/tiny.gin")}',
          f'--gin_bindings=TRAIN_STEPS = {steps}', '--gin_bindings=trainer.train.log_every = 5',
          f'--gin_bindings=trainer.train.eval_every = {steps}',
          '--gin_bindings=trainer.train.eval_batches = 1',
          '--gin_bindings=CheckpointConfig.every_steps = 100000', f'--workdir={run_dir}']


@pytest.mark.slow
def test_the_real_trainer_signalled_like_slurm_resumes_from_its_checkpoint(tmp_path,
                                                                           monkeypatch):
  """SLURM signals every process of the job step: USR2 goes to the submitit task and to the
  trainer it started. The trainer ignores it; the task SIGTERMs it (checkpoint) and requeues."""
  monkeypatch.setenv('PYTHONPATH', _env()['PYTHONPATH'])
  steps = 120
  slurm = sweeps.SlurmConfig(timeout_min=10, signal_delay_s=120)
  runner = executors.make_executor('submitit_local', str(tmp_path), slurm)
  run_dir = tmp_path / 'run'
  run_dir.mkdir()
  (handle,) = runner.start_many([(_tiny_trainer_cmd(run_dir, steps), str(run_dir))])
  controller = handle.job._process.pid  # pylint: disable=protected-access
  try:
    _wait_until(lambda: (run_dir / 'metrics.jsonl').exists(), 240, 'the first logged step')
    (task,) = _children(controller)
    (trainer,) = _children(task)
    preempt = submitit.JobEnvironment._usr_sig()  # pylint: disable=protected-access
    os.kill(trainer, preempt)
    os.kill(task, preempt)
    _wait_until(lambda: runner.poll(handle) is not None, 300, 'the job to end')
  finally:
    _kill_tree(controller)
  log = (run_dir / 'train.log').read_text()
  assert runner.poll(handle) == 0, log
  assert runs.is_complete(str(run_dir))
  attempts = log.split('--- job ')[1:]
  assert len(attempts) == 2, log
  first_steps = [int(m) for a in attempts for m in re.findall(r'^step (\d+)/', a, re.M)[:1]]
  saved = sorted(int(d) for d in os.listdir(run_dir / 'checkpoints') if d.isdigit())
  resumed_from = [s for s in saved if s not in (0, steps)]
  assert len(resumed_from) == 1, saved  # the checkpoint taken at the signal
  # The second attempt's first logged step is past that checkpoint: it resumed.
  assert first_steps[0] == 5 and first_steps[1] > resumed_from[0] >= 5, (first_steps, saved)
  with open(run_dir / 'metrics.jsonl') as f:
    logged = [json.loads(line)['step'] for line in f]
  assert logged == sorted(set(logged)) and logged[-1] == steps


# --- a killed sweep re-launched --------------------------------------------------------------

GRID = """
include 'gin_configs/sweeps/ci.gin'
sweep.SweepConfig.flop_budgets = []
sweep.SweepConfig.token_budgets = [25600]
sweep.SweepConfig.run_bindings = ['BATCH_SIZE = 2', "TASK_FEATURE_LENGTHS = {'targets': 32}"]
sweep.SweepConfig.sizes = {
    'a': {'TransformerConfig.num_layers': 1, 'TransformerConfig.d_model': 16,
          'TransformerConfig.num_heads': 1, 'TransformerConfig.d_ff': 32},
    'b': {'TransformerConfig.num_layers': 1, 'TransformerConfig.d_model': 32,
          'TransformerConfig.num_heads': 2, 'TransformerConfig.d_ff': 64},
    'c': {'TransformerConfig.num_layers': 2, 'TransformerConfig.d_model': 32,
          'TransformerConfig.num_heads': 2, 'TransformerConfig.d_ff': 64},
}
sweep.SlurmConfig.timeout_min = 10
sweep.SlurmConfig.array_parallelism = %s
"""
RUNS = [f'D2.56e4-{s}-decoder-causal_lm-s0' for s in 'abc']


@pytest.mark.parametrize('array_parallelism,running', [('None', 2), ('2', 3)])
def test_a_killed_sweep_relaunched_submits_nothing_twice(tmp_path, array_parallelism,
                                                         running):
  """Two runs at a time (--parallel=2), or all three as one array: the sweep is killed with
  its jobs running (and, without arrays, one run not yet submitted); the re-launch
  re-attaches to the live jobs and submits only what was never submitted."""
  gin_file = tmp_path / 'grid.gin'
  gin_file.write_text(GRID % array_parallelism)
  sweep_dir = tmp_path / 'sweep'
  cmd = [sys.executable, '-m', 'tests.scaling.fake_sweep', f'--gin_file={gin_file}',
         f'--sweep_dir={sweep_dir}', '--executor=submitit_local', '--parallel=2',
         '--report_every=5']
  env = _env(FAKE_TRAINER_STEP_S='0.04')  # 400 steps: 16 s a run
  jobs_file = sweep_dir / executors.JOBS_FILE
  first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
  try:
    _wait_until(lambda: sum(bool(_starts(str(sweep_dir / r))) for r in RUNS) == running,
                180, f'{running} trainers to start')
    assert first.poll() is None, 'the sweep ended before it could be killed'
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = json.loads(jobs_file.read_text())
    assert len(before) == running and all(len(v['job_ids']) == 1 for v in before.values())
    assert not any(runs.is_complete(str(sweep_dir / r)) for r in RUNS)

    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=300)
  finally:
    if first.poll() is None:
      first.kill()
    if jobs_file.exists():
      for entry in json.loads(jobs_file.read_text()).values():
        for job_id in entry['job_ids']:
          _kill_tree(int(job_id))
  assert again.returncode == 0, again.stdout + again.stderr
  assert f're-attached to {running} queued or running job(s)' in again.stdout
  after = json.loads(jobs_file.read_text())
  assert set(after) == set(RUNS)
  for run_id in RUNS:
    assert len(after[run_id]['job_ids']) == 1, after  # submitted once, ever
    if run_id in before:
      assert after[run_id] == before[run_id]
    assert runs.is_complete(str(sweep_dir / run_id))
    assert len(_starts(str(sweep_dir / run_id))) == 1  # each trainer started once
  with open(sweep_dir / 'sweep_events.jsonl') as f:
    events = [json.loads(line) for line in f]
  launches = [e['run_id'] for e in events if e['event'] == 'launch']
  assert sorted(launches) == sorted(RUNS)
  assert sum(e['event'] == 'attach' for e in events) == running


def test_a_slurm_parameter_submitit_does_not_know_is_refused_in_one_line(tmp_path, fake_slurm):
  slurm = sweeps.SlurmConfig(additional={'no_such_option': 1})
  with pytest.raises(sweeps.SweepError, match='bad SlurmConfig for submitit: ') as e:
    executors.make_executor('slurm', str(tmp_path), slurm)
  assert '\n' not in str(e.value)


def test_the_slurm_example_sweep_reads_as_one_job_array_of_one_gpu_runs():
  config, slurm = sweeps.load_config(['gin_configs/sweeps/slurm_isoflop.gin'], [])
  assert config.flop_budgets and slurm.array_parallelism == 8
  assert (slurm.nodes, slurm.tasks_per_node, slurm.gpus_per_node) == (1, 1, 1)
  assert not executors.multihost('slurm', slurm)


def test_a_stopped_sweep_leaves_its_slurm_jobs_queued_and_names_them(tmp_path, fake_slurm):
  """Ctrl-C on the login node: nothing is cancelled; the ids stay in sweep_jobs.json."""
  gin_file = tmp_path / 'grid.gin'
  gin_file.write_text(GRID % '2')
  config, slurm = sweeps.load_config([str(gin_file)], [])
  sweep_dir = tmp_path / 'sweep'
  jobs_file = sweep_dir / executors.JOBS_FILE
  stream = io.StringIO()

  def interrupt_once_submitted():
    _wait_until(jobs_file.exists, 60, 'the submission')
    os.kill(os.getpid(), signal.SIGINT)
  threading.Thread(target=interrupt_once_submitted, daemon=True).start()
  summary = sweeps.run_sweep(config, str(sweep_dir), executor='slurm', slurm=slurm,
                             poll_every=0.1, stream=stream)
  assert summary['interrupted'] and sorted(summary['running']) == sorted(RUNS)
  ids = [entry['job_ids'][-1] for entry in json.loads(jobs_file.read_text()).values()]
  assert len(_sbatch_files(fake_slurm)) == 1 and len(ids) == 3
  assert not (fake_slurm / 'scancel_calls').exists()  # nothing cancelled
  out = stream.getvalue()
  assert 'one job array, 2 running at a time' in out
  assert '3 job(s) go on in the queue' in out and all(i in out for i in ids)
