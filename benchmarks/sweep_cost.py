r"""What a sweep will cost here: each run's start-up overhead and seconds per step, measured.

  python benchmarks/sweep_cost.py --gin_file=gin_configs/sweeps/quickstart.gin \
      [--parallel=2] [--steps=10,60]

For the smallest and the largest model of the sweep, times `python -m research.train` at two
step counts (same config otherwise) and solves wall = overhead + steps x step_seconds. The
step time of the sizes in between is interpolated linearly in FLOPs per step; the projected
sweep wall time is sum(run times) / parallel (longest-first packing is close to that when
runs are many; the 7 extra evaluations and 3 checkpoints of a real run are not in it).
The machine load is printed beside the numbers: on shared cores, the
projection is only as good as the load was steady.
"""
import os
import subprocess
import tempfile
import time

from absl import flags

from research import cli
from research import sweeps
from research.sweeps import executors

PROG = 'sweep_cost.py'
_GIN_FILE = flags.DEFINE_multi_string('gin_file', [], 'Sweep gin file(s).')
_PARALLEL = flags.DEFINE_integer('parallel', 2, 'Runs at once in the projected sweep.')
_STEPS = flags.DEFINE_list('steps', ['10', '60'], 'The two step counts timed.')


def _timed_run(cmd_template: list[str], steps: int) -> float:
  with tempfile.TemporaryDirectory() as workdir:
    cmd = [c for c in cmd_template if not c.startswith(('--workdir=', '--gin_bindings=TRAIN'))]
    cmd += [f'--gin_bindings=TRAIN_STEPS = {steps}', f'--workdir={workdir}']
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=executors.child_env())
    return time.perf_counter() - start


def main(argv):
  del argv  # cli.run refuses extra arguments
  cli.require(PROG, gin_file=_GIN_FILE.value)
  try:
    steps = sorted(int(s) for s in _STEPS.value)
  except ValueError:
    steps = []
  if len(steps) != 2 or steps[0] < 1 or steps[0] == steps[1]:
    cli.usage_error(PROG, f'--steps must be two different positive step counts, got '
                          f'{_STEPS.value}')
  cli.require_positive(PROG, **{'--parallel': _PARALLEL.value})
  config, _ = sweeps.load_config(_GIN_FILE.value, [])  # SweepError: exit 2
  points, _ = sweeps.plan(config, sweeps.local_device_count)  # SweepError: exit 2
  by_cost = sorted(points, key=lambda p: p.flops_per_token)
  low, high = steps
  measured = {}
  print(f'load average before: {os.getloadavg()}')
  for point in (by_cost[0], by_cost[-1]):
    cmd = sweeps.command(config, point, '/unused')
    t_low, t_high = _timed_run(cmd, low), _timed_run(cmd, high)
    step_s = max(t_high - t_low, 0.0) / (high - low)
    overhead = max(t_low - low * step_s, 0.0)
    measured[point.flops_per_token] = (overhead, step_s)
    print(f'{point.size:10s} N={point.n_params:>9,d}  start-up {overhead:5.1f} s  '
          f'{step_s * 1e3:7.1f} ms/step  ({low} steps {t_low:.1f} s, {high} steps '
          f'{t_high:.1f} s)')
  (x0, (o0, s0)), (x1, (o1, s1)) = sorted(measured.items())
  total = 0.0
  for p in points:
    frac = 0.0 if x1 == x0 else (p.flops_per_token - x0) / (x1 - x0)
    total += (o0 + frac * (o1 - o0)) + p.train_steps * (s0 + frac * (s1 - s0))
  print(f'load average after: {os.getloadavg()}')
  print(f'{len(points)} runs, {sum(p.train_steps for p in points):,d} steps: projected '
        f'{total / 60:.1f} min of run time, {total / _PARALLEL.value / 60:.1f} min wall at '
        f'--parallel={_PARALLEL.value}')


if __name__ == '__main__':
  cli.run(main, PROG)
