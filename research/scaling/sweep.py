"""Sweeps: a gin grid of (size x budget x family x objective x seed) -> runs of train.py.

Stages: (1) `SweepConfig` (gin) names the grid; (2) `plan()` turns it into `Point`s, each with
a deterministic run_id, its TRAIN_STEPS and the gin bindings of its run; (3) `run_sweep()`
launches `experiments/train.py --workdir=SWEEP_DIR/<run_id>` for each point through an
executor ('local' subprocesses, or submitit for slurm: research/scaling/executors.py), K at a
time, printing progress.

Budgets. A token budget D gives TRAIN_STEPS = round(D / tokens-per-step). An IsoFLOP budget C
gives, for every model size, D = C / FLOPs-per-token(model) under `flops_convention` (the
trainer's `flops` column is C = 6ND, so '6N' keeps budget and logged FLOPs consistent).

Restarts. A run directory holding the trainer's completion marker is done and never re-run;
any other is (re)started, and the trainer resumes it from its checkpoints. Each running
trainer holds an flock on `<run_dir>/.sweep.lock` (inherited from the launcher), so a
re-launched sweep waits for a trainer orphaned by a killed sweep instead of starting a
second one on the same directory; orphans also get SIGTERM (PDEATHSIG), which makes the
trainer checkpoint and exit. A failed run gets `error.txt` (exit code + stderr tail), is
reported, and the others go on; a re-launch retries it.

The sweep directory holds `sweep.json` (the plan), `sweep_status.json` (state of each run),
`sweep_events.jsonl` (every launch / done / failed), one directory per run and results.csv.
"""
import dataclasses
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import gin

from research.scaling.executors import LOCK_FILE, LOG_FILE, REPO, LocalExecutor, SubmititExecutor

TRAIN_SCRIPT = os.path.join(REPO, 'experiments', 'train.py')
# research.train.trainer.COMPLETION_MARKER; scaling does not import train (DESIGN.md).
COMPLETION_MARKER = 'COMPLETED'
POINT_FILE = 'sweep_point.json'   # the point a run directory belongs to
ERROR_FILE = 'error.txt'          # why the last attempt failed
PLAN_FILE = 'sweep.json'          # in the sweep directory: every point of the grid
EVENTS_FILE = 'sweep_events.jsonl'  # launch / done / failed, one JSON line each

# How a family / objective name becomes gin of a run ({name} is substituted). The imports
# file registers make_pipeline and objectives.* before the objective's own gin file is read.
FAMILY_BINDINGS = ("TransformerConfig.family = '{name}'",)
OBJECTIVE_GIN_FILES = ('gin_configs/sweeps/pipeline_imports.gin',
                       'gin_configs/objectives/{name}.gin')
OBJECTIVE_BINDINGS = ("trainer.train.objective = '{name}'",)


class SweepError(ValueError):
  """A sweep that cannot be planned or launched; the message says which setting."""


# ------------------------------------------------------------------------------------------
# (1) The grid.

@gin.configurable
def depth_width_sizes(depths: Sequence[int] = (1, 2, 3, 4, 6), width_per_layer: int = 64,
                      head_dim: int = 32, ff_ratio: int = 4,
                      widths: Optional[Sequence[int]] = None,
                      per_size: Optional[Sequence[Mapping[str, Any]]] = None) -> dict:
  """Model sizes by a shape rule: d_model = width_per_layer * depth (aspect ratio fixed).

  `widths`, if given, pairs with `depths` instead of the rule. Names are 'L<depth>d<width>'.
  Kaplan et al. (2020) found loss nearly flat over d_model / n_layer in [20, 200]; the
  default 64 is inside it. `per_size`, if given, pairs with `depths` too: more gin
  parameters of each size (a learning rate or init tuned per size), which come after the
  sweep's run_bindings.
  """
  widths = list(widths) if widths is not None else [width_per_layer * d for d in depths]
  if len(widths) != len(depths):
    raise SweepError(f'depth_width_sizes: {len(depths)} depths but {len(widths)} widths')
  per_size = [{}] * len(depths) if per_size is None else list(per_size)
  if len(per_size) != len(depths):
    raise SweepError(f'depth_width_sizes: {len(depths)} depths but {len(per_size)} '
                     'per_size entries')
  sizes = {}
  for depth, width, extra in zip(depths, widths, per_size):
    if width % head_dim:
      raise SweepError(f'depth_width_sizes: d_model {width} is not a multiple of '
                       f'head_dim {head_dim}')
    sizes[f'L{depth}d{width}'] = {
        'TransformerConfig.num_layers': depth, 'TransformerConfig.d_model': width,
        'TransformerConfig.num_heads': width // head_dim,
        'TransformerConfig.d_ff': ff_ratio * width, **dict(extra)}
  return sizes


