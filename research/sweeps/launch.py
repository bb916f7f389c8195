"""Running a sweep: launch its points K at a time through an executor, poll, record, report.

Restarts. A run directory holding the trainer's completion marker is done and never re-run;
any other is (re)started, and the trainer resumes it from its checkpoints. Each running
trainer holds an flock on `<run_dir>/.sweep.lock` (inherited from the launcher), so a
re-launched sweep waits for a trainer orphaned by a killed sweep instead of starting a
second one on the same directory; orphans also get SIGTERM (PDEATHSIG), which makes the
trainer checkpoint and exit. A failed run gets `error.txt` (exit code + stderr tail), is
reported, and the others go on; a re-launch retries it.

The sweep directory holds `sweep.json` (the plan), `sweep_status.json` (state of each run),
`sweep_events.jsonl` (every launch / done / failed), one directory per run and results.csv.
Under submitit it also holds `sweep_jobs.json`: every job id submitted for each run, the last
one current. A re-launched sweep re-attaches to a run's current job while it is queued or
running (requeues after a time limit keep its id) and submits only runs that have none.
"""
import dataclasses
import fcntl
import json
import os
import signal
import sys
import time
from typing import Any, Optional

from research import runs as runs_lib  # `runs` is run_sweep's list of _Run
from research.sweeps import plan as plan_lib
from research.sweeps import executors as executors_lib
from research.sweeps.executors import JOBS_FILE, LOCK_FILE, LOG_FILE, SlurmConfig
from research.sweeps.executors import make_executor
from research.sweeps.grid import Point, SweepConfig, SweepError

