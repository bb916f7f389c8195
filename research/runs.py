"""The run directory (docs/design.md), written and read in one place.

A run directory holds `run_info.json` (architecture, parameter and FLOP counts, seed),
`config.gin` (the operative config), `metrics.jsonl` (one JSON line per logged step),
`checkpoints/<step>/` (orbax: the `state` item holds the params), `final_eval_losses.npz`
(per-sequence losses of the final evaluation, research/heldout.py) and, last of all, the
completion marker. The trainer writes it; the sweep, the scaling fits, the emergence probe,
decoding and the notebooks read it. Nothing here imports research.train, so every reader
can use it without the trainer's dependencies.
"""
import contextlib
import functools
import json
import math
import os
import sys
import tempfile
import time
from typing import Any, Callable, Optional

COMPLETION_MARKER = 'COMPLETED'
RUN_INFO = 'run_info.json'
CONFIG_GIN = 'config.gin'
METRICS = 'metrics.jsonl'
CHECKPOINTS = 'checkpoints'
FINAL_EVAL_LOSSES = 'final_eval_losses.npz'
# Checkpoint items that may hold the params, in the order they are tried: the trainer's
# `state`, or a checkpoint saved as one default item holding a pytree with `params`.
PARAM_ITEMS = ('state', 'default')


class RunDirError(ValueError):
  """A run directory, or a part of one, that cannot be read; the message is one line."""


class CheckpointError(RuntimeError):
  """A checkpoint on disk that cannot be read back (truncated, overwritten, wrong format)."""


# ------------------------------------------------------------------------------------------
# Writing: whole files go to a temporary file in the same directory and are renamed over the
# old one, so a reader (or a crash) never sees half a file.

def _write_atomic(path: str, data, mode: str) -> None:
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-' + os.path.basename(path))
  try:
    with os.fdopen(fd, mode) as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide run files from collaborators
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text_atomic(path: str, text: str) -> None:
  _write_atomic(path, text, 'w')


def write_bytes_atomic(path: str, data: bytes) -> None:
  _write_atomic(path, data, 'wb')


def write_json_atomic(path: str, obj: Any, *, sort_keys: bool = True,
                      default: Callable[[Any], Any] = str) -> None:
  write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=sort_keys, default=default)
                    + '\n')


def append_jsonl(path: str, row: dict) -> None:
  """Appends one complete line: a rename per logged step would cost quadratic time."""
  with open(path, 'a') as f:
    f.write(json.dumps(row) + '\n')


def is_complete(run_dir: str) -> bool:
  return os.path.exists(os.path.join(run_dir, COMPLETION_MARKER))


def mark_complete(run_dir: str, summary: dict) -> None:
  """The completion marker, holding the summary of the final step; written last."""
  write_json_atomic(os.path.join(run_dir, COMPLETION_MARKER), summary)


# ------------------------------------------------------------------------------------------
# Reading.

def find_runs(sweep_dir: str) -> list[str]:
  """The run directories of a sweep, sorted: every subdirectory with a run_info.json or a
  checkpoints/ folder (the trainer makes the folder before it writes run_info.json)."""
  if not os.path.isdir(sweep_dir):
    raise RunDirError(f'--sweep_dir {sweep_dir!r} is not a directory')
  found = []
  for name in sorted(os.listdir(sweep_dir)):
    path = os.path.join(sweep_dir, name)
    if os.path.isdir(path) and (os.path.exists(os.path.join(path, RUN_INFO))
                                or os.path.isdir(os.path.join(path, CHECKPOINTS))):
      found.append(path)
  return found


def read_run_info(run_dir: str) -> dict:
  try:
    with open(os.path.join(run_dir, RUN_INFO)) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise RunDirError(f'{RUN_INFO} unreadable: {e}') from e


def read_metrics(run_dir: str) -> list[dict]:
  """metrics.jsonl as a list of rows, checked: complete JSON lines, increasing steps."""
  path = os.path.join(run_dir, METRICS)
  if not os.path.exists(path):
    raise RunDirError(f'no {METRICS}')
  rows = []
  with open(path) as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      if not line.endswith('\n'):
        raise RunDirError(f'{METRICS} line {number} is torn')
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        raise RunDirError(f'{METRICS} line {number} is not JSON') from None
  steps = [r.get('step') for r in rows]
  if any(not isinstance(s, int) for s in steps):
    raise RunDirError(f'{METRICS} has a row without an integer step')
  if any(b <= a for a, b in zip(steps, steps[1:])):
    raise RunDirError(f'{METRICS} steps are not increasing')
  return rows


def _number(value):
  """The trainer writes a non-finite float as its repr ('nan', 'inf'): JSON has none."""
  if isinstance(value, str):
    try:
      x = float(value)
    except ValueError:
      return value
    return x if not math.isfinite(x) else value
  return value


