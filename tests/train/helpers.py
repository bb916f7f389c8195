"""Tiny trainer configs, batch sources that misbehave on purpose, and subprocess runners."""
import json
import os
import subprocess
import sys
import time

import gin
import numpy as np

from research.train import synthetic

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A ~20k-parameter model: compiles in seconds, steps in milliseconds.
TINY = """
TransformerConfig.family = '{family}'
TransformerConfig.vocab_size = 64
TransformerConfig.d_model = 32
TransformerConfig.num_layers = 1
TransformerConfig.num_heads = 4
TransformerConfig.d_ff = 64
TransformerConfig.max_length = 32
trainer.train.model_config = @TransformerConfig()
trainer.train.train_steps = {steps}
trainer.train.batch_size = 8
trainer.train.feature_lengths = {{'inputs': 12, 'targets': 16}}
trainer.train.batch_source = @synthetic_source
trainer.train.progress = False
trainer.train.log_every = 1
synthetic_source.vocab_size = 64
make_schedule.peak = 1e-2
make_schedule.warmup_steps = 2
CheckpointConfig.every_steps = 4
"""


def configure(family: str = 'decoder', steps: int = 10, extra: str = '') -> None:
  gin.clear_config()
  gin.parse_config(TINY.format(family=family, steps=steps) + '\n' + extra)


def read_metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def tensorboard_steps(workdir: str, tag: str = 'train_loss') -> list[int]:
  """The steps of `tag`'s events in the run's TensorBoard files, in file order."""
  from research.train import metrics  # pylint: disable=g-import-not-at-top
  return [e.step for e in metrics.read_events(os.path.join(workdir, 'tensorboard'))
          if any(v.tag == tag for v in e.summary.value)]


@gin.configurable
def faulty_source(nan_at: tuple = (), pause_at: int = -1, slow_after: int = -1,
                  release_file: str = '', omit: tuple = (), **kwargs):
  """synthetic_source, with NaN loss weights at some batch ordinals, or stalls.

  omit: batch ordinals never yielded (the next one comes instead), as if the data had
  never held them: the clean counterpart of a run whose guard skipped those batches.
  pause_at: drawing that batch ordinal blocks until `release_file` exists (so a test can
  kill the process at a known point); slow_after: each later batch takes 0.2 s.
  """
  return _Faulty(synthetic.synthetic_source(**kwargs), set(nan_at), pause_at, slow_after,
                 release_file, set(omit))


class _Faulty:
  def __init__(self, inner, nan_at, pause_at, slow_after, release_file, omit=frozenset()):
    self.inner, self.nan_at, self.pause_at = inner, nan_at, pause_at
    self.slow_after, self.release_file, self.omit = slow_after, release_file, omit

  def __iter__(self):
    return self

  def __next__(self):
    while self.inner.index in self.omit:
      next(self.inner)
    index = self.inner.index
    if index == self.pause_at:
      while not (self.release_file and os.path.exists(self.release_file)):
        time.sleep(0.05)
    if 0 <= self.slow_after <= index:
      time.sleep(0.2)
    batch = next(self.inner)
    if index in self.nan_at:
      key = [k for k in batch if k.endswith('_loss_weights')][0]
      batch[key] = np.full_like(batch[key], np.nan)
    return batch

  def get_state(self):
    return self.inner.get_state()

  def set_state(self, state):
    self.inner.set_state(state)


# Runs trainer.train in a child process with the TINY config plus extra bindings.
CHILD = """
import sys, gin
sys.path.insert(0, {repo!r})
import tests.train.helpers as h
from research.train import trainer
h.configure({family!r}, {steps}, {extra!r})
print('SUMMARY', trainer.train({workdir!r}), flush=True)
"""


def start_child(workdir: str, family: str = 'decoder', steps: int = 10, extra: str = '',
                env: dict | None = None) -> subprocess.Popen:
  code = CHILD.format(repo=REPO, family=family, steps=steps, extra=extra, workdir=workdir)
  return subprocess.Popen([sys.executable, '-c', code], cwd=REPO,
                          env={**os.environ, **(env or {})},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, timeout: float = 120.0, proc: subprocess.Popen | None = None):
  """Polls until predicate() is true; fails early if `proc` exits first."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return
    if proc is not None and proc.poll() is not None:
      raise AssertionError(f'child exited {proc.returncode} early:\n{proc.stdout.read()}')
    time.sleep(0.05)
  raise AssertionError('timed out waiting for the child')
