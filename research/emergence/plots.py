"""Figures from emergence.csv (the notebook calls the same functions).

  fig3_<metric>.png   Schaeffer et al. (2023) Fig. 3 style: metric vs parameters (log x,
                      linear y), one line per answer length L, mean over seeds.
  fig3_contrast.png   the same ladder under exact match, 1 - TED/L and the answer's
                      log-likelihood side by side (Fig. 3's point in one picture).
  fig4_exact_match_log.png   Fig. 4 style: exact match on a log y axis, with Clopper-Pearson
                      intervals pooled over seeds (zero hits: an open triangle at the upper
                      bound), and chance 10^-L dotted.
  du_vs_loss.png      Du et al. (2024): exact match and 1 - TED/L against answer-token loss,
                      one point per run x checkpoint x L.
"""
from __future__ import annotations

import os

import matplotlib
matplotlib.use('Agg')
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from research.emergence import sharpness  # noqa: E402

FIG3_METRICS = ('exact_match', 'one_minus_ted_over_L', 'answer_logp', 'brier', 'mc_grade')


def _log_x(ax):
  """Log x axis with labels on the decades only (minor labels overlap on short ranges)."""
  ax.set_xscale('log')
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _finals(table: pd.DataFrame, task: str = 'add') -> pd.DataFrame:
  return table[(table['final']) & (table['task'] == task)]


def fig3(table: pd.DataFrame, metric: str, ax=None):
  ax = ax or plt.figure(figsize=(5, 3.6)).gca()
  data = _finals(table)
  data = data[data['metric'] == metric]
  colors = plt.cm.viridis(np.linspace(0, 1, 8))
  for length, group in data.groupby('L'):
    curve = group.groupby('n_params')['value'].mean()
    ax.plot(curve.index, curve.values, 'o-', color=colors[(int(length) - 1) % 8],
            label=f'L={length}', ms=3)
  _log_x(ax)
  ax.set_xlabel('parameters')
  ax.set_ylabel(metric)
  ax.legend(fontsize=6, ncol=2)
  return ax


def fig3_contrast(table: pd.DataFrame, axes=None):
  """Schaeffer et al. (2023) Fig. 3's contrast: the same ladder under exact match,
  1 - TED/L and the answer's log-likelihood side by side, one line per answer length L
  (mean over seeds of the final checkpoints). A discontinuous metric can show a jump
  where the continuous ones rise steadily."""
  metrics = (('exact_match', 'exact match'),
             ('one_minus_ted_over_L', '1 - TED/L (token edit distance)'),
             ('answer_logp', 'answer log-likelihood per digit (nats)'))
  if axes is None:
    _, axes = plt.subplots(1, len(metrics), figsize=(13, 3.6))
  for ax, (metric, label) in zip(axes, metrics):
    fig3(table, metric, ax=ax)
    ax.set_ylabel(label)
    ax.set_title(label, fontsize=9)
  return axes


def fig4(table: pd.DataFrame, ax=None):
  ax = ax or plt.figure(figsize=(5, 3.6)).gca()
  data = _finals(table)
  data = data[data['metric'] == 'exact_match']
  colors = plt.cm.viridis(np.linspace(0, 1, 8))
  for length, group in data.groupby('L'):
    pooled = group.groupby('n_params')[['successes', 'n_items']].sum()
    k, n = pooled['successes'].values, pooled['n_items'].values
    low, high = sharpness.clopper_pearson(k, n)
    color = colors[(int(length) - 1) % 8]
    hit = k > 0
    rate = k / n
    ax.errorbar(pooled.index[hit], rate[hit], yerr=[rate[hit] - low[hit], high[hit] - rate[hit]],
                fmt='o-', ms=3, color=color, label=f'L={length}' if hit.any() else None,
                capsize=2)
    # Zero hits: only an upper bound, drawn as an open downward triangle.
    ax.scatter(pooled.index[~hit], high[~hit], marker='v', facecolors='none',
               edgecolors=color, s=18, label=None if hit.any() else f'L={length} (0 hits)')
    ax.axhline(10.0 ** -int(length), color=color, ls=':', lw=0.7)  # chance: 10^-L
  _log_x(ax)
  ax.set_yscale('log')
  ax.set_xlabel('parameters')
  ax.set_ylabel('exact match (95% Clopper-Pearson)\n dotted: chance 10^-L')
  ax.legend(fontsize=6, ncol=2)
  return ax


