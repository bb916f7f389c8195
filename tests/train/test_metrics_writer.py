"""The metrics writer's TensorBoard events are written without importing PyTorch (most of
tensorboardX's import time, paid by every run of a sweep), and torch stays importable."""
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