@gin.configurable
@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """One sweep. Exactly one of flop_budgets / token_budgets is non-empty."""
  sizes: Mapping[str, Mapping[str, Any]] = gin.REQUIRED  # name -> {gin parameter: value}
  flop_budgets: Sequence[float] = ()   # IsoFLOP: each size trained to D = C / FLOPs-per-token
  token_budgets: Sequence[float] = ()  # every size trained on each D tokens
  families: Sequence[str] = ('decoder',)
  objectives: Sequence[str] = ('causal_lm',)
  seeds: Sequence[int] = (0,)
  run_gin_files: Sequence[str] = ('gin_configs/runs/tiny.gin',)  # relative to the repo
  run_bindings: Sequence[str] = ()     # applied to every run, before the point's own
  flops_convention: str = '6N'
  min_steps: int = 10                  # IsoFLOP points with fewer steps are left out
  evals_per_run: int = 8               # intermediate evals (Chinchilla Approach 1 uses them)
  checkpoints_per_run: int = 4
  warmup_fraction: float = 0.1         # warm-up scales with the run: short runs still decay


@dataclasses.dataclass(frozen=True)
class Point:
  run_id: str
  size: str
  family: str
  objective: str
  seed: int
  flop_budget: Optional[float]
  token_budget: Optional[float]
  train_steps: int
  tokens: int                 # planned: train_steps x tokens per step
  n_params: int
  flops_per_token: float      # under the sweep's flops_convention
  gin_files: tuple            # gin files of this run, after run_gin_files
  bindings: tuple             # gin bindings of this run, after run_bindings

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def _budget_tag(prefix: str, value: float) -> str:
  if value < 1e4 and float(value).is_integer():
    return f'{prefix}{int(value)}'
  mantissa, exponent = f'{value:.2e}'.split('e')
  mantissa = mantissa.rstrip('0').rstrip('.')
  return f'{prefix}{mantissa}e{int(exponent)}'


def make_run_id(size: str, family: str, objective: str, seed: int,
                flop_budget: Optional[float] = None,
                token_budget: Optional[float] = None) -> str:
  """Readable and deterministic, e.g. 'C1e12-L2d64-decoder-causal_lm-s0'."""
  budget = (_budget_tag('C', flop_budget) if flop_budget is not None
            else _budget_tag('D', token_budget))
  return f'{budget}-{size}-{family}-{objective}-s{seed}'


def _abs(path: str) -> str:
  return path if os.path.isabs(path) else os.path.join(REPO, path)


def _binding(name: str, value: Any) -> str:
  return f'{name} = {value!r}'


def resolve_run(gin_files: Sequence[str], bindings: Sequence[str]):
  """(TransformerConfig, BATCH_SIZE, TASK_FEATURE_LENGTHS, MeshConfig) of a run, from its gin.

  Clears gin's global config: call after the sweep's own config has been materialized.
  """
  from research import models
  from research.parallel import mesh
  gin.clear_config()
  files = [_abs(f) for f in gin_files]
  try:
    gin.parse_config_files_and_bindings(files, list(bindings), finalize_config=False)
    config = models.TransformerConfig()
    batch_size = int(gin.query_parameter('%BATCH_SIZE'))
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
              missing = [f for f in point_files if not os.path.exists(_abs(f))]
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
            points.append(Point(
                run_id=run_id, size=size, family=family, objective=objective,
                seed=int(seed), flop_budget=float(budget) if kind == 'flop' else None,
                token_budget=float(budget) if kind == 'token' else None,
                train_steps=steps, tokens=steps * tokens_per_step, n_params=n_params,
                flops_per_token=cost, gin_files=tuple(point_files),
                bindings=tuple(point_bindings + _step_bindings(config, steps))))
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
          f'make_schedule.warmup_steps = {max(1, int(config.warmup_fraction * steps))}']


