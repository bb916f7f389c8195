"""How a sweep starts its runs: each run is `python -m research.train` in a child process
(`LocalExecutor`) or a submitit job (`SubmititExecutor`: slurm, or 'submitit_local').

The interface `run_sweep` (research/sweeps/launch.py) drives: start_many([(cmd, run_dir)])
-> handles (start(cmd, run_dir, lock_fd) for one); poll(handle) -> None while running, else
the exit code; terminate(handle) (SIGTERM: the trainer checkpoints and exits); wait(handle,
timeout). A running trainer holds the flock on its run directory's LOCK_FILE and appends its
output to LOG_FILE.

Under submitit each job runs a `TrainerJob`, a `submitit.helpers.Checkpointable`: when SLURM
signals the time limit or a preemption, submitit calls its `checkpoint()`, which SIGTERMs the
trainer, waits for it to save its checkpoint and exit, and requeues the same command, which
resumes from that checkpoint. The job ids are kept in the sweep directory (JOBS_FILE), so a
re-launched sweep re-attaches to its queued and running jobs instead of submitting them again.
"""
import ctypes
import dataclasses
import fcntl
import math
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import gin
import submitit
from submitit.core import job_environment

from research import runs as runs_lib
from research.sweeps.grid import GIN_MODULE, SweepError

# The directory the running `research` package was imported from: runs import the same one.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOG_FILE = 'train.log'     # in a run directory: the trainer's output, appended per attempt
LOCK_FILE = '.sweep.lock'  # in a run directory: held by its running trainer
JOBS_FILE = 'sweep_jobs.json'  # in the sweep directory: each run's submitit job ids
SUBMITIT_DIR = '_submitit'     # in the sweep directory: submitit's pickles and job logs
EXECUTORS = ('local', 'slurm', 'submitit_local')


@gin.configurable(module=GIN_MODULE)
@dataclasses.dataclass(frozen=True)
class SlurmConfig:
  """submitit parameters of each run's job (`slurm_` prefix dropped).

  nodes x tasks_per_node > 1 starts one trainer per task with `--multihost` (JAX finds its
  peers from SLURM's environment). array_parallelism=None submits one job per run, --parallel
  of them in flight; a number submits every pending run as one job array with that many
  running at once. SLURM sends submitit's preemption signal (USR2) signal_delay_s before the
  time limit; the trainer then has all but the last 30 s of it to checkpoint. A run is
  requeued after at most max_num_timeout time limits (preemptions are not counted).
  """
  partition: Optional[str] = None
  timeout_min: float = 240
  gpus_per_node: int = 1
  cpus_per_task: int = 8
  mem_gb: int = 64
  nodes: int = 1
  tasks_per_node: int = 1
  array_parallelism: Optional[int] = None
  signal_delay_s: int = 120
  max_num_timeout: int = 10
  additional: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    for name in ('nodes', 'tasks_per_node', 'signal_delay_s', 'max_num_timeout'):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise SweepError(f'SlurmConfig.{name} must be an integer >= 1, got {value!r}')
    for name in ('gpus_per_node', 'cpus_per_task', 'mem_gb'):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 0:
        raise SweepError(f'SlurmConfig.{name} must be an integer >= 0, got {value!r}')
    if self.array_parallelism is not None and (
        not isinstance(self.array_parallelism, int) or self.array_parallelism < 1):
      raise SweepError('SlurmConfig.array_parallelism must be None (one job per run) or an '
                       f'integer >= 1, got {self.array_parallelism!r}')
    if not self.timeout_min > 0:
      raise SweepError(f'SlurmConfig.timeout_min must be > 0, got {self.timeout_min!r}')
    if self.signal_delay_s >= 60 * self.timeout_min:
      raise SweepError(f'SlurmConfig.signal_delay_s ({self.signal_delay_s}) must be shorter '
                       f'than the time limit ({self.timeout_min} min)')

  @property
  def num_tasks(self) -> int:
    return self.nodes * self.tasks_per_node

  @property
  def grace_s(self) -> float:
    """Seconds a signalled trainer gets to checkpoint and exit before it is killed."""
    return float(max(self.signal_delay_s - 30, self.signal_delay_s / 2))


