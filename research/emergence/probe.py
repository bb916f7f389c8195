"""Scores every run of a sweep: checkpoints -> caches -> emergence.csv and sharpness.csv.

The steps, each in its own module: the usable runs and their scored checkpoints
(`scoring`), the two tables (`tables`), the figures (`plots`), the resolution study
(`resolution`, when asked for) and the checks of the probe's own output (`checks`). Every
file is written atomically; skipped.json lists the runs left out and why.
"""
from __future__ import annotations

import os

import pandas as pd

from research import runs as runs_lib
from research.data import arithmetic
from research.emergence import checks as checks_lib
from research.emergence import resolution as resolution_lib
from research.emergence import scoring
from research.emergence import tables


def probe(sweep_dir: str, out_dir: str, *, n_per_length: int = 200, with_mc: bool = True,
          bootstrap_samples: int = 1000, figures: bool = True, large_n_per_length: int = 0,
          max_large_n_per_length: int = 0, log=print) -> dict:
  """The whole probe; returns {'runs', 'skipped', 'csv', 'sharpness_csv', 'figures',
  'checks'}."""
  runs, skipped = scoring.find_runs(sweep_dir)
  for run_id, why in skipped:
    log(f'probe: skipped {run_id}: {why}')
  if not runs:
    raise ValueError(f'no usable runs in {sweep_dir} ({len(skipped)} skipped)')
  os.makedirs(out_dir, exist_ok=True)
  items = arithmetic.eval_items(n_per_length)
  caches, rows = {}, []
  for run in runs:
    log(f'probe: scoring {run.run_id} ({len(run.steps)} checkpoints)')
    caches[run.run_id] = scoring.score_run(run, items, out_dir, with_mc=with_mc, log=log)
    if not caches[run.run_id]:
      skipped.append((run.run_id, 'no readable checkpoint'))
      log(f'probe: skipped {run.run_id}: no readable checkpoint')
      continue
    final = max(caches[run.run_id], default=None)
    for step, cache in sorted(caches[run.run_id].items()):
      rows.extend(tables.rows_of(run, step, step == final, cache))
  table = pd.DataFrame(rows)
  csv_path = os.path.join(out_dir, tables.EMERGENCE_CSV)
  runs_lib.write_text_atomic(csv_path, table.to_csv(index=False))
  sharp = tables.sharpness_table(runs, caches, num_samples=bootstrap_samples)
  sharp_path = os.path.join(out_dir, tables.SHARPNESS_CSV)
  runs_lib.write_text_atomic(sharp_path, sharp.to_csv(index=False))
  written = []
  if figures:
    from research.emergence import plots  # pylint: disable=g-import-not-at-top
    written = plots.all_figures(table, out_dir)
  runs_lib.write_json_atomic(os.path.join(out_dir, 'skipped.json'),
                             [{'run_id': r, 'why': w} for r, w in skipped])
  checks = checks_lib.check(table, sharp)
  if large_n_per_length:
    resolved = resolution_lib.resolution(
        runs, caches, out_dir, small=n_per_length, large=large_n_per_length,
        max_large=max_large_n_per_length, log=log)
    runs_lib.write_text_atomic(os.path.join(out_dir, resolution_lib.RESOLUTION_CSV),
                               resolved.to_csv(index=False))
    if figures and len(resolved):
      from research.emergence import plots  # pylint: disable=g-import-not-at-top
      written.append(plots.save_figure(plots.resolution_figure(resolved),
                                       os.path.join(out_dir, 'resolution.png')))
    checks['resolution'] = resolution_lib.summary(
        resolved, small=n_per_length, large=large_n_per_length,
        max_large=max_large_n_per_length)
  for line in checks_lib.describe(checks):
    log(f'probe: {line}')
  runs_lib.write_json_atomic(os.path.join(out_dir, checks_lib.CHECKS_JSON), checks)
  return {'runs': [r.run_id for r in runs], 'skipped': skipped, 'csv': csv_path,
          'sharpness_csv': sharp_path, 'figures': written, 'checks': checks}