def load_metrics(run_dir: str):
  """metrics.jsonl as a pandas DataFrame, one row per logged step (NaN where a step did not
  log a column, e.g. eval_loss between evals)."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  rows = [{k: _number(v) for k, v in row.items()} for row in read_metrics(run_dir)]
  return pd.DataFrame(rows)


def checkpoint_steps(run_dir: str) -> list[int]:
  """Steps of the finished checkpoints, ascending (orbax renames a step's temporary
  directory to the bare number only when it is complete)."""
  directory = os.path.join(run_dir, CHECKPOINTS)
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


# ------------------------------------------------------------------------------------------
# Checkpointed params, shape-checked against the model.

def unreadable(directory: str, step: int, error: Exception) -> CheckpointError:
  """The one-line error for checkpoint `step` under `directory`, with the cause cut short
  (orbax and TensorStore put whole specs in their messages)."""
  cause = (str(error).strip().splitlines() or [''])[0]
  cause = f'{type(error).__name__}: {cause[:160]}{"..." if len(cause) > 160 else ""}'
  return CheckpointError(
      f'checkpoint {step} in {directory} cannot be read ({cause}); nothing was changed: move '
      f'{os.path.join(directory, str(step))} aside to resume from the one before it')


@contextlib.contextmanager
def late_tracebacks_dropped_on_error(settle_s: float = 0.5):
  """Holds back what is written to file descriptor 2 inside the block: written out after
  a success, dropped after a failure. A restore that fails inside TensorStore leaves its
  callbacks to print dozens of 'Event loop is closed' tracebacks from other threads while
  the error propagates; the caller reports the failure in one line instead."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), 2)
    try:
      yield
    except BaseException:
      time.sleep(settle_s)  # let the failed restore's callbacks finish printing
      raise
    else:
      sys.stderr.flush()
      held.seek(0)
      os.write(saved, held.read())
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)


def model_config(run_dir: str):
  """The TransformerConfig that run_info.json records."""
  from research import models  # pylint: disable=g-import-not-at-top
  info = read_run_info(run_dir)
  if 'architecture' not in info:
    raise RunDirError(f'{RUN_INFO} has no architecture')
  return models.TransformerConfig(**info['architecture'])


def restore_params(run_dir: str, step: Optional[int] = None):
  """(params, step) of the latest (or the given) checkpoint, as orbax restores them without
  a target (plain arrays); a failed restore is one CheckpointError, without TensorStore's
  tracebacks."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  directory = os.path.abspath(os.path.join(run_dir, CHECKPOINTS))
  if not os.path.isdir(directory):
    raise RunDirError(f'no checkpoint directory at {directory}')
  steps = checkpoint_steps(run_dir)
  chosen = steps[-1] if step is None and steps else step
  if chosen is None or chosen not in steps:
    raise RunDirError(f'no checkpoint{"" if step is None else f" at step {step}"} in '
                      f'{directory} (steps: {steps})')
  step_dir = os.path.join(directory, str(chosen))
  items = [i for i in PARAM_ITEMS if os.path.isdir(os.path.join(step_dir, i))]
  if not items:
    raise RunDirError(f'checkpoint {step_dir} has none of the items {PARAM_ITEMS}')
  try:
    with late_tracebacks_dropped_on_error():
      restored = ocp.StandardCheckpointer().restore(os.path.join(step_dir, items[0]))
  except Exception as e:  # orbax, TensorStore and json raise many types; all mean this
    raise unreadable(directory, chosen, e) from e
  params = restored.get('params') if isinstance(restored, dict) else getattr(
      restored, 'params', None)
  if params is None:
    raise RunDirError(f'checkpoint {step_dir}/{items[0]} holds no `params` entry')
  return params, chosen


@functools.lru_cache(maxsize=16)
def abstract_params(config):
  """ShapeDtypeStructs of the params `config`'s model initializes (nothing allocated)."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from research import models  # pylint: disable=g-import-not-at-top
  module = models.build(config)
  names = {'decoder': ['decoder_input_tokens'], 'encoder': ['encoder_input_tokens'],
           'encoder_decoder': ['encoder_input_tokens', 'decoder_input_tokens']}
  dummy = {n: jnp.ones((1, 1), jnp.int32) for n in names[config.family]}
  init = functools.partial(module.init, **dummy)
  return nn.meta.unbox(jax.eval_shape(init, jax.random.PRNGKey(0))['params'])


def check_params(config, params) -> None:
  """Raises RunDirError naming the first parameter whose shape differs from what `config`'s
  model initializes (or that one side lacks)."""
  import jax  # pylint: disable=g-import-not-at-top
  expected = jax.tree_util.tree_flatten_with_path(abstract_params(config))[0]
  got = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
  for path, leaf in expected:
    name = jax.tree_util.keystr(path)
    if name not in got:
      raise RunDirError(f'checkpoint has no parameter {name} that the model config needs')
    if tuple(got[name].shape) != tuple(leaf.shape):
      raise RunDirError(f'checkpoint parameter {name} has shape {tuple(got[name].shape)} '
                        f'but the model config gives {tuple(leaf.shape)}')
  if len(got) != len(expected):
    extra = sorted(set(got) - {jax.tree_util.keystr(p) for p, _ in expected})
    raise RunDirError(f'checkpoint has parameters the model config does not: {extra[:3]}')


def load_params(run_dir: str, step: Optional[int] = None, config=None):
  """(params, step) of the latest (or the given) checkpoint, every leaf's shape checked
  against `config` (default: the run's run_info.json)."""
  params, step = restore_params(run_dir, step)
  check_params(model_config(run_dir) if config is None else config, params)
  return params, step
