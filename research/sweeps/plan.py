"""Planning a sweep: each grid point becomes a `Point` with its run_id, TRAIN_STEPS and the
gin of its run, and `command` is the `python -m research.train` line that trains it.

Budgets. A token budget D gives TRAIN_STEPS = round(D / tokens-per-step). An IsoFLOP budget C
gives, for every model size, D = C / FLOPs-per-token(model) under `flops_convention` (the
trainer's `flops` column is C = 6ND, so '6N' keeps budget and logged FLOPs consistent).
"""
import heapq
import os
import subprocess
import sys
from typing import Any, Callable, Mapping, Optional, Sequence

import gin

from research import cli
from research import gin_files as gin_paths
from research.sweeps.executors import SlurmConfig
from research.sweeps.grid import Point, SweepConfig, SweepError, make_run_id

# How a family / objective name becomes gin of a run ({name} is substituted). The imports
# file registers make_pipeline and objectives.* before the objective's own gin file is read.
FAMILY_BINDINGS = ("TransformerConfig.family = '{name}'",)
OBJECTIVE_GIN_FILES = ('gin_configs/sweeps/pipeline_imports.gin',
                       'gin_configs/objectives/{name}.gin')
OBJECTIVE_BINDINGS = ("trainer.train.objective = '{name}'",)
# In the sweep directory: the JAX compilation cache its runs share (the init and eval
# programs of a size are the same at every budget).
COMPILATION_CACHE = '.jax_cache'
# The module each run starts as (`python -m`): an installed package, no checkout needed.
TRAIN_MODULE = 'research.train'


def load_config(paths: Sequence[str], bindings: Sequence[str]):
  """(SweepConfig, SlurmConfig) from sweep gin files; raises SweepError (a UsageError)
  for a file that is nowhere or a config gin cannot read."""
  gin_paths.add_search_paths()
  found = gin_paths.resolve_all(paths)
  try:
    gin.parse_config_files_and_bindings(found, list(bindings), finalize_config=False)
    # Materialized now: planning re-uses gin for each run's config.
    return SweepConfig(), SlurmConfig()
  except Exception as e:  # gin raises many types; all mean "this config is wrong"
    raise SweepError(f'bad sweep config: {cli.first_line(e)}') from None


def _abs(path: str) -> str:
  """Absolute path of a run's gin file; one that is nowhere is left for gin to report."""
  return gin_paths.resolve(path) or path


def _binding(name: str, value: Any) -> str:
  return f'{name} = {value!r}'


def resolve_run(gin_files: Sequence[str], bindings: Sequence[str]):
  """(TransformerConfig, BATCH_SIZE, TASK_FEATURE_LENGTHS, MeshConfig) of a run, from its gin.

  Clears gin's global config: call after the sweep's own config has been materialized.
  """
  from research import models
  from research.parallel import mesh
  gin.clear_config()
  gin_paths.add_search_paths()  # for the `include` lines of run configs
  files = [_abs(f) for f in gin_files]
  try:
    gin.parse_config_files_and_bindings(files, list(bindings), finalize_config=False)
    config = models.TransformerConfig()
    batch_size = int(gin.query_parameter('%BATCH_SIZE'))
    cli.check_positive(BATCH_SIZE=batch_size)
    lengths = dict(gin.query_parameter('%TASK_FEATURE_LENGTHS'))
    mesh_config = mesh.MeshConfig()
  except Exception as e:  # gin raises many types; all mean "this point's config is wrong"
    raise SweepError(f'{type(e).__name__}: {str(e).strip().splitlines()[0]}') from None
  finally:
    gin.clear_config()
  return config, batch_size, lengths, mesh_config


def _check_mesh(mesh_config, device_count: Callable[[], int]) -> None:
  """Raises SweepError if the run's mesh cannot be built on the devices a run sees.

  The default mesh (data = -1, nothing else fixed) fits any device count, so the count,
  which costs a JAX start-up, is only asked for when a point fixes an axis.
  """
  from research.parallel import mesh
  if mesh.fits_any_device_count(mesh_config):
    return
  try:
    mesh.shape_on(mesh_config, device_count())
  except mesh.MeshError as e:
    raise SweepError(str(e)) from None