COMPLETION_MARKER = runs_lib.COMPLETION_MARKER
POINT_FILE = 'sweep_point.json'   # the point a run directory belongs to
ERROR_FILE = 'error.txt'          # why the last attempt failed
PLAN_FILE = 'sweep.json'          # in the sweep directory: every point of the grid
EVENTS_FILE = 'sweep_events.jsonl'  # launch / done / failed, one JSON line each


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
  executors_lib.check_executor(executor, slurm)
  multihost = executors_lib.multihost(executor, slurm)
  # Only the local executor's runs see this machine's devices as they are. Under submitit
  # (slurm, submitit_local) the job's own allocation sets them (CUDA_VISIBLE_DEVICES from
  # gpus_per_node), unknown here: there the trainer checks the mesh at start-up, and a run
  # whose mesh does not fit fails with that one line in its log and counts as failed.
  points, skipped = plan_lib.plan(
      config, plan_lib.local_device_count if executor == 'local' else None)
  os.makedirs(sweep_dir, exist_ok=True)
  runs_lib.write_json_atomic(os.path.join(sweep_dir, PLAN_FILE), {
      'points': [p.to_json() for p in points],
      'skipped': [{'run_id': r, 'reason': why} for r, why in skipped],
      'config': dataclasses.asdict(config)})
  runner = make_executor(executor, sweep_dir, slurm)
  # With job arrays SLURM holds the queue: every pending run is submitted at once.
  arrays = bool(getattr(runner, 'arrays', False))
  slots = len(points) if arrays else parallel
  width = slurm.array_parallelism if arrays else parallel  # runs at once, for the eta
  runs = [_Run(p, os.path.join(sweep_dir, p.run_id)) for p in points]
  for run in runs:
    _check_point_file(run)
    if runs_lib.is_complete(run.run_dir):
      run.state = 'done'
  events_path = os.path.join(sweep_dir, EVENTS_FILE)
  jobs_path = os.path.join(sweep_dir, JOBS_FILE)
  jobs_book: dict[str, dict] = {}
  if os.path.exists(jobs_path):
    with open(jobs_path) as f:
      jobs_book = json.load(f)

  def record_jobs(submitted: list) -> None:
    for run in submitted:
      entry = jobs_book.setdefault(run.point.run_id, {'job_ids': []})
      entry['job_ids'].append(run.handle.job_id)
      entry['executor'] = executor
    runs_lib.write_json_atomic(jobs_path, jobs_book)

  def event(kind: str, run: _Run, **extra) -> None:
    with open(events_path, 'a') as f:
      f.write(json.dumps({'time': time.time(), 'event': kind, 'run_id': run.point.run_id,
                          'attempt': run.attempts, **extra}) + '\n')

  def say(line: str) -> None:
    stream.write(line + '\n')
    stream.flush()

  already = sum(r.state == 'done' for r in runs)
  say(f'sweep: {len(runs)} runs in {sweep_dir} ({already} already done, '
      f'{len(skipped)} grid points left out), executor {executor}, '
      + (f'one job array, {slurm.array_parallelism} running at a time' if arrays
         else f'{parallel} at a time'))
  for line in plan_lib.plan_notes(points, skipped):
    say(f'  {line}')
  attached = []
  if hasattr(runner, 'attach'):  # the current job of each unfinished run, if still alive
    for run in runs:
      entry = jobs_book.get(run.point.run_id)
      if run.state != 'pending' or not entry or entry.get('executor') != executor:
        continue
      handle = runner.attach(entry['job_ids'][-1], run.run_dir)
      if handle is not None:
        run.handle, run.state, run.started = handle, 'running', time.time()
        attached.append(run)
  if attached:
    say(f'  re-attached to {len(attached)} queued or running job(s): '
        + ', '.join(f'{r.point.run_id} ({r.handle.job_id})' for r in attached))
    for run in attached:
      event('attach', run, job_id=run.handle.job_id)
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
                else _duration(sum(remaining) / width))
    say(f'[sweep {_duration(time.time() - start)}] {counts["done"]}/{len(runs)} done, '
        f'{counts["running"]} running, {counts["failed"]} failed, {counts["pending"]} '
        f'pending; eta {eta_text}')
    runs_lib.write_json_atomic(os.path.join(sweep_dir, 'sweep_status.json'), {
        r.point.run_id: {'state': r.state, 'attempts': r.attempts, 'error': r.error,
                         'seconds': r.seconds} for r in runs})

  def prepare(run: _Run) -> Optional[tuple[list[str], int]]:
    """(command, locked descriptor) of a run ready to start; None while an earlier trainer
    still holds its directory."""
    os.makedirs(run.run_dir, exist_ok=True)
    fd = _try_lock(run.run_dir)
    if fd is None:  # a trainer from a killed sweep still holds this directory
      if run.point.run_id not in waiting_noted:
        say(f'  waiting for an earlier trainer of {run.point.run_id} to exit')
        waiting_noted.add(run.point.run_id)
      return None
    try:
      runs_lib.write_json_atomic(os.path.join(run.run_dir, POINT_FILE), run.point.to_json())
      log_path = os.path.join(run.run_dir, LOG_FILE)
      run.log_offset = os.path.getsize(log_path) if os.path.exists(log_path) else 0
    except BaseException:
      os.close(fd)
      raise
    return plan_lib.command(config, run.point, run.run_dir, multihost=multihost), fd

  def started(run: _Run) -> None:
    run.state, run.started = 'running', time.time()
    run.attempts += 1
    extra = {'job_id': run.handle.job_id} if hasattr(run.handle, 'job_id') else {}
    event('launch', run, **extra)

  def launch(batch: list[_Run]) -> list[_Run]:
    """Starts the runs of `batch` that are free to start; returns those it started."""
    ready = []
    for run in batch:
      prepared = prepare(run)
      if prepared is None:
        continue
      cmd, fd = prepared
      if executor == 'local':
        try:
          run.handle = runner.start(cmd, run.run_dir, fd)
        finally:
          os.close(fd)  # the child keeps the lock through its inherited descriptor
        started(run)
      else:
        os.close(fd)  # the job takes the lock where it runs
        ready.append((run, cmd))
    if ready:
      handles = runner.start_many([(cmd, run.run_dir) for run, cmd in ready])
      for (run, _), handle in zip(ready, handles):
        run.handle = handle
        started(run)
      record_jobs([run for run, _ in ready])
    return [run for run in batch if run.state == 'running']

  def finish(run: _Run, code: int) -> None:
    run.seconds = time.time() - run.started
    if runs_lib.is_complete(run.run_dir):
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
    runs_lib.write_text_atomic(os.path.join(run.run_dir, ERROR_FILE),
                       f'{run.error}\n\n--- last lines of {LOG_FILE} ---\n{tail}\n')
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
      free = max(slots - len(running), 0)
      batch, queue[:] = queue[:free], queue[free:]
      if batch and not stop.requested:
        launched = launch(batch)
        running += launched
        deferred = [r for r in batch if r not in launched]
      else:
        deferred = batch
      queue[:0] = deferred
      report(force=False)
      if not running and not queue:
        break
      time.sleep(poll_every if not deferred else max(poll_every, 1.0))
    running = [r for r in runs if r.state == 'running']
    if stop.requested and getattr(runner, 'detach_on_stop', False):
      say(f'sweep: stop requested; {len(running)} job(s) go on in the queue, their ids in '
          f'{jobs_path}: run the same command again to re-attach (or scancel '
          + ' '.join(r.handle.job_id for r in running) + ')')
      for run in running:
        run.state = 'running'
        event('detach', run, job_id=run.handle.job_id)
    elif stop.requested:
      say('sweep: stop requested; checkpointing the running trainers')
      for run in running:
        runner.terminate(run.handle)
      for run in running:
        runner.wait(run.handle, timeout=120)
        finish(run, runner.poll(run.handle) or 0)
  report(force=True)
  failed = {r.point.run_id: r.error for r in runs if r.state == 'failed'}
  summary = {'done': [r.point.run_id for r in runs if r.state == 'done'], 'failed': failed,
             'pending': [r.point.run_id for r in runs if r.state == 'pending'],
             'running': [r.point.run_id for r in runs if r.state == 'running'],
             'attached': [r.point.run_id for r in attached],
             'skipped': dict(skipped), 'seconds': time.time() - start,
             'interrupted': stop.requested}
  if failed:
    say(f'sweep: {len(failed)} run(s) failed (details in <run_dir>/{ERROR_FILE}):')
    for run_id, error in failed.items():
      say(f'  {run_id}: {error}')
  return summary