def check_executor(executor: str, slurm: Optional[SlurmConfig]) -> None:
  """Raises SweepError for an executor name, or a SlurmConfig it cannot run."""
  if executor not in EXECUTORS:
    raise SweepError(f'unknown executor {executor!r}; one of {sorted(EXECUTORS)}')
  if executor == 'submitit_local' and slurm is not None and slurm.num_tasks > 1:
    raise SweepError(f'SlurmConfig.nodes x tasks_per_node = {slurm.num_tasks}: several '
                     'processes per run need --executor=slurm')


def multihost(executor: str, slurm: Optional[SlurmConfig]) -> bool:
  """Whether each run's trainer is one of several processes (`--multihost`)."""
  return executor == 'slurm' and slurm is not None and slurm.num_tasks > 1


def child_env() -> dict:
  """This environment, with the running package first on the path of a child's imports."""
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(
      p for p in (_PACKAGE_PARENT, env.get('PYTHONPATH', '')) if p)
  return env


def _die_with_parent():  # runs in the child between fork and exec
  libc = ctypes.CDLL(None, use_errno=True)
  libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: the trainer checkpoints and exits


def _preemption_signal() -> int:
  return job_environment.JobEnvironment._usr_sig()  # pylint: disable=protected-access


def _trainer_preexec():  # in a job's trainer between fork and exec
  # SLURM signals every process of a job step; the job's own handler turns the preemption
  # signal into SIGTERM for the trainer, which must not die of the signal meanwhile.
  signal.signal(_preemption_signal(), signal.SIG_IGN)
  if sys.platform.startswith('linux'):
    _die_with_parent()


class LocalExecutor:
  """Each run is a child process of the sweep."""

  detach_on_stop = False

  def start(self, cmd: list[str], run_dir: str, lock_fd: int):
    log = open(os.path.join(run_dir, LOG_FILE), 'ab')
    preexec = _die_with_parent if sys.platform.startswith('linux') else None
    # Detached from the terminal: a Ctrl-C reaches only the sweep, which then SIGTERMs the trainers so
    # that they checkpoint (a SIGINT would kill them mid-step).
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env(),
                            pass_fds=(lock_fd,), preexec_fn=preexec, start_new_session=True)
    log.close()
    return proc

  def poll(self, handle) -> Optional[int]:
    return handle.poll()

  def terminate(self, handle) -> None:
    if handle.poll() is None:
      handle.send_signal(signal.SIGTERM)

  def wait(self, handle, timeout: float) -> None:
    try:
      handle.wait(timeout)
    except subprocess.TimeoutExpired:
      handle.kill()


def _global_rank() -> int:
  try:
    return int(submitit.JobEnvironment().global_rank)
  except RuntimeError:  # not inside a submitit job
    return 0