def local_device_count() -> int:
  """Devices a trainer started by the local executor sees (same environment, own process).

  Asked of a child process: importing JAX's backend here would hold the accelerator that
  the runs need.
  """
  try:
    proc = subprocess.run([sys.executable, '-c', 'import jax; print(jax.device_count())'],
                          capture_output=True, text=True, timeout=300)
  except (OSError, subprocess.TimeoutExpired) as e:
    raise SweepError(f'cannot count the devices a run would see: {e}') from None
  # The count is the last line printed: a site hook or plugin may print before it.
  last = (proc.stdout.strip().splitlines() or [''])[-1].strip()
  if proc.returncode != 0 or not last.isdigit():
    raise SweepError('cannot count the devices a run would see: '
                     + (proc.stderr.strip().splitlines() or ['no output'])[-1])
  return int(last)


def _once(fn: Callable[[], int]) -> Callable[[], int]:
  """fn, called at most once: later calls return its result or raise its error again."""
  memo = []

  def call():
    if not memo:
      try:
        memo.append((fn(), None))
      except SweepError as e:
        memo.append((None, e))
    value, error = memo[0]
    if error is not None:
      raise error
    return value
  return call


def per_token_cost(config, lengths: Mapping[str, int], convention: str):
  """(training FLOPs per target token under `convention`, target tokens per example).

  Tokens are what the trainer counts: target positions. A decoder-only model sees one
  sequence of inputs + targets; an encoder-decoder's cost per example is spread over its
  decoder targets.
  """
  from research import models
  targets = int(lengths['targets'])
  if config.family == 'encoder_decoder':
    per_example = models.flops_per_example(config, int(lengths.get('inputs', targets)),
                                           targets)
    tokens = targets
  else:
    tokens = targets + int(lengths.get('inputs', 0)) if config.family == 'decoder' else targets
    per_example = models.flops_per_example(config, 0, tokens)
  if convention not in per_example:
    raise SweepError(f'flops_convention {convention!r} is not one of {sorted(per_example)}')
  return per_example[convention] / tokens, tokens


def plan(config: SweepConfig, device_count: Optional[Callable[[], int]] = None
         ) -> tuple[list[Point], list[tuple[str, str]]]:
  """(points, skipped): every grid point, or why it was left out (run_id, reason).

  With `device_count` (a function giving the number of devices one run sees), a point
  whose mesh does not fit them is left out too.
  """
  if device_count is not None:
    device_count = _once(device_count)
  if bool(config.flop_budgets) == bool(config.token_budgets):
    raise SweepError('set exactly one of SweepConfig.flop_budgets (IsoFLOP) or '
                     'SweepConfig.token_budgets')
  if not config.sizes:
    raise SweepError('SweepConfig.sizes is empty')
  points, skipped, seen = [], [], set()
  budgets = ([('flop', c) for c in config.flop_budgets] or
             [('token', d) for d in config.token_budgets])
  for kind, budget in budgets:
    for size, size_params in config.sizes.items():
      for family in config.families:
        for objective in config.objectives:
          for seed in config.seeds:
            run_id = make_run_id(size, family, objective, seed,
                                 budget if kind == 'flop' else None,
                                 budget if kind == 'token' else None)
            if run_id in seen:
              raise SweepError(f'two grid points share run_id {run_id!r}; make the size '
                               'names or budgets distinct')
            seen.add(run_id)
            point_files = [f.format(name=objective) for f in OBJECTIVE_GIN_FILES]
            point_bindings = (
                [b.format(name=family) for b in FAMILY_BINDINGS]
                + [b.format(name=objective) for b in OBJECTIVE_BINDINGS]
                + [_binding(k, v) for k, v in size_params.items()]
                + [_binding('trainer.train.seed', int(seed))])
            try:
              missing = [f for f in point_files if gin_paths.resolve(f) is None]
              if missing:
                raise SweepError(f'objective {objective!r} has no gin file {missing[0]}')
              model, batch_size, lengths, mesh_config = resolve_run(
                  list(config.run_gin_files) + point_files,
                  list(config.run_bindings) + point_bindings)
              if device_count is not None:
                _check_mesh(mesh_config, device_count)
              cost, tokens_per_example = per_token_cost(model, lengths,
                                                        config.flops_convention)
            except SweepError as e:
              skipped.append((run_id, f'bad configuration: {e}'))
              continue
            from research import models
            n_params = models.count_params(model)['total']
            tokens_per_step = batch_size * tokens_per_example
            target_tokens = budget / cost if kind == 'flop' else budget
            steps = max(1, int(round(target_tokens / tokens_per_step)))
            if kind == 'flop' and steps < config.min_steps:
              skipped.append((run_id, f'{steps} steps < min_steps={config.min_steps} at this '
                                      'budget (model too large for it)'))
              continue
            if kind == 'flop' and config.tokens_per_param:
              low, high = config.tokens_per_param
              ratio = steps * tokens_per_step / n_params
              if not low <= ratio <= high:
                skipped.append((run_id, f'{ratio:.3g} tokens per parameter, outside '
                                        f'tokens_per_param [{low:g}, {high:g}]'))
                continue
            rule_bindings = []
            if config.learning_rate is not None:
              rule_bindings = [f'make_schedule.peak = {config.learning_rate(n_params):.4g}']
            points.append(Point(
                run_id=run_id, size=size, family=family, objective=objective,
                seed=int(seed), flop_budget=float(budget) if kind == 'flop' else None,
                token_budget=float(budget) if kind == 'token' else None,
                train_steps=steps, tokens=steps * tokens_per_step, n_params=n_params,
                flops_per_token=cost, gin_files=tuple(point_files),
                bindings=tuple(point_bindings + rule_bindings
                               + _step_bindings(config, steps))))
  if not points and not skipped:
    raise SweepError('the grid is empty (no seeds, families or objectives)')
  if not points:  # e.g. a bad binding in run_bindings: every point fails the same way
    raise SweepError(f'no point of the grid can run ({len(skipped)} left out); the first: '
                     f'{skipped[0][0]}: {skipped[0][1]}')
  return points, skipped