def command(config: SweepConfig, point: Point, run_dir: str) -> list[str]:
  """The train.py command line of one point."""
  files = [_abs(f) for f in list(config.run_gin_files) + list(point.gin_files)]
  return ([sys.executable, TRAIN_SCRIPT] + [f'--gin_file={f}' for f in files]
          + [f'--gin_bindings={b}' for b in list(config.run_bindings) + list(point.bindings)]
          + [f'--workdir={run_dir}'])


# ------------------------------------------------------------------------------------------
# (2) Executors (research/scaling/executors.py).

@gin.configurable
@dataclasses.dataclass(frozen=True)
class SlurmConfig:
  """submitit parameters of each run's job (`slurm_` prefix dropped)."""
  partition: Optional[str] = None
  timeout_min: int = 240
  gpus_per_node: int = 1
  cpus_per_task: int = 8
  mem_gb: int = 64
  additional: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def make_executor(name: str, sweep_dir: str, slurm: Optional[SlurmConfig] = None):
  factories: dict[str, Callable[[], Any]] = {
      'local': LocalExecutor,
      'slurm': lambda: SubmititExecutor(os.path.join(sweep_dir, '_submitit'), 'slurm',
                                        slurm or SlurmConfig()),
      'submitit_local': lambda: SubmititExecutor(os.path.join(sweep_dir, '_submitit'),
                                                 'local', slurm or SlurmConfig()),
  }
  if name not in factories:
    raise SweepError(f'unknown executor {name!r}; one of {sorted(factories)}')
  return factories[name]()


# ------------------------------------------------------------------------------------------
# (3) The loop: launch K at a time, poll, record, report.

def _write_json_atomic(path: str, obj: Any) -> None:
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=str)
    f.write('\n')
  os.replace(tmp, path)


def _duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  hours, rest = divmod(seconds, 3600)
  return f'{hours}h{rest // 60:02d}m' if hours else f'{rest // 60}m{rest % 60:02d}s'


def _tail(path: str, offset: int, lines: int = 25) -> str:
  try:
    with open(path, 'rb') as f:
      f.seek(offset)
      text = f.read().decode('utf-8', 'replace')
  except OSError:
    return ''
  # The trainer's progress line uses '\r' on a terminal; keep only finished lines.
  return '\n'.join(text.replace('\r', '\n').strip().splitlines()[-lines:])


def _error_line(tail: str) -> str:
  """The most telling line of a failed run's output: its last error line, else its last."""
  lines = [l for l in tail.splitlines() if l.strip()]
  for line in reversed(lines):
    if 'error' in line.lower() or 'Error' in line:
      return line.strip()
  return lines[-1].strip() if lines else '(no output)'


