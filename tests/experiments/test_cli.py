"""Every command-line script turns an unknown flag into one line and exit status 2."""
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = sorted(os.path.relpath(p, ROOT) for p in
                 glob.glob(os.path.join(ROOT, 'experiments', '*.py')) +
                 glob.glob(os.path.join(ROOT, 'benchmarks', '*.py')))


def test_every_script_is_covered():
  assert 'experiments/train.py' in SCRIPTS and 'benchmarks/decode.py' in SCRIPTS
  assert len(SCRIPTS) >= 14


@pytest.mark.parametrize('script', SCRIPTS)
def test_an_unknown_flag_is_one_line_and_exit_2(script):
  out = subprocess.run([sys.executable, script, '--no_such_flag=1'], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  lines = (out.stdout + out.stderr).strip().splitlines()
  assert out.returncode == 2 and len(lines) == 1, lines[-20:]
  assert lines[0] == (f"{os.path.basename(script)}: error: Unknown command line flag "
                      "'no_such_flag'")
