"""The probe's two tables, from the caches of scored checkpoints.

emergence.csv: one row per run x checkpoint x task x L x metric, with
  run_id, seed, n_params, n_params_nonembed, step, final, task, L, metric, value, n_items,
  successes, ci_low, ci_high     (Clopper-Pearson for 0/1 metrics, else empty)
sharpness.csv: per (task, L, metric) over the final checkpoints: onset index with a bootstrap
  interval over items and seeds, breakthroughness, linearity, and for exact match the paired
  difference A(exact_match) - A(1 - TED/L) with its interval.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd

from research.data import arithmetic
from research.emergence import metrics as metrics_lib
from research.emergence import sharpness

BINARY_METRICS = ('exact_match', 'argmax_all_correct', 'mc_grade')
EMERGENCE_CSV = 'emergence.csv'
SHARPNESS_CSV = 'sharpness.csv'


def load(path: str) -> pd.DataFrame:
  """emergence.csv (or the probe's output directory holding it) as a DataFrame, `final`
  as booleans."""
  if os.path.isdir(path):
    path = os.path.join(path, EMERGENCE_CSV)
  table = pd.read_csv(path)
  table['final'] = table['final'].astype(bool)
  return table


def rows_of(run, step: int, final: bool, cache: dict) -> list[dict]:
  per_item = metrics_lib.item_metrics(cache)
  base = {'run_id': run.run_id, 'seed': run.info.get('seed'),
          'n_params': run.info.get('n_params'),
          'n_params_nonembed': run.info.get('n_params_nonembed'), 'step': step,
          'final': final}
  rows = []
  for task in np.unique(cache['task']):
    for length in np.unique(cache['length'][cache['task'] == task]):
      select = (cache['task'] == task) & (cache['length'] == length)
      for metric, values in per_item.items():
        v = values[select]
        v = v[np.isfinite(v)]
        if v.size == 0:
          continue
        row = dict(base, task=str(task), L=int(length), metric=metric,
                   value=float(np.mean(v)), n_items=int(v.size), successes=np.nan,
                   ci_low=np.nan, ci_high=np.nan)
        if metric in BINARY_METRICS:
          k = int(v.sum())
          low, high = sharpness.clopper_pearson(k, v.size)
          row.update(successes=k, ci_low=float(low), ci_high=float(high))
        rows.append(row)
      # Du et al. / the identity: exact match against the product of per-position accuracy
      rows.append(dict(base, task=str(task), L=int(length),
                       metric='product_position_accuracy',
                       value=position_accuracy_product(cache, int(length), select),
                       n_items=int(select.sum()), successes=np.nan, ci_low=np.nan,
                       ci_high=np.nan))
  return rows


def per_item_finals(runs: Sequence, caches: dict, task: str, length: int,
                    metric: str) -> tuple[list[float], list[np.ndarray]]:
  """(sorted sizes, one [seeds, items] array per size) of final-checkpoint item scores."""
  by_size: dict = {}
  for run in runs:
    if run.run_id not in caches or not caches[run.run_id]:
      continue
    cache = caches[run.run_id][max(caches[run.run_id])]
    select = (cache['task'] == task) & (cache['length'] == length)
    per_item = metrics_lib.item_metrics(cache)
    if metric not in per_item:  # e.g. mc_* when scored without multiple choice
      continue
    values = per_item[metric][select]
    by_size.setdefault(run.info['n_params'], []).append(values)
  sizes = sorted(by_size)
  return sizes, [np.stack(by_size[s]) for s in sizes]


def sharpness_table(runs, caches, num_samples: int = 1000, seed: int = 0) -> pd.DataFrame:
  rows = []
  metrics_to_score = ('exact_match', 'one_minus_ted_over_L', 'answer_logp',
                      'per_token_accuracy', 'brier', 'mc_grade', 'mc_brier')
  groups = [('add', L) for L in arithmetic.LENGTHS] + [('mul', arithmetic.MUL_LENGTH)]
  for task, length in groups:
    for metric in metrics_to_score:
      if task == 'mul' and metric.startswith('mc_'):
        continue
      sizes, arrays = per_item_finals(runs, caches, task, length, metric)
      if len(sizes) < 3:
        continue
      y = sharpness.curve(arrays)
      row = {'task': task, 'L': length, 'metric': metric, 'n_sizes': len(sizes),
             **sharpness.summarize(y)}
      boot = sharpness.bootstrap(arrays, num_samples=num_samples, seed=seed)
      row.update(onset_low=boot['low'], onset_high=boot['high'])
      if metric == 'exact_match':
        _, other = per_item_finals(runs, caches, task, length, 'one_minus_ted_over_L')
        diff = sharpness.bootstrap(arrays, num_samples=num_samples, seed=seed,
                                   paired_with=other)
        row.update(diff_vs_ted=diff['estimate'], diff_low=diff['low'],
                   diff_high=diff['high'])
      rows.append(row)
  return pd.DataFrame(rows)


def position_accuracy_product(cache: dict, length: int, select=None) -> float:
  """Product over answer positions (digits and terminator) of teacher-forced argmax
  accuracy over the `select`ed items (all by default): the exact match the per-position
  accuracies predict (Du et al.)."""
  acc = metrics_lib.teacher_forced_scores(
      cache['logp_target'], cache['sum_p2'], cache['argmax'], cache['target'],
      cache['target_mask'])['correct']
  if select is not None:
    acc = acc[select]
  return float(np.prod(acc[:, :length + 1].mean(0)))