def du_vs_loss(table: pd.DataFrame, axes=None):
  if axes is None:
    _, axes = plt.subplots(1, 2, figsize=(9, 3.6))
  data = table[table['task'] == 'add']
  loss = data[data['metric'] == 'answer_token_loss'].set_index(['run_id', 'step', 'L'])['value']
  colors = plt.cm.viridis(np.linspace(0, 1, 8))
  for ax, metric in zip(axes, ('exact_match', 'one_minus_ted_over_L')):
    y = data[data['metric'] == metric].set_index(['run_id', 'step', 'L'])['value']
    joined = pd.concat([loss.rename('loss'), y.rename('y')], axis=1).dropna().reset_index()
    for length, group in joined.groupby('L'):
      ax.scatter(group['loss'], group['y'], s=8, color=colors[(int(length) - 1) % 8],
                 label=f'L={length}')
    ax.invert_xaxis()
    ax.set_xlabel('answer-token loss (nats)')
    ax.set_ylabel(metric)
  axes[0].legend(fontsize=6, ncol=2)
  return axes


def resolution_figure(resolved: pd.DataFrame, ax=None):
  """Every cell with 0 hits in the small eval, after the large one: its Clopper-Pearson
  interval (a downward triangle at the upper bound where it still has 0 hits), the rate
  its per-position accuracies predict (x), and chance 10^-L (dashes), by answer length."""
  ax = ax or plt.figure(figsize=(5.5, 3.6)).gca()
  for length, group in resolved.groupby('L'):
    offsets = np.linspace(-0.3, 0.3, len(group)) if len(group) > 1 else np.zeros(1)
    for dx, row in zip(offsets, group.itertuples()):
      x = int(length) + dx
      color = 'tab:green' if row.above_chance else 'tab:red'
      if row.large_hits:
        rate = row.large_hits / row.large_n
        ax.errorbar([x], [rate], yerr=[[rate - row.ci_low], [row.ci_high - rate]], fmt='o',
                    ms=3, color=color, capsize=2)
      else:
        ax.scatter([x], [row.ci_high], marker='v', facecolors='none', edgecolors=color, s=18)
      if np.isfinite(row.predicted) and row.predicted > 0:
        ax.scatter([x], [row.predicted], marker='x', color='0.4', s=10, lw=0.8)
    ax.hlines(10.0 ** -int(length), int(length) - 0.45, int(length) + 0.45, color='k',
              ls='--', lw=0.8)
  ax.set_yscale('log')
  ax.set_xlabel('answer length L')
  ax.set_ylabel('exact match of 0/200 cells on the large eval\n'
                'green: above chance (dashes), x: predicted')
  return ax


def save_figure(ax, path: str) -> str:
  ax.figure.tight_layout()
  ax.figure.savefig(path, dpi=120)
  plt.close(ax.figure)
  return path


def all_figures(table: pd.DataFrame, out_dir: str) -> list[str]:
  written = []

  def save(ax, name):
    written.append(save_figure(ax, os.path.join(out_dir, name)))

  for metric in FIG3_METRICS:
    if (table['metric'] == metric).any():
      save(fig3(table, metric), f'fig3_{metric}.png')
  if {'exact_match', 'one_minus_ted_over_L', 'answer_logp'} <= set(table['metric']):
    save(fig3_contrast(table)[0], 'fig3_contrast.png')
  save(fig4(table), 'fig4_exact_match_log.png')
  save(du_vs_loss(table)[0], 'du_vs_loss.png')
  return written
