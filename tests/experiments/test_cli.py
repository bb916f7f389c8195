"""One command-line convention for every script: research/cli.py, one line on error, exit 2
for a wrong command line (an unknown flag, a missing required one), no sys.path edits."""
import ast
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = sorted(os.path.relpath(p, ROOT) for p in
                 glob.glob(os.path.join(ROOT, 'experiments', '*.py')) +
                 glob.glob(os.path.join(ROOT, 'benchmarks', '*.py')))


def _run(script, *args):
  return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)


def test_every_script_is_covered():
  assert 'experiments/train.py' in SCRIPTS and 'benchmarks/decode.py' in SCRIPTS
  assert len(SCRIPTS) >= 14


@pytest.mark.parametrize('script', SCRIPTS)
def test_an_unknown_flag_is_one_line_and_exit_2(script):
  out = _run(script, '--no_such_flag=1')
  lines = (out.stdout + out.stderr).strip().splitlines()
  assert out.returncode == 2 and len(lines) == 1, lines[-20:]
  assert lines[0] == (f"{os.path.basename(script)}: error: Unknown command line flag "
                      "'no_such_flag'")


def _calls(tree):
  for node in ast.walk(tree):
    if isinstance(node, ast.Call):
      yield ast.unparse(node.func)


def _message_exits(tree):
  """sys.exit('...'): a message without the '<prog>: error: ' form, exit status 1."""
  return [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Call)
          and ast.unparse(n.func) == 'sys.exit' and n.args
          and isinstance(n.args[0], (ast.Constant, ast.JoinedStr))
          and isinstance(getattr(n.args[0], 'value', ''), str)]


@pytest.mark.parametrize('script', SCRIPTS)
def test_a_script_runs_through_research_cli_and_leaves_sys_path_alone(script):
  with open(os.path.join(ROOT, script)) as f:
    tree = ast.parse(f.read())
  calls = set(_calls(tree))
  assert not {c for c in calls if c.startswith('sys.path.')}, calls  # `pip install -e .`
  assert 'app.run' not in calls and not _message_exits(tree)
  defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
  assert '_fail' not in defined
  main_block = [n for n in tree.body if isinstance(n, ast.If)
                and ast.unparse(n.test) == "__name__ == '__main__'"]
  assert len(main_block) == 1
  entry = {c for c in _calls(main_block[0])}
  assert entry & {'cli.run', 'main.run'}, entry  # main.run: research/<package>/main.py


@pytest.mark.parametrize('script,args,message', [
    ('experiments/train.py', ['--workdir=/tmp/unused'], '--gin_file is required'),
    ('experiments/train.py', ['--gin_file=gin_configs/runs/tiny.gin'],
     '--workdir is required'),
    ('experiments/sweep.py', ['--gin_file=gin_configs/sweeps/ci.gin'],
     '--sweep_dir is required'),
    ('experiments/sweep.py', ['--sweep_dir=/tmp/unused'], '--gin_file is required'),
    ('experiments/fit_scaling.py', ['--out=/tmp/unused'], '--results is required'),
    ('experiments/attention_offsets.py', [], '--sweep_dir is required'),
    ('experiments/train_tokenizer.py', [], '--output is required'),
    ('benchmarks/sweep_cost.py', [], '--gin_file is required'),
    ('experiments/extrapolation.py', ['--run=a=/tmp'], '--out_dir is required'),
    ('experiments/extrapolation.py', ['--out_dir=/tmp/unused', '--run=a=/no/such/run'],
     "--run='a=/no/such/run': no such run directory /no/such/run"),
    ('experiments/extrapolation.py', ['--out_dir=/tmp/unused', '--run=a=/tmp',
                                      '--rope_run=b'], "--rope_run='b' is not a --run name (a)"),
])
def test_a_missing_required_flag_is_one_line_and_exit_2(script, args, message):
  out = _run(script, *args)
  lines = (out.stdout + out.stderr).strip().splitlines()
  assert out.returncode == 2 and len(lines) == 1, lines[-20:]
  assert lines[0].startswith(f'{os.path.basename(script)}: error: {message}'), lines[0]


@pytest.mark.parametrize('module,prog', [('research.train', 'research-train'),
                                         ('research.sweeps', 'research-sweep'),
                                         ('research.scaling', 'research-fit')])
def test_package_entry_points_report_under_their_console_script_name(module, prog):
  out = subprocess.run([sys.executable, '-m', module, '--no_such_flag=1'], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  lines = (out.stdout + out.stderr).strip().splitlines()
  assert out.returncode == 2 and lines == [
      f"{prog}: error: Unknown command line flag 'no_such_flag'"], lines[-20:]
