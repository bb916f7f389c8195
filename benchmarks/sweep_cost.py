r"""What a sweep will cost here: its runs' start-up and step times, measured, and the sweep's
wall time and useful FLOP/s projected from them.

  python benchmarks/sweep_cost.py --gin_file=gin_configs/sweeps/quickstart.gin \
      [--parallel=2] [--steps=10,310] [--measure=3]

For `--measure` sizes of the sweep (the cheapest, the dearest and those between, evenly in
log FLOPs per token) it times `python -m research.train` with the command of the size's
longest run three times, sharing one fresh compilation cache as a sweep's runs do: `low` steps on the empty
cache (a size's first run: everything compiles), `low + 1` steps (a later budget of the same
size: only the train step, whose schedule differs, compiles) and `high` steps. The last two
give the step time and the warm start-up, the first the cold start-up. Each point of the
sweep then costs its size's start-up (cold for the first run of a size, warm after) plus its
steps times the step time, both interpolated in log FLOPs per token between the measured
sizes. The runs are packed as the sweep starts them (dearest first, `--parallel` at a time);
the sweep's useful FLOP/s is its total compute C (the sweep's flops_convention) over that
wall time. CPU time (user + system) is projected the same way: on shared cores a run's wall
time follows the other processes' load, its CPU time much less. The machine load is printed
beside the numbers.
"""
import os
import resource
import subprocess
import tempfile
import time

from absl import flags
import numpy as np

from research import cli
from research import sweeps
from research.sweeps import cost
from research.sweeps import executors

PROG = 'sweep_cost.py'
_GIN_FILE = flags.DEFINE_multi_string('gin_file', [], 'Sweep gin file(s).')
_PARALLEL = flags.DEFINE_integer('parallel', 2, 'Runs at once in the projected sweep.')
_STEPS = flags.DEFINE_list(
    'steps', ['10', '310'], 'The two step counts timed (300 steps apart: a 9k-parameter '
    'step is a few ms of CPU, and a run\'s start-up varies by tenths of a second).')
_MEASURE = flags.DEFINE_integer('measure', 3, 'Sizes timed (at least 2: the cheapest and '
                                'the dearest per token).')


def _children_cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def _timed_run(cmd_template: list[str], steps: int, cache: str) -> tuple[float, float]:
  """(wall, CPU) seconds of one run of `steps` steps in a fresh run directory."""
  with tempfile.TemporaryDirectory() as workdir:
    cmd = [c for c in cmd_template if not c.startswith(
        ('--workdir=', '--gin_bindings=TRAIN_STEPS', '--compilation_cache_dir='))]
    cmd += [f'--gin_bindings=TRAIN_STEPS = {steps}', f'--compilation_cache_dir={cache}',
            f'--workdir={workdir}']
    cpu = _children_cpu_seconds()
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=executors.child_env())
    return time.perf_counter() - start, _children_cpu_seconds() - cpu


def measure(cmd: list[str], low: int, high: int) -> dict:
  """{'wall'|'cpu': (cold start-up, warm start-up, seconds per step)} of one size."""
  with tempfile.TemporaryDirectory() as cache:
    runs = [_timed_run(cmd, steps, cache) for steps in (low, low + 1, high)]
  out = {}
  for i, kind in enumerate(('wall', 'cpu')):
    t_cold, t_warm, t_high = (r[i] for r in runs)
    step_s = max(t_high - t_warm, 0.0) / (high - low - 1)
    out[kind] = (max(t_cold - low * step_s, 0.0), max(t_warm - (low + 1) * step_s, 0.0), step_s)
  return out


def main(argv):
  del argv  # cli.run refuses extra arguments
  cli.require(PROG, gin_file=_GIN_FILE.value)
  try:
    steps = sorted(int(s) for s in _STEPS.value)
  except ValueError:
    steps = []
  if len(steps) != 2 or steps[0] < 1 or steps[1] - steps[0] < 2:
    cli.usage_error(PROG, f'--steps must be two different positive step counts, got '
                          f'{_STEPS.value}')
  cli.require_positive(PROG, **{'--parallel': _PARALLEL.value})
  if _MEASURE.value < 2:
    cli.usage_error(PROG, f'--measure must be at least 2, got {_MEASURE.value}')
  config, _ = sweeps.load_config(_GIN_FILE.value, [])  # SweepError: exit 2
  points, _ = sweeps.plan(config, sweeps.local_device_count)  # SweepError: exit 2
  # The sweep's own order: the dearest runs first (research/sweeps/launch.py).
  points = sweeps.launch_order(points)
  # Each size is timed with the command of its longest run: its evaluations and checkpoints
  # are as sparse as in most of the sweep's steps (a short run's would tax every timed step).
  longest = {}
  for p in points:
    if p.size not in longest or p.train_steps > longest[p.size].train_steps:
      longest[p.size] = p
  by_cost = sorted(longest.values(), key=lambda p: p.flops_per_token)
  picks = np.unique(np.round(np.linspace(0, len(by_cost) - 1,
                                         min(_MEASURE.value, len(by_cost)))).astype(int))
  print(f'load average before: {os.getloadavg()}')
  measured = {'wall': {}, 'cpu': {}}
  for i in picks:
    point = by_cost[i]
    m = measure(sweeps.command(config, point, os.path.join(tempfile.gettempdir(), 'unused')),
                *steps)
    for kind in ('wall', 'cpu'):
      measured[kind][point.flops_per_token] = m[kind]
      cold, warm, step_s = m[kind]
      print(f'{point.size:6s} N={point.n_params:>8,d} {kind:4s} start-up {cold:5.1f} s cold, '
            f'{warm:5.1f} s warm, {step_s * 1e3:6.1f} ms/step  load {os.getloadavg()[0]:.1f}')
  print(f'load average after: {os.getloadavg()}')
  compute = sum(p.flops_per_token * p.tokens for p in points)
  wall = sweeps.packed_wall(cost.run_seconds(points, measured['wall']), _PARALLEL.value)
  cpu = sum(cost.run_seconds(points, measured['cpu']))
  cores = os.cpu_count()
  print(f'{len(points)} runs, {sum(p.train_steps for p in points):,d} steps, C = {compute:.3g} '
        f'FLOPs ({config.flops_convention})')
  print(f'projected wall time at --parallel={_PARALLEL.value}: {wall / 60:.1f} min, '
        f'{compute / wall / 1e9:.1f} GFLOP/s useful')
  print(f'projected CPU time: {cpu / 60:.1f} min, {cpu / cores / 60:.1f} min on {cores} idle '
        f'cores, {compute / (cpu / cores) / 1e9:.1f} GFLOP/s useful')


if __name__ == '__main__':
  cli.run(main, PROG)
