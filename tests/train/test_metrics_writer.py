"""The metrics writer's TensorBoard events are written without importing PyTorch (most of
tensorboardX's import time, paid by every run of a sweep), and torch stays importable."""
import os
import subprocess
import sys

from tests.train import helpers

_PROBE = """
import os, sys, tempfile
from research.train import metrics
workdir = tempfile.mkdtemp()
writer = metrics.MetricsWriter(workdir)
writer.write(1, {'train_loss': 2.5})
writer.close()
assert os.listdir(os.path.join(workdir, 'tensorboard'))
print('torch imported:', 'torch' in sys.modules)
try:
  import torch
  print('torch importable:', torch.zeros(1).shape == (1,))
except ImportError:
  print('torch importable: not installed')
"""


def test_tensorboard_events_are_written_without_importing_torch():
  out = subprocess.run([sys.executable, '-c', _PROBE], cwd=helpers.REPO, capture_output=True,
                       text=True, timeout=300, check=True)
  lines = out.stdout.splitlines()
  assert lines[0] == 'torch imported: False'
  assert lines[1] in ('torch importable: True', 'torch importable: not installed')


def test_resume_and_rollback_leave_each_step_once_in_tensorboard(tmp_path):
  from research.train import metrics
  workdir = str(tmp_path)
  writer = metrics.MetricsWriter(workdir)
  for step in range(1, 7):
    writer.write(step, {'train_loss': float(step)})
  writer.close()  # as if the process died at step 6, its last checkpoint at 3
  writer = metrics.MetricsWriter(workdir, resume_step=3)
  for step in range(4, 9):
    writer.write(step, {'train_loss': 10.0 + step})
  writer.truncate(5)  # a rollback to the checkpoint at 5
  for step in range(6, 10):
    writer.write(step, {'train_loss': 20.0 + step})
  writer.close()
  events = metrics.read_events(os.path.join(workdir, 'tensorboard'))
  got = [(e.step, e.summary.value[0].simple_value) for e in events
         if e.summary.value and e.summary.value[0].tag == 'train_loss']
  assert got == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 14.0), (5, 15.0), (6, 26.0), (7, 27.0),
                 (8, 28.0), (9, 29.0)]
  assert [r['step'] for r in helpers.read_metrics(workdir)] == list(range(1, 10))
  # A torn last record (a kill mid-write) is dropped, the rest kept.
  path = metrics.event_files(os.path.join(workdir, 'tensorboard'))[-1]
  with open(path, 'ab') as f:
    f.write(b'\x40\x00\x00')
  metrics.truncate_events(os.path.join(workdir, 'tensorboard'), 7)
  steps = [e.step for e in metrics.read_events(os.path.join(workdir, 'tensorboard'))
           if e.summary.value]
  assert steps == list(range(1, 8))