class TrainerJob(submitit.helpers.Checkpointable):
  """Body of a submitit job: the run's training command, requeued at a time limit.

  Task 0 holds the run's lock and writes LOG_FILE; task k > 0 (multi-process runs) writes
  `train.task<k>.log`. On the preemption signal every task SIGTERMs its trainer; task 0's
  `checkpoint()` (called by submitit) waits for its trainer to save and exit and returns the
  same command to requeue.
  """

  def __init__(self, cmd: Sequence[str], run_dir: str, grace_s: float = 90.0):
    self.cmd, self.run_dir, self.grace_s = list(cmd), run_dir, float(grace_s)
    self._proc: Optional[subprocess.Popen] = None
    self._code: Optional[int] = None
    self._signalled = False

  def __getstate__(self):  # what a requeue pickles: the command, never a process
    return {'cmd': self.cmd, 'run_dir': self.run_dir, 'grace_s': self.grace_s}

  def __setstate__(self, state):
    self.__init__(**state)

  def __call__(self) -> int:
    if runs_lib.is_complete(self.run_dir):
      return 0
    rank = _global_rank()
    log_name = LOG_FILE if rank == 0 else f'train.task{rank}.log'
    with open(os.path.join(self.run_dir, LOCK_FILE), 'a') as lock, \
         open(os.path.join(self.run_dir, log_name), 'ab') as log:
      if rank == 0:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a trainer of an earlier job may still be saving
        if runs_lib.is_complete(self.run_dir):
          return 0
      log.write(f'--- job {_job_id()} task {rank}: {" ".join(self.cmd)}\n'.encode())
      log.flush()
      self._proc = subprocess.Popen(
          self.cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env(),
          pass_fds=(lock.fileno(),), preexec_fn=_trainer_preexec, start_new_session=True)
      # One thread reaps the trainer, so that the signal handlers below only read _code.
      threading.Thread(target=self._reap, daemon=True).start()
      previous = signal.getsignal(_preemption_signal())

      def on_preemption(signum, frame):
        self._terminate()
        if callable(previous):  # submitit's: task 0 calls checkpoint() and requeues
          previous(signum, frame)
      signal.signal(_preemption_signal(), on_preemption)
      try:
        while self._code is None:
          time.sleep(0.2)
      except BaseException:  # cancelled (SIGINT) or exiting: the trainer checkpoints first
        self._stop()
        raise
      return self._code

  def _reap(self) -> None:
    self._code = self._proc.wait()

  def _terminate(self) -> None:
    if self._proc is not None and self._code is None and not self._signalled:
      self._signalled = True
      self._proc.send_signal(signal.SIGTERM)

  def _stop(self) -> None:
    """SIGTERM the trainer and wait up to grace_s for its checkpoint and exit; then kill it."""
    self._terminate()
    deadline = time.time() + self.grace_s
    while self._proc is not None and self._code is None and time.time() < deadline:
      time.sleep(0.2)
    if self._proc is not None and self._code is None:
      self._proc.kill()

  def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
    del args, kwargs
    self._stop()
    return submitit.helpers.DelayedSubmission(TrainerJob(self.cmd, self.run_dir,
                                                         self.grace_s))


def _job_id() -> str:
  try:
    return str(submitit.JobEnvironment().job_id)
  except (RuntimeError, KeyError):
    return '?'


@dataclasses.dataclass
class JobHandle:
  job: Any  # a submitit Job
  run_dir: str

  @property
  def job_id(self) -> str:
    return str(self.job.job_id)


class _PidProcess:
  """What a re-attached submitit LocalJob polls: its controller, found by process id."""

  def __init__(self, pid: int):
    self.pid = pid

  def poll(self) -> Optional[int]:
    try:
      with open(f'/proc/{self.pid}/stat') as f:
        state = f.read().rsplit(')', 1)[1].split()[0]
      with open(f'/proc/{self.pid}/cmdline', 'rb') as f:
        cmdline = f.read()
    except (OSError, IndexError):
      return 0
    return 0 if state == 'Z' or b'submitit.local' not in cmdline else None

  def send_signal(self, sig: int) -> None:
    try:
      os.kill(self.pid, sig)
    except ProcessLookupError:
      pass


