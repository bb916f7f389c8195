r"""What a sweep will cost here: each run's start-up overhead and seconds per step, measured.

  python benchmarks/sweep_cost.py --gin_file=gin_configs/sweeps/quickstart.gin \
      [--parallel=2] [--steps=10,310] [--variant_bindings="trainer.train.steps_per_call = 1"]

For the smallest and the largest model of the sweep, times `python -m research.train` at two
step counts (same config otherwise) and solves wall = overhead + steps x step_seconds. The
step time of the sizes in between is interpolated linearly in FLOPs per step; the projected
sweep wall time is sum(run times) / parallel (longest-first packing is close to that when
runs are many; the 7 extra evaluations and 3 checkpoints of a real run are not in it).
Every run's CPU time (user + system) is projected the same way: on shared cores, a run's
wall time grows with the other processes' load, its CPU time much less, so CPU seconds /
cores is the wall time an idle machine would take with every core busy (as --parallel=2
keeps both cores of a 2-core machine). The sweep's useful FLOP/s is its total compute C (the sweep's flops_convention, 6N for the
quickstart) over that wall time. --variant_bindings projects a second sweep whose runs take
those bindings too, timed in turns with the first (run by run), and prints the ratio of
their useful FLOP/s. The machine load is printed beside the numbers: on shared cores, the
projection is only as good as the load was steady.
"""
import os
import resource
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
_STEPS = flags.DEFINE_list(
    'steps', ['10', '310'], 'The two step counts timed (300 steps apart: a 9k-parameter '
    'step is 8 ms of CPU, and a run\'s start-up varies by tenths of a second).')
_VARIANT = flags.DEFINE_multi_string(
    'variant_bindings', [], 'Gin bindings added to every run of a second projected sweep '
    '(e.g. "trainer.train.steps_per_call = 1" for the quickstart as it was), timed in turns '
    'with the first.')


def _timed_run(cmd_template: list[str], steps: int) -> float:
  with tempfile.TemporaryDirectory() as workdir:
    cmd = [c for c in cmd_template if not c.startswith(('--workdir=', '--gin_bindings=TRAIN'))]
    cmd += [f'--gin_bindings=TRAIN_STEPS = {steps}', f'--workdir={workdir}']
    cpu = _children_cpu_seconds()
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=executors.child_env())
    return time.perf_counter() - start, _children_cpu_seconds() - cpu


def _children_cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


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
  variants = {'base': []}
  if _VARIANT.value:
    variants['variant'] = [f'--gin_bindings={b}' for b in _VARIANT.value]
  measured = {name: {} for name in variants}
  print(f'load average before: {os.getloadavg()}')
  for point in (by_cost[0], by_cost[-1]):
    cmd = sweeps.command(config, point, '/unused')
    for name, extra in variants.items():
      measured[name][point.flops_per_token] = _measure(cmd + extra, steps, point, name)
  print(f'load average after: {os.getloadavg()}')
  compute = sum(p.flops_per_token * p.tokens for p in points)
  cores = os.cpu_count()
  rates = {}
  for name in variants:
    total = _projected_run_seconds(points, {x: m[0] for x, m in measured[name].items()})
    cpu = _projected_run_seconds(points, {x: m[1] for x, m in measured[name].items()})
    wall = total / _PARALLEL.value
    rates[name] = (compute / wall, compute / (cpu / cores))
    print(f'{name}: {len(points)} runs, {sum(p.train_steps for p in points):,d} steps, '
          f'C = {compute:.3g} FLOPs ({config.flops_convention}): projected '
          f'{total / 60:.1f} min of run time, {wall / 60:.1f} min wall at '
          f'--parallel={_PARALLEL.value}, {rates[name][0] / 1e9:.1f} GFLOP/s useful; '
          f'{cpu / 60:.1f} CPU min, {cpu / cores / 60:.1f} min on {cores} idle cores, '
          f'{rates[name][1] / 1e9:.1f} GFLOP/s useful')
  if 'variant' in rates:
    (base_wall, base_cpu), (var_wall, var_cpu) = rates['base'], rates['variant']
    print(f'base / variant useful FLOP/s: {base_wall / var_wall:.2f}x by wall time, '
          f'{base_cpu / var_cpu:.2f}x by CPU time')


def _measure(cmd, steps, point, name):
  """((start-up, seconds per step) in wall time, the same in CPU time) of one run command,
  from two step counts."""
  low, high = steps
  (t_low, c_low), (t_high, c_high) = _timed_run(cmd, low), _timed_run(cmd, high)
  fits = []
  for kind, at_low, at_high in (('wall', t_low, t_high), ('CPU', c_low, c_high)):
    step_s = max(at_high - at_low, 0.0) / (high - low)
    overhead = max(at_low - low * step_s, 0.0)
    fits.append((overhead, step_s))
    print(f'{name:8s} {point.size:6s} N={point.n_params:>7,d} {kind:4s} start-up '
          f'{overhead:5.1f} s {step_s * 1e3:6.1f} ms/step ({low} steps {at_low:.1f} s, '
          f'{high} steps {at_high:.1f} s)  load {os.getloadavg()[0]:.1f}')
  return fits


def _projected_run_seconds(points, measured):
  """Sum of every run's start-up + steps x step time, interpolated in FLOPs per token."""
  (x0, (o0, s0)), (x1, (o1, s1)) = sorted(measured.items())
  total = 0.0
  for p in points:
    frac = 0.0 if x1 == x0 else (p.flops_per_token - x0) / (x1 - x0)
    total += (o0 + frac * (o1 - o0)) + p.train_steps * (s0 + frac * (s1 - s0))
  return total


if __name__ == '__main__':
  cli.run(main, PROG)
