"""How a sweep starts its runs: each run is `python -m research.train` in a child process
(`LocalExecutor`) or a submitit job (`SubmititExecutor`: slurm, or 'submitit_local').

The interface `run_sweep` (research/sweeps/launch.py) drives: start(cmd, run_dir, lock_fd)
-> handle; poll(handle) -> None while running, else the exit code; terminate(handle)
(SIGTERM: the trainer checkpoints and exits); wait(handle, timeout). A running trainer
holds the flock on its run directory's LOCK_FILE and appends its output to LOG_FILE.
"""
import ctypes
import dataclasses
import fcntl
import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Mapping, Optional

import gin

from research.sweeps.grid import GIN_MODULE, SweepError

# The directory the running `research` package was imported from: runs import the same one.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOG_FILE = 'train.log'     # in a run directory: the trainer's output, appended per attempt
LOCK_FILE = '.sweep.lock'  # in a run directory: held by its running trainer


@gin.configurable(module=GIN_MODULE)
@dataclasses.dataclass(frozen=True)
class SlurmConfig:
  """submitit parameters of each run's job (`slurm_` prefix dropped)."""
  partition: Optional[str] = None
  timeout_min: int = 240
  gpus_per_node: int = 1
  cpus_per_task: int = 8
  mem_gb: int = 64
  additional: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def child_env() -> dict:
  """This environment, with the running package first on the path of a child's imports."""
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(
      p for p in (_PACKAGE_PARENT, env.get('PYTHONPATH', '')) if p)
  return env


def _die_with_parent():  # runs in the child between fork and exec
  libc = ctypes.CDLL(None, use_errno=True)
  libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: the trainer checkpoints and exits


class LocalExecutor:
  """Each run is a child process of the sweep."""

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


def _run_in_job(cmd: list[str], run_dir: str) -> int:
  """Body of a submitit job: the same training command, holding the run's lock."""
  with open(os.path.join(run_dir, LOCK_FILE), 'a') as lock, \
       open(os.path.join(run_dir, LOG_FILE), 'ab') as log:
    fcntl.flock(lock, fcntl.LOCK_EX)
    return subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env())


class SubmititExecutor:
  """Each run is a submitit job ('slurm' on a cluster; 'submitit_local' runs them here)."""

  def __init__(self, folder: str, cluster: str, slurm: 'SlurmConfig'):
    import submitit
    if cluster == 'local':
      self._executor = submitit.LocalExecutor(folder=folder)
      self._executor.update_parameters(timeout_min=slurm.timeout_min)
    else:
      self._executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
      params = dict(timeout_min=slurm.timeout_min, gpus_per_node=slurm.gpus_per_node,
                    cpus_per_task=slurm.cpus_per_task, mem_gb=slurm.mem_gb)
      if slurm.partition:
        params['slurm_partition'] = slurm.partition
      params.update({f'slurm_{k}': v for k, v in slurm.additional.items()})
      self._executor.update_parameters(**params)

  def start(self, cmd: list[str], run_dir: str, lock_fd: int):
    del lock_fd  # the job takes the lock itself, wherever it runs
    job = self._executor.submit(_run_in_job, cmd, run_dir)
    job.run_dir = run_dir
    return job

  def poll(self, handle) -> Optional[int]:
    if not handle.done():
      return None
    try:
      return int(handle.result())
    except Exception as e:  # the job itself failed (node failure, timeout, cancelled)
      with open(os.path.join(handle.run_dir, LOG_FILE), 'a') as f:
        f.write(f'submitit job {handle.job_id} failed: {str(e).strip()[-2000:]}\n')
      return -1

  def terminate(self, handle) -> None:
    if not handle.done():
      handle.cancel(check=False)

  def wait(self, handle, timeout: float) -> None:
    deadline = time.time() + timeout
    while not handle.done() and time.time() < deadline:
      time.sleep(0.5)


def make_executor(name: str, sweep_dir: str, slurm: Optional[SlurmConfig] = None):
  factories: dict[str, Callable[[], Any]] = {
      'local': LocalExecutor,
      'slurm': lambda: SubmititExecutor(os.path.join(sweep_dir, '_submitit'), 'slurm',
                                        slurm or SlurmConfig()),
      'submitit_local': lambda: SubmititExecutor(os.path.join(sweep_dir, '_submitit'),
                                                 'local', slurm or SlurmConfig()),
  }
  if name not in factories:
    raise SweepError(f'unknown executor {name!r}; one of {sorted(factories)}')
  return factories[name]()
