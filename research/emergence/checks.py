"""What the probe checks of its own output (written as checks.json, logged as `probe:` lines).

onset: the onset index of exact match is below that of 1 - TED/L, with the bootstrap
  interval of the difference below 0, at every long enough length (the exact-match curve
  is flat-then-rising where the per-token one is not: Schaeffer et al.);
product: exact match follows the product of the per-position teacher-forced accuracies
  (Du et al.): their Spearman correlation over the cells with enough hits;
resolution (when the resolution study ran): how many zero cells are above chance.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from research.data import arithmetic

CHECKS_JSON = 'checks.json'


def check(table: pd.DataFrame, sharp: pd.DataFrame, *, min_lengths: int = 4,
          min_hits: int = 10) -> dict:
  """The probe's two checks on its own output, each with the numbers behind it.

  onset: for every addition length L >= `min_lengths`, whether the onset index of exact
    match is below that of 1 - TED/L with the bootstrap interval of the difference below 0.
  product: Spearman correlation, over the (run, checkpoint, L) addition cells with at least
    `min_hits` exact-match hits, between exact match and the product of per-position
    teacher-forced accuracies; holds at >= 0.95.
  """
  def pick(length, metric):
    if not len(sharp):
      return sharp
    return sharp[(sharp['task'] == 'add') & (sharp['L'] == length) & (sharp['metric'] == metric)]

  onset = []
  for length in [L for L in arithmetic.LENGTHS if L >= min_lengths]:
    row = pick(length, 'exact_match')
    if not len(row):  # sharpness_table scores a curve of 3 sizes or more
      onset.append({'L': length, 'holds': False,
                    'why': 'fewer than 3 model sizes, no curve to take an onset index of'})
      continue
    if not np.isfinite(row['diff_vs_ted'].iloc[0]):
      flat = []
      for m in ('exact_match', 'one_minus_ted_over_L'):
        index = pick(length, m)['onset_index']
        if not len(index) or not np.isfinite(index.iloc[0]):
          flat.append(m)
      why = (f"{' and '.join(flat)} {'is' if len(flat) == 1 else 'are'} the same at the "
             'smallest and the largest size: onset index undefined'
             ) if flat else 'onset difference undefined'
      onset.append({'L': length, 'holds': False, 'why': why})
      continue
    r = row.iloc[0]
    ted = pick(length, 'one_minus_ted_over_L')['onset_index']
    onset.append({'L': length, 'onset_exact_match': float(r['onset_index']),
                  'onset_one_minus_ted': float(ted.iloc[0]) if len(ted) else float('nan'),
                  'difference': float(r['diff_vs_ted']), 'low': float(r['diff_low']),
                  'high': float(r['diff_high']),
                  'holds': bool(r['diff_vs_ted'] < 0 and r['diff_high'] < 0)})
  keys = ['run_id', 'step', 'task', 'L']
  add = table[table['task'] == 'add']
  em = add[add['metric'] == 'exact_match'].set_index(keys)
  prod = add[add['metric'] == 'product_position_accuracy'].set_index(keys)['value']
  cells = em[em['successes'] >= min_hits].join(prod.rename('product'), how='inner')
  rho = (float(stats.spearmanr(cells['value'], cells['product']).statistic)
         if len(cells) >= 3 else float('nan'))
  return {'onset': onset,
          'product': {'spearman': rho, 'cells': int(len(cells)), 'min_hits': min_hits,
                      'holds': bool(rho >= 0.95)}}


def describe(result: dict) -> list[str]:
  lines = []
  for o in result['onset']:
    if 'difference' in o:
      lines.append(f"onset L={o['L']}: A(exact match) {o['onset_exact_match']:.3f} vs "
                   f"A(1-TED/L) {o['onset_one_minus_ted']:.3f}, difference "
                   f"{o['difference']:+.3f} [{o['low']:+.3f}, {o['high']:+.3f}]: "
                   f"{'holds' if o['holds'] else 'does not hold'}")
    else:
      lines.append(f"onset L={o['L']}: does not hold ({o['why']})")
  p = result['product']
  lines.append(f"exact match vs product of per-position accuracies: Spearman {p['spearman']:.3f}"
               f" over {p['cells']} cells with >= {p['min_hits']} hits: "
               f"{'holds' if p['holds'] else 'does not hold'}")
  if 'resolution' in result:
    r = result['resolution']
    lines.append(f"resolution: {r['above_chance']} of {r['zero_cells']} cells with 0/"
                 f"{r['small_n']} exact matches are above chance on up to {r['max_large_n']} "
                 f"items; {r['out_of_reach']} would need more than that")
  return lines