class EtaModel:
  """Wall seconds of a run ~ a + b * planned FLOPs, fitted on the runs finished so far."""

  def __init__(self):
    self.samples: list[tuple[float, float]] = []

  def add(self, flops: float, seconds: float) -> None:
    self.samples.append((flops, seconds))

  def predict(self, flops: float) -> Optional[float]:
    if not self.samples:
      return None
    xs = [x for x, _ in self.samples]
    ys = [y for _, y in self.samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    if max(xs) < 1.5 * min(xs):
      # One cost (an IsoFLOP budget) seen so far: no trend to fit, so assume every run takes
      # as long. Start-up dominates small runs; scaling by FLOPs would promise them too soon.
      return mean_y
    var = sum((x - mean_x) ** 2 for x in xs)
    slope = max(sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var, 0.0)
    return max(mean_y + slope * (flops - mean_x), 0.0)


@dataclasses.dataclass
class _Run:
  point: Point
  run_dir: str
  state: str = 'pending'  # pending | running | done | failed
  attempts: int = 0
  handle: Any = None
  started: float = 0.0
  log_offset: int = 0
  error: str = ''
  seconds: float = 0.0

  @property
  def flops(self) -> float:
    return self.point.flops_per_token * self.point.tokens


def _try_lock(run_dir: str) -> Optional[int]:
  fd = os.open(os.path.join(run_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    os.close(fd)
    return None
  return fd


def _check_point_file(run: _Run) -> None:
  path = os.path.join(run.run_dir, POINT_FILE)
  if not os.path.exists(path):
    return
  with open(path) as f:
    previous = json.load(f)
  if (list(previous.get('bindings', [])) != list(run.point.bindings)
      or list(previous.get('gin_files', [])) != list(run.point.gin_files)):
    raise SweepError(f'{run.run_dir} holds a run of a different configuration (its '
                     f'{POINT_FILE} has other bindings); use a new --sweep_dir or remove it')


class _Stop:
  """SIGTERM / SIGINT -> a flag; the loop then checkpoints the running trainers and exits."""

  def __init__(self):
    self.requested, self._previous = False, {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread
        pass
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)


def run_sweep(config: SweepConfig, sweep_dir: str, executor: str = 'local',
              parallel: int = 1, max_attempts: int = 2, report_every: float = 30.0,
              poll_every: float = 0.5, slurm: Optional[SlurmConfig] = None,
              stream=None) -> dict:
  """Runs every point of the grid not yet done; returns {'done', 'failed', 'skipped', ...}.

  A point whose trainer exits 0 without the completion marker (preempted) is started again,
  up to `max_attempts` launches per call; a non-zero exit fails the point at once.
  """
  stream = stream or sys.stdout
  if parallel < 1:
    raise SweepError(f'--parallel must be >= 1, got {parallel}')
  # Only the local executor's runs see this machine's devices as they are. Under submitit
  # (slurm, submitit_local) the job's own allocation sets them (CUDA_VISIBLE_DEVICES from
  # gpus_per_node), unknown here: there the trainer checks the mesh at start-up, and a run
  # whose mesh does not fit fails with that one line in its log and counts as failed.
  points, skipped = plan(config, local_device_count if executor == 'local' else None)
  os.makedirs(sweep_dir, exist_ok=True)
  _write_json_atomic(os.path.join(sweep_dir, PLAN_FILE), {
      'points': [p.to_json() for p in points],
      'skipped': [{'run_id': r, 'reason': why} for r, why in skipped],
      'config': dataclasses.asdict(config)})
  runner = make_executor(executor, sweep_dir, slurm)
  runs = [_Run(p, os.path.join(sweep_dir, p.run_id)) for p in points]
  for run in runs:
    _check_point_file(run)
    if os.path.exists(os.path.join(run.run_dir, COMPLETION_MARKER)):
      run.state = 'done'
  events_path = os.path.join(sweep_dir, EVENTS_FILE)

  def event(kind: str, run: _Run, **extra) -> None:
    with open(events_path, 'a') as f:
      f.write(json.dumps({'time': time.time(), 'event': kind, 'run_id': run.point.run_id,
                          'attempt': run.attempts, **extra}) + '\n')

  def say(line: str) -> None:
    stream.write(line + '\n')
    stream.flush()

  already = sum(r.state == 'done' for r in runs)
  say(f'sweep: {len(runs)} runs in {sweep_dir} ({already} already done, '
      f'{len(skipped)} grid points left out), executor {executor}, {parallel} at a time')
  for run_id, why in skipped:
    say(f'  left out {run_id}: {why}')
  # Longest first: the last runs to finish are short ones, which keeps the slots busy.
  queue = sorted((r for r in runs if r.state == 'pending'), key=lambda r: -r.flops)
  eta = EtaModel()
  start = time.time()
  last_report, waiting_noted = 0.0, set()

  def report(force: bool = False) -> None:
    nonlocal last_report
    if not force and time.time() - last_report < report_every:
      return
    last_report = time.time()
    counts = {s: sum(r.state == s for r in runs) for s in ('done', 'running', 'failed',
                                                          'pending')}
    remaining = [eta.predict(r.flops) for r in runs if r.state == 'pending']
    remaining += [(lambda p: None if p is None else max(p - (time.time() - r.started), 0.0))(
        eta.predict(r.flops)) for r in runs if r.state == 'running']
    eta_text = ('?' if any(x is None for x in remaining)
                else _duration(sum(remaining) / parallel))
    say(f'[sweep {_duration(time.time() - start)}] {counts["done"]}/{len(runs)} done, '
        f'{counts["running"]} running, {counts["failed"]} failed, {counts["pending"]} '
        f'pending; eta {eta_text}')
    _write_json_atomic(os.path.join(sweep_dir, 'sweep_status.json'), {
        r.point.run_id: {'state': r.state, 'attempts': r.attempts, 'error': r.error,
                         'seconds': r.seconds} for r in runs})

  def launch(run: _Run) -> bool:
    os.makedirs(run.run_dir, exist_ok=True)
    fd = _try_lock(run.run_dir)
    if fd is None:  # a trainer from a killed sweep still holds this directory
      if run.point.run_id not in waiting_noted:
        say(f'  waiting for an earlier trainer of {run.point.run_id} to exit')
        waiting_noted.add(run.point.run_id)
      return False
    try:
      _write_json_atomic(os.path.join(run.run_dir, POINT_FILE), run.point.to_json())
      log_path = os.path.join(run.run_dir, LOG_FILE)
      run.log_offset = os.path.getsize(log_path) if os.path.exists(log_path) else 0
      cmd = command(config, run.point, run.run_dir)
      if executor != 'local':
        os.close(fd)  # the job takes the lock where it runs
        fd = None
      run.handle = runner.start(cmd, run.run_dir, fd)
    finally:
      if fd is not None:
        os.close(fd)  # the child keeps the lock through its inherited descriptor
    run.state, run.started = 'running', time.time()
    run.attempts += 1
    event('launch', run)
    return True

  def finish(run: _Run, code: int) -> None:
    run.seconds = time.time() - run.started
    marker = os.path.join(run.run_dir, COMPLETION_MARKER)
    if os.path.exists(marker):
      run.state, run.error = 'done', ''
      if os.path.exists(os.path.join(run.run_dir, ERROR_FILE)):
        os.remove(os.path.join(run.run_dir, ERROR_FILE))
      eta.add(run.flops, run.seconds)
      say(f'  done    {run.point.run_id} in {_duration(run.seconds)}')
      event('done', run, seconds=run.seconds)
      return
    if stop.requested:  # stopped by us: resumable, not failed
      run.state = 'pending'
      event('stopped', run)
      return
    tail = _tail(os.path.join(run.run_dir, LOG_FILE), run.log_offset)
    if code == 0 and run.attempts < max_attempts:
      run.state = 'pending'  # preempted: checkpoint saved, start it again
      queue.append(run)
      say(f'  requeue {run.point.run_id}: exited without its completion marker')
      event('requeue', run)
      return
    run.state = 'failed'
    run.error = (f'exit code {code}' if code else 'exited without completion marker')
    run.error += f': {_error_line(tail)}'
    with open(os.path.join(run.run_dir, ERROR_FILE), 'w') as f:
      f.write(f'{run.error}\n\n--- last lines of {LOG_FILE} ---\n{tail}\n')
    say(f'  FAILED  {run.point.run_id}: {run.error}')
    event('failed', run, error=run.error)

  with _Stop() as stop:
    while not stop.requested:
      running = [r for r in runs if r.state == 'running']
      for run in running:
        code = runner.poll(run.handle)
        if code is not None:
          finish(run, code)
      running = [r for r in runs if r.state == 'running']
      deferred = []
      while queue and len(running) < parallel and not stop.requested:
        run = queue.pop(0)
        if launch(run):
          running.append(run)
        else:
          deferred.append(run)
      queue[:0] = deferred
      report(force=False)
      if not running and not queue:
        break
      time.sleep(poll_every if not deferred else max(poll_every, 1.0))
    if stop.requested:
      say('sweep: stop requested; checkpointing the running trainers')
      running = [r for r in runs if r.state == 'running']
      for run in running:
        runner.terminate(run.handle)
      for run in running:
        runner.wait(run.handle, timeout=120)
        finish(run, runner.poll(run.handle) or 0)
  report(force=True)
  failed = {r.point.run_id: r.error for r in runs if r.state == 'failed'}
  summary = {'done': [r.point.run_id for r in runs if r.state == 'done'], 'failed': failed,
             'pending': [r.point.run_id for r in runs if r.state == 'pending'],
             'skipped': dict(skipped), 'seconds': time.time() - start,
             'interrupted': stop.requested}
  if failed:
    say(f'sweep: {len(failed)} run(s) failed (details in <run_dir>/{ERROR_FILE}):')
    for run_id, error in failed.items():
      say(f'  {run_id}: {error}')
  return summary
