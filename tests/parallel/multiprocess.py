"""Training jobs of several local processes (`jax.distributed` on localhost, one CPU device
each) started through the command line, as a multi-host job would be."""
import json
import os
import socket
import subprocess
import sys
import time

import gin

from research.train import sources

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A tiny causal decoder on the embedded corpus (the pipeline, as real runs use it).
GIN = """
import research.models
import research.train.sources
import research.train.trainer
import tests.parallel.multiprocess
TransformerConfig.family = 'decoder'
TransformerConfig.vocab_size = 384
TransformerConfig.d_model = 32
TransformerConfig.num_layers = 1
TransformerConfig.num_heads = 4
TransformerConfig.d_ff = 64
TransformerConfig.max_length = 32
trainer.train.model_config = @TransformerConfig()
trainer.train.train_steps = {steps}
trainer.train.batch_size = 8
trainer.train.feature_lengths = {{'targets': 32}}
trainer.train.batch_source = @pipeline_source
trainer.train.progress = False
trainer.train.log_every = 1
make_schedule.peak = 1e-2
make_schedule.warmup_steps = 2
CheckpointConfig.every_steps = 4
"""


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def write_gin(directory: str, steps: int = 12) -> str:
  path = os.path.join(directory, f'tiny{steps}.gin')
  with open(path, 'w') as f:
    f.write(GIN.format(steps=steps))
  return path


def start(gin_file: str, workdir: str, processes: int, bindings=(), per_process=None,
          env=None) -> list[subprocess.Popen]:
  """`processes` processes of `python -m research.train` (with --multihost and the
  coordinator bindings when more than one); per_process(i) adds bindings to process i."""
  port = free_port()
  procs = []
  for i in range(processes):
    args = [sys.executable, '-m', 'research.train', f'--gin_file={gin_file}',
            f'--workdir={workdir}']
    if processes > 1:
      args += ['--multihost', f"--gin_bindings=initialize.coordinator_address="
               f"'localhost:{port}'", f'--gin_bindings=initialize.num_processes={processes}',
               f'--gin_bindings=initialize.process_id={i}',
               '--gin_bindings=initialize.initialization_timeout=60']
    args += [f'--gin_bindings={b}' for b in bindings]
    args += [f'--gin_bindings={b}' for b in (per_process(i) if per_process else ())]
    procs.append(subprocess.Popen(
        args, cwd=REPO, env={**os.environ, 'PYTHONPATH': REPO, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  return procs


def finish(procs, timeout: float = 300) -> list[tuple[int, str]]:
  """(exit code, output) of each process; kills them all if one overruns."""
  deadline = time.time() + timeout
  results = []
  try:
    for p in procs:
      out, _ = p.communicate(timeout=max(deadline - time.time(), 1))
      results.append((p.returncode, out))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  return results


def run(gin_file, workdir, processes, bindings=(), timeout: float = 300, **kwargs):
  """Runs the job to its end; asserts every process exited 0."""
  results = finish(start(gin_file, workdir, processes, bindings, **kwargs), timeout)
  for i, (code, out) in enumerate(results):
    assert code == 0, f'process {i} exited {code}:\n{out[-3000:]}'
  return results


def read_metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def checkpoint_steps(workdir: str) -> list[int]:
  return sorted(int(n) for n in os.listdir(os.path.join(workdir, 'checkpoints'))
                if n.isdigit())


def wait_for(predicate, procs, timeout: float = 240):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return
    for p in procs:
      if p.poll() is not None:
        raise AssertionError(f'a process exited {p.returncode} early:\n{p.stdout.read()}')
    time.sleep(0.05)
  raise AssertionError('timed out')


def error_lines(output: str) -> list[str]:
  return [line for line in output.splitlines() if 'error:' in line]


class _Pausing:
  """pipeline_source that blocks before yielding train batch `pause_at` (counted from
  the start of the process) until `release_file` exists."""

  def __init__(self, inner, pause_at, release_file):
    self.inner, self.pause_at, self.release_file, self.drawn = (inner, pause_at,
                                                                release_file, 0)

  def __iter__(self):
    return self

  def __next__(self):
    if self.drawn == self.pause_at:
      while not os.path.exists(self.release_file):
        time.sleep(0.05)
    self.drawn += 1
    return next(self.inner)

  def __getattr__(self, name):  # get_state, set_state, close, may_have_prefix
    return getattr(self.inner, name)


@gin.configurable
def pausing_source(pause_at: int = -1, release_file: str = '', split: str = 'train',
                   **kwargs):
  inner = sources.pipeline_source(split=split, **kwargs)
  return _Pausing(inner, pause_at, release_file) if split == 'train' else inner


class _PerHostState(_Pausing):
  """A source whose state names the process: not host-invariant."""

  def get_state(self):
    import jax  # pylint: disable=g-import-not-at-top
    return {**self.inner.get_state(), 'process': jax.process_index()}


@gin.configurable
def per_host_state_source(**kwargs):
  return _PerHostState(sources.pipeline_source(**kwargs), -1, '')
