"""The runs of a sweep the probe can score, and their checkpoints scored into caches.

A run is usable when it has a readable run_info.json describing an arithmetic decoder, the
completion marker and at least one checkpoint after step 0; anything else is reported run by
run and skipped, never averaged in. Every checkpoint present (final and intermediate) is
scored into `<out>/cache/<run_id>/step_<step>.npz` (reused if present: the metrics are
recomputed from it).
"""
from __future__ import annotations

import dataclasses
import os

from research import runs
from research.data import arithmetic
from research.emergence import cache as cache_lib


@dataclasses.dataclass
class Run:
  run_id: str
  path: str
  info: dict
  steps: list


def find_runs(sweep_dir: str) -> tuple[list[Run], list[tuple[str, str]]]:
  """(usable runs, [(run_id, why skipped)]) among the sweep's run directories."""
  usable, skipped = [], []
  for path in runs.find_runs(sweep_dir):
    name = os.path.basename(path)
    try:
      info = runs.read_run_info(path)
      arch = info['architecture']
    except (runs.RunDirError, KeyError) as e:
      cause = e.__cause__ or e
      skipped.append((name, f'corrupt run_info.json ({type(cause).__name__}: {cause})'))
      continue
    if arch.get('family') != 'decoder' or arch.get('vocab_size') != arithmetic.VOCAB_SIZE:
      skipped.append((name, f"not an arithmetic decoder (family={arch.get('family')}, "
                            f"vocab_size={arch.get('vocab_size')})"))
      continue
    if not runs.is_complete(path):
      skipped.append((name, 'unfinished (no completion marker)'))
      continue
    steps = [s for s in runs.checkpoint_steps(path) if s > 0]
    if not steps:
      skipped.append((name, 'no checkpoints after step 0'))
      continue
    usable.append(Run(name, path, info, steps))
  return usable, skipped


def model_config(run: Run):
  from research import models  # pylint: disable=g-import-not-at-top
  return models.TransformerConfig(**run.info['architecture'])


def load_params(run: Run, step: int):
  """Parameters of one checkpoint (plain arrays), every shape checked against the run's
  architecture."""
  params, _ = runs.load_params(run.path, step, config=model_config(run))
  return params


def score_run(run: Run, items, out_dir: str, *, with_mc: bool = True,
              log=print) -> dict[int, dict]:
  """{step: cache} for every checkpoint of `run`; caches are written once and reused."""
  caches = {}
  for step in run.steps:
    path = os.path.join(out_dir, 'cache', run.run_id, f'step_{step}.npz')
    if os.path.exists(path):
      caches[step] = cache_lib.load(path)
      continue
    try:
      params = load_params(run, step)
    except Exception as e:  # pylint: disable=broad-except  # orbax raises many types
      log(f'probe: {run.run_id}: checkpoint {step} unreadable ({type(e).__name__}); skipped')
      continue
    caches[step] = cache_lib.score_model(model_config(run), params, items, with_mc=with_mc)
    cache_lib.save(path, caches[step])
  return caches