class SubmititExecutor:
  """Each run is a submitit job ('slurm' on a cluster; 'local' runs them on this machine)."""

  def __init__(self, folder: str, cluster: str, slurm: SlurmConfig):
    self.cluster, self.slurm, self.folder = cluster, slurm, folder
    self.detach_on_stop = cluster != 'local'  # a cluster's jobs outlive the sweep's process
    self.submissions = 0
    if cluster == 'local':
      self._executor = submitit.LocalExecutor(folder=folder,
                                              max_num_timeout=slurm.max_num_timeout)
      self._executor.update_parameters(timeout_min=slurm.timeout_min,
                                       signal_delay_s=slurm.signal_delay_s)
    else:
      try:
        self._executor = submitit.AutoExecutor(folder=folder, cluster=cluster,
                                               slurm_max_num_timeout=slurm.max_num_timeout)
      except RuntimeError as e:  # e.g. no srun here: not a SLURM login node
        raise SweepError(f'cannot submit to {cluster}: {str(e).strip()}') from None
      params = dict(timeout_min=int(math.ceil(slurm.timeout_min)),
                    gpus_per_node=slurm.gpus_per_node, cpus_per_task=slurm.cpus_per_task,
                    mem_gb=slurm.mem_gb, nodes=slurm.nodes, tasks_per_node=slurm.tasks_per_node,
                    slurm_signal_delay_s=slurm.signal_delay_s)
      if slurm.partition:
        params['slurm_partition'] = slurm.partition
      if slurm.array_parallelism is not None:
        params['slurm_array_parallelism'] = slurm.array_parallelism
      params.update({f'slurm_{k}': v for k, v in slurm.additional.items()})
      try:
        self._executor.update_parameters(**params)
      except (ValueError, TypeError, NameError) as e:  # submitit's word on a bad parameter
        raise SweepError(f'bad SlurmConfig for submitit: {str(e).strip().splitlines()[0]}'
                         ) from None

  @property
  def arrays(self) -> bool:
    return self.slurm.array_parallelism is not None

  def start(self, cmd: list[str], run_dir: str, lock_fd: Optional[int]):
    del lock_fd  # the job takes the lock itself, wherever it runs
    return self.start_many([(cmd, run_dir)])[0]

  def start_many(self, items: Sequence[tuple[list[str], str]]) -> list[JobHandle]:
    """Submits one job per (command, run_dir); with array_parallelism, one job array."""
    fns = [TrainerJob(cmd, run_dir, self.slurm.grace_s) for cmd, run_dir in items]
    if self.arrays and len(fns) > 1:
      with self._executor.batch():
        jobs = [self._executor.submit(fn) for fn in fns]
    else:
      jobs = [self._executor.submit(fn) for fn in fns]
    self.submissions += len(jobs)
    return [JobHandle(job, run_dir) for job, (_, run_dir) in zip(jobs, items)]

  def attach(self, job_id: str, run_dir: str) -> Optional[JobHandle]:
    """The handle of an earlier sweep's job if it is still queued or running, else None."""
    tasks = list(range(self.slurm.num_tasks if self.cluster != 'local' else 1))
    if self.cluster == 'local':
      job = submitit.LocalJob(folder=self.folder, job_id=job_id, tasks=tasks)
      if not job_id.isdigit():
        return None
      job._process = _PidProcess(int(job_id))  # pylint: disable=protected-access
      for sub in job._sub_jobs:  # pylint: disable=protected-access
        sub._process = job._process  # pylint: disable=protected-access
    else:
      job = submitit.SlurmJob(folder=self.folder, job_id=job_id, tasks=tasks)
      state = job.watcher.get_state(job_id, mode='force').upper()
      if state == 'UNKNOWN':  # gone from SLURM's accounting: submit again
        return None
    if job.done():
      return None
    return JobHandle(job, run_dir)

  def poll(self, handle: JobHandle) -> Optional[int]:
    if not handle.job.done():
      return None
    try:
      return int(handle.job.results()[0])  # task 0's exit code
    except Exception as e:  # the job itself failed (node failure, timeout, cancelled)
      with open(os.path.join(handle.run_dir, LOG_FILE), 'a') as f:
        f.write(f'submitit job {handle.job_id} failed: {str(e).strip()[-2000:]}\n')
      return -1

  def terminate(self, handle: JobHandle) -> None:
    if not handle.job.done():
      handle.job.cancel(check=False)

  def wait(self, handle: JobHandle, timeout: float) -> None:
    deadline = time.time() + timeout
    while not handle.job.done() and time.time() < deadline:
      time.sleep(0.5)


def make_executor(name: str, sweep_dir: str, slurm: Optional[SlurmConfig] = None):
  check_executor(name, slurm)
  factories: dict[str, Callable[[], Any]] = {
      'local': LocalExecutor,
      'slurm': lambda: SubmititExecutor(os.path.join(sweep_dir, SUBMITIT_DIR), 'slurm',
                                        slurm or SlurmConfig()),
      'submitit_local': lambda: SubmititExecutor(os.path.join(sweep_dir, SUBMITIT_DIR),
                                                 'local', slurm or SlurmConfig()),
  }
  return factories[name]()