def _step_bindings(config: SweepConfig, steps: int) -> list[str]:
  eval_every = max(1, steps // max(config.evals_per_run, 1))
  return [f'TRAIN_STEPS = {steps}',
          f'trainer.train.eval_every = {eval_every}',
          f'trainer.train.log_every = {eval_every}',
          f'CheckpointConfig.every_steps = {max(1, steps // max(config.checkpoints_per_run, 1))}',
          f'make_schedule.warmup_steps = {_warmup(config, steps)}']


def _warmup(config: SweepConfig, steps: int) -> int:
  if config.warmup_steps is not None:
    return config.warmup_steps
  return max(1, int(config.warmup_fraction * steps))


def command(config: SweepConfig, point: Point, run_dir: str,
            multihost: bool = False) -> list[str]:
  """The command line that trains one point (gin files as absolute paths); `multihost` when
  the run is one of several processes (SlurmConfig.nodes x tasks_per_node > 1)."""
  files = [_abs(f) for f in list(config.run_gin_files) + list(point.gin_files)]
  cache = os.path.join(os.path.dirname(os.path.abspath(run_dir)), COMPILATION_CACHE)
  return ([sys.executable, '-m', TRAIN_MODULE] + [f'--gin_file={f}' for f in files]
          + [f'--gin_bindings={b}' for b in list(config.run_bindings) + list(point.bindings)]
          + [f'--compilation_cache_dir={cache}', f'--workdir={run_dir}']
          + (['--multihost'] if multihost else []))


def packed_wall(durations: Sequence[float], parallel: int) -> float:
  """Wall time of running `durations` in order, `parallel` at a time, each starting when a
  slot frees (as run_sweep starts its runs)."""
  slots = [0.0] * parallel
  for d in durations:
    heapq.heappush(slots, heapq.heappop(slots) + d)
  return max(slots)


def launch_order(points: Sequence[Point]) -> list[Point]:
  """The order run_sweep starts points in: the dearest (most FLOPs) first."""
  return sorted(points, key=lambda p: -p.flops_per_token * p.tokens)


def frontier_warnings(points: Sequence[Point]) -> list[str]:
  """Lines naming each FLOP budget whose sizes all lie on one side of the optimum that
  Hoffmann et al.'s ~20 tokens per parameter predicts: its IsoFLOP curve is unlikely to
  have an interior minimum, so Approach 2 would leave it out."""
  from research.scaling import planning  # pylint: disable=g-import-not-at-top
  sizes: dict[float, list[int]] = {}
  for p in points:
    if p.flop_budget is not None:
      sizes.setdefault(float(p.flop_budget), []).append(p.n_params)
  return planning.warnings(sorted(sizes), sizes)


def plan_notes(points: Sequence[Point], skipped: Sequence[tuple[str, str]]) -> list[str]:
  """The lines a sweep prints about its plan besides the points: each grid point left out
  with its reason, then the `frontier_warnings`."""
  return ([f'left out {run_id}: {why}' for run_id, why in skipped]
          + [f'warning: {line}' for line in frontier_warnings(points)])
