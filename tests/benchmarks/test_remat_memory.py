"""benchmarks/remat_memory.py on a tiny config: one row per (scan, policy), figures that
add up, and one-line refusals of bad flags."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROW = re.compile(r'^(\w+) +(true|false)' + r' +([\d.]+)' * 6 + r' +([\d.]+)$', re.M)


def _run(*args):
  return subprocess.run([sys.executable, 'benchmarks/remat_memory.py',
                         '--gin_file=gin_configs/runs/tiny.gin', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


def test_one_row_per_variant_and_the_peak_adds_up():
  out = _run('--policies=none,full', '--gin_bindings=TransformerConfig.num_layers = 4')
  assert out.returncode == 0, out.stderr[-2000:]
  rows = ROW.findall(out.stdout)
  assert [(r[0], r[1]) for r in rows] == [('none', 'false'), ('full', 'false'),
                                          ('none', 'true'), ('full', 'true')]
  for row in rows:
    argument, output, alias, temp, peak, ratio = map(float, row[2:8])
    assert abs(argument + output - alias + temp - peak) <= 0.02 and peak > 0
  assert float(rows[0][7]) == 1.0


def test_bad_flags_fail_in_one_line():
  out = _run('--policies=none,sometimes')
  assert out.returncode == 2
  assert out.stderr.strip() == ("remat_memory.py: error: --policies: 'sometimes' is not "
                                'one of none, full, dots, dots_no_batch')
  out = _run('--scan=maybe')
  assert out.returncode == 2 and 'neither true nor false' in out.stderr
