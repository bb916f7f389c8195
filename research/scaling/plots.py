"""The papers' figures from a results table and its fits.

Built on matplotlib.figure.Figure (no pyplot state), so they render under the Agg backend of
research/scaling/main.py and inline in a notebook alike. Each returns the Figure; save_all
writes the PNGs.
- kaplan_fig1: Kaplan et al. (2020) Fig. 1: loss vs compute, dataset size and parameters.
- chinchilla_fig2: Hoffmann et al. (2022) Fig. 2: training curves, their envelope, N_opt(C),
  D_opt(C) from Approach 1.
- chinchilla_fig3: Fig. 3: IsoFLOP curves with their parabolas, N_opt(C), D_opt(C) (Approach 2).
- chinchilla_fig4: Fig. 4: IsoLoss contours of the parametric fit and its efficient frontier.
- conventions_fig: N_opt(C) counted as Kaplan et al. and as Hoffmann et al. from the same runs
  (Pearce & Song 2024), with each fitted line and its 95% band.
The N_opt(C), D_opt(C) panels draw the bootstrap 95% band of each fitted line and, for the
budgets in `project_to`, the line extended to them with the projected optimum marked (as Fig. 3
of Hoffmann et al. projects to Gopher's budget).
Baselines (`read_baselines`: the n-gram table of research/baselines/ngram.py, passed as data)
are dashed horizontal lines on every axis whose y is the loss: Fig. 1, Fig. 2's training
curves and Fig. 3's IsoFLOP profiles.
"""
import json
import os
import textwrap
from typing import List, Sequence, Tuple

import numpy as np
import pandas as pd
from matplotlib import cm
from matplotlib import colors
from matplotlib.figure import Figure

from research.scaling import conventions
from research.scaling import frontier
from research.scaling import laws
from research.scaling.report import Fits
from research.scaling.table import ScalingTable

# (label, loss): one dashed horizontal line, in the units of the table's loss column.
Baseline = Tuple[str, float]
_BASELINE_STYLES = ((0, (5, 2)), (0, (2, 2)), (0, (6, 2, 1, 2)), (0, (1, 1)))


def read_baselines(path: str, count: int = 3) -> List[Baseline]:
  """The `count` best orders of an n-gram table (`python -m research.baselines.ngram
  --out=PATH`) as [('n-gram, n=k', nats per byte), ...], best first.

  Its loss is nats per token of the byte tokenizer on the same held-out split, the unit of a
  byte-level sweep's eval_loss (docs/ngram.md); a sweep with another tokenizer would need
  them converted first. Raises ValueError naming the file if it is missing or not such a
  table."""
  if count < 1:
    raise ValueError(f'baseline count must be >= 1, got {count}')
  try:
    with open(path) as f:
      orders = json.load(f)['orders']
    rows = sorted((float(r['nats_per_byte']), int(r['order'])) for r in orders)
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ValueError(f'baseline table {path!r} unreadable: {e}') from None
  if not rows:
    raise ValueError(f'baseline table {path!r} has no orders')
  return [(f'n-gram, n={n}', loss) for loss, n in rows[:count]]


def _baselines(ax, baselines: Sequence[Baseline]):
  """Dashed horizontal lines, labelled in the axis' legend."""
  for i, (label, loss) in enumerate(baselines):
    ax.axhline(loss, color='0.35', lw=1, ls=_BASELINE_STYLES[i % len(_BASELINE_STYLES)],
               label=f'{label}: {loss:.3f}')
  if baselines:
    ax.legend(fontsize=7)


def _size_colors(n):
  norm = colors.LogNorm(vmin=np.min(n), vmax=max(np.max(n), np.min(n) * 1.0001))
  return norm, cm.ScalarMappable(norm=norm, cmap='viridis')


def _note(ax, text):
  ax.text(0.5, 0.5, text, ha='center', va='center', transform=ax.transAxes, fontsize=8, wrap=True)


def _loglog(ax, xlabel, ylabel='Loss'):
  ax.set_xscale('log')
  ax.set_yscale('log')
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)


def _curves(ax, table, x='c', n_col='n'):
  _, sm = _size_colors(table.finals[n_col])
  for _, g in table.curves.groupby('run_id'):
    ax.plot(g[x], g.loss, color=sm.to_rgba(g[n_col].iloc[0]), lw=0.8, alpha=0.7)
  return sm


def kaplan_fig1(table: ScalingTable, fits: Fits, baselines: Sequence[Baseline] = ()) -> Figure:
  fig = Figure(figsize=(13, 4), layout='constrained')
  ax_c, ax_d, ax_n = fig.subplots(1, 3, sharey=True)
  for ax, fit, x, label in ((ax_c, fits.kaplan_c, 'c', 'Compute (FLOPs)'),
                            (ax_d, fits.kaplan_d, 'd', 'Dataset size (tokens)')):
    _loglog(ax, label)
    if table.curves is None or fit is None:
      ax.scatter(table.finals[x], table.finals.loss, s=8, c='tab:blue')
      _note(ax, fits.skipped.get('kaplan_' + x, ''))
      continue
    sm = _curves(ax, table, x, 'n_km')
    xs = np.geomspace(fit.points.x.min(), fit.points.x.max(), 50)
    name = 'C' if x == 'c' else 'D'
    ax.plot(xs, fit.loss(xs), '--', color='tab:orange', lw=2,
            label=f'L = ({name}/{fit.x_c:.2g})^-{fit.alpha:.3f}')
    ax.legend(fontsize=8)
  fig.colorbar(sm if table.curves is not None else _size_colors(table.finals.n_km)[1], ax=ax_d,
               label='Parameters (non-embedding)' if table.kind == 'sweep' else 'Parameters')
  _loglog(ax_n, 'Parameters (non-embedding)' if table.kind == 'sweep' else 'Parameters')
  if fits.kaplan_n is not None:
    p = fits.kaplan_n.points
    ax_n.scatter(p.x, p.loss, s=14, c='tab:blue')
    xs = np.geomspace(p.x.min(), p.x.max(), 50)
    ax_n.plot(xs, fits.kaplan_n.loss(xs), '--', color='tab:orange', lw=2,
              label=f'L = (N/{fits.kaplan_n.x_c:.2g})^-{fits.kaplan_n.alpha:.3f}')
    ax_n.legend(fontsize=8)
  for ax in (ax_c, ax_d, ax_n):
    _baselines(ax, baselines)
  fig.suptitle('Kaplan et al. (2020), Fig. 1')
  return fig


def _band(ax, c, log_k, exponent, color, label=None):
  """The 95% percentile band of exp(log_k + exponent log c) over bootstrap replicates."""
  ok = np.isfinite(log_k) & np.isfinite(exponent)
  if ok.sum() < 2:
    return
  y = np.exp(log_k[ok, None] + exponent[ok, None] * np.log(c)[None])
  lo, hi = np.percentile(y, [2.5, 97.5], axis=0)
  ax.fill_between(c, lo, hi, color=color, alpha=0.2, lw=0, label=label)


def _opt_panels(ax_n, ax_d, fr: frontier.FrontierFit, project_to: Sequence[float] = ()):
  c_hi = max([fr.points.c.max(), *project_to])
  c = np.geomspace(fr.points.c.min(), fr.points.c.max(), 50)
  c_ext = np.geomspace(fr.points.c.max(), c_hi, 20)
  for ax, col, k, e, j, lab in ((ax_n, 'n_opt', fr.log_k_n, fr.a, 0, 'N_opt'),
                                (ax_d, 'd_opt', fr.log_k_d, fr.b, 1, 'D_opt')):
    est = fr.estimates()['a' if j == 0 else 'b']
    ax.scatter(fr.points.c, fr.points[col], s=8, c='k', alpha=0.6)
    ax.plot(c, np.exp(k) * c ** e, color='tab:blue',
            label=f'{lab} ~ C^{e:.3f} [{est.lo:.3f}, {est.hi:.3f}]')
    _band(ax, np.geomspace(fr.points.c.min(), c_hi, 60), fr.boot[:, 2 + j], fr.boot[:, j],
          'tab:blue', '95% interval')
    if c_hi > fr.points.c.max():
      ax.plot(c_ext, np.exp(k) * c_ext ** e, '--', color='tab:blue', lw=1)
      for budget in project_to:
        v = fr.optimal(budget)[lab]
        ax.errorbar([budget], [v.value], yerr=[[v.value - v.lo], [v.hi - v.value]], fmt='*',
                    color='tab:red', ms=9, capsize=3)
        ax.annotate(f'{v.value:.3g}', (budget, v.value), textcoords='offset points',
                    xytext=(-30, 6), fontsize=7, color='tab:red')
    _loglog(ax, 'FLOPs', 'Parameters' if col == 'n_opt' else 'Tokens')
    ax.legend(fontsize=7)


def chinchilla_fig2(table: ScalingTable, fits: Fits, project_to: Sequence[float] = (),
                    baselines: Sequence[Baseline] = ()) -> Figure:
  fig = Figure(figsize=(13, 4), layout='constrained')
  ax, ax_n, ax_d = fig.subplots(1, 3)
  _loglog(ax, 'FLOPs')
  if table.curves is None or fits.approach1 is None:
    _note(ax, 'Approach 1 skipped: ' + fits.skipped.get('approach1', ''))
  else:
    sm = _curves(ax, table)
    ax.scatter(fits.approach1.points.c, fits.approach1.points.loss, s=4, c='tab:red',
               label='envelope (lowest loss per FLOPs)')
    ax.legend(fontsize=8)
    fig.colorbar(sm, ax=ax, label='Parameters')
    _opt_panels(ax_n, ax_d, fits.approach1, project_to)
  _baselines(ax, baselines)
  fig.suptitle('Hoffmann et al. (2022), Fig. 2: training curve envelope (Approach 1)')
  return fig


def chinchilla_fig3(table: ScalingTable, fits: Fits, project_to: Sequence[float] = (),
                    baselines: Sequence[Baseline] = ()) -> Figure:
  fig = Figure(figsize=(13, 4), layout='constrained')
  ax, ax_n, ax_d = fig.subplots(1, 3)
  ax.set_xscale('log')
  ax.set_xlabel('Parameters')
  ax.set_ylabel('Final loss')
  if fits.approach2 is None:
    # The IsoFLOP profiles are the diagnosis of why the fit could not run: draw them.
    budgets = (table.finals.budget if 'budget' in table.finals else pd.Series(dtype=float))
    budgets = budgets[np.isfinite(budgets.astype(float)) & (budgets > 0)]
    if len(budgets):
      sm = cm.ScalarMappable(norm=colors.LogNorm(vmin=budgets.min(),
                                                 vmax=budgets.max() * 1.0001), cmap='plasma')
      for budget, g in table.finals.loc[budgets.index].groupby('budget', sort=True):
        g = g.sort_values('n')
        ax.plot(g.n, g.loss, 'o-', ms=3, lw=1, color=sm.to_rgba(budget))
      fig.colorbar(sm, ax=ax, label='FLOP budget')
    _note(ax_n, textwrap.fill('Approach 2 skipped: ' + fits.skipped.get('approach2', ''), 45))
    ax_d.set_axis_off()
    ax_n.set_axis_off()
    _baselines(ax, baselines)
    fig.suptitle('Hoffmann et al. (2022), Fig. 3: IsoFLOP profiles (Approach 2 not fitted)')
    return fig
  prof = frontier.isoflop_parabolas(table.finals.reset_index(drop=True))
  left_out = fits.approach2.excluded
  norm = colors.LogNorm(vmin=prof.budget.min(), vmax=prof.budget.max() * 1.0001)
  sm = cm.ScalarMappable(norm=norm, cmap='plasma')
  for (budget, g), row in zip(table.finals.groupby('budget', sort=True), prof.itertuples()):
    out = float(budget) in left_out
    col = 'lightgray' if out else sm.to_rgba(budget)
    ax.scatter(g.n, g.loss, s=10, color=col, marker='o' if not out else 's')
    if np.isfinite(row.c2):
      x = np.linspace(np.log(g.n.min()), np.log(g.n.max()), 50)
      ax.plot(np.exp(x), row.c0 + row.c1 * x + row.c2 * x * x, color=col, lw=1,
              ls=':' if out else '-')
    if np.isfinite(row.n_opt) and not out:
      ax.scatter([row.n_opt], [row.loss], marker='x', color='k', s=25, zorder=3)
      # Projection of the minimum onto the size axis, as the dashed drops of Fig. 3 (left).
      ax.axvline(row.n_opt, color=col, lw=0.6, ls='--', alpha=0.6)
  if left_out:
    ax.scatter([], [], s=10, color='lightgray', marker='s',
               label=f'left out ({len(left_out)}): no interior minimum')
    ax.legend(fontsize=7)
  fig.colorbar(sm, ax=ax, label='FLOP budget')
  _opt_panels(ax_n, ax_d, fits.approach2, project_to)
  _baselines(ax, baselines)
  fig.suptitle('Hoffmann et al. (2022), Fig. 3: IsoFLOP profiles (Approach 2)')
  return fig


def chinchilla_fig4(table: ScalingTable, fits: Fits, flops_per_param_token: float = 6.0) -> Figure:
  fig = Figure(figsize=(6, 4.5), layout='constrained')
  ax = fig.subplots()
  if fits.approach3 is None:
    _note(ax, 'Approach 3 skipped: ' + fits.skipped.get('approach3', ''))
    return fig
  law = fits.approach3.law
  c_lo, c_hi = table.finals.c.min() / 10, table.finals.c.max() * 100
  n_lo, n_hi = table.finals.n.min() / 10, table.finals.n.max() * 10
  cc, nn = np.meshgrid(np.geomspace(c_lo, c_hi, 200), np.geomspace(n_lo, n_hi, 200))
  loss = law.loss(nn, cc / (flops_per_param_token * nn))
  levels = np.quantile(loss, np.linspace(0.02, 0.9, 14))
  cs = ax.contour(cc, nn, loss, levels=levels, cmap='viridis', linewidths=0.8)
  ax.clabel(cs, fontsize=6, fmt='%.2f')
  c = np.geomspace(c_lo, c_hi, 100)
  ax.plot(c, law.optimal(c, flops_per_param_token)[0], color='tab:blue', lw=2,
          label=f'efficient frontier (Approach 3), N_opt ~ C^{law.a:.3f}')
  for fr, style in ((fits.approach1, ':'), (fits.approach2, '--')):
    if fr is not None:
      ax.plot(c, np.exp(fr.log_k_n) * c ** fr.a, style, color='gray', lw=1,
              label=f'{fr.approach}: N_opt ~ C^{fr.a:.3f}')
  ax.scatter(table.finals.c, table.finals.n, s=6, c='k', alpha=0.5, label='runs')
  ax.set_xscale('log')
  ax.set_yscale('log')
  ax.set_xlim(c_lo, c_hi)
  ax.set_ylim(n_lo, n_hi)
  ax.set_xlabel('FLOPs')
  ax.set_ylabel('Parameters')
  ax.legend(fontsize=7, loc='upper left')
  ax.set_title('Hoffmann et al. (2022), Fig. 4: IsoLoss contours')
  return fig


def _conv_line(ax, fit, c, color, style, label):
  if isinstance(fit, frontier.FrontierFit):
    n = np.exp(fit.log_k_n) * c ** fit.a
    _band(ax, c, fit.boot[:, 2], fit.boot[:, 0], color)
  else:
    n = fit.law.optimal(c)[0]
    boot = np.array([laws.ChinchillaLaw(*b).optimal(c)[0] for b in fit.boot
                     if np.all(np.isfinite(b))])
    if len(boot) > 1:
      lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
      ax.fill_between(c, lo, hi, color=color, alpha=0.12, lw=0)
  ax.plot(c, n, style, color=color, lw=1.5,
          label=f'{label}: a = {conventions.a_value(fit):.3f}')


def conventions_fig(table: ScalingTable, fits: Fits) -> Figure:
  """N_opt against C under both conventions: Approach 1's envelope points (dots) and line
  (solid), Approach 3's line (dashed), each with its 95% band."""
  del table
  fig = Figure(figsize=(6.5, 4.5), layout='constrained')
  ax = fig.subplots()
  _loglog(ax, 'C (FLOPs, counted by each convention)', 'N_opt (parameters, by each convention)')
  cf = fits.conventions
  drawn = []
  for conv, color in (('chinchilla', 'tab:blue'), ('kaplan', 'tab:red')):
    got = {} if cf is None else getattr(cf, conv)
    a1, a3 = got.get('approach1'), got.get('approach3')
    if a1 is not None:
      ax.scatter(a1.points.c, a1.points.n_opt, s=5, color=color, alpha=0.4)
      c = np.geomspace(a1.points.c.min(), a1.points.c.max(), 60)
    elif a3 is not None and fits.table is not None:
      col = 'c' if conv == 'chinchilla' else 'c_km'
      c = np.geomspace(fits.table.finals[col].min(), fits.table.finals[col].max(), 60)
    else:
      continue
    for f, style, name in ((a1, '-', 'Approach 1'), (a3, '--', 'Approach 3')):
      if f is not None:
        _conv_line(ax, f, c, color, style, f'{conv}, {name}')
        drawn.append(name)
  if drawn:
    ax.legend(fontsize=7)
  else:
    _note(ax, 'not fitted: ' + ('; '.join(cf.skipped.values()) if cf is not None
                                else 'conventions refit not requested'))
  ax.set_title('N_opt ~ C^a counted as Kaplan et al. (red) and Hoffmann et al. (blue)\n'
               '(Pearce & Song 2024 expect the Kaplan a to be larger)', fontsize=9)
  return fig


FIGURES = {
    'kaplan_fig1.png': kaplan_fig1,
    'chinchilla_fig2.png': chinchilla_fig2,
    'chinchilla_fig3.png': chinchilla_fig3,
    'chinchilla_fig4.png': chinchilla_fig4,
    'conventions.png': conventions_fig,
}
PROJECTED = ('chinchilla_fig2.png', 'chinchilla_fig3.png')   # take project_to
WITH_BASELINES = ('kaplan_fig1.png', 'chinchilla_fig2.png', 'chinchilla_fig3.png')


def save_all(table: ScalingTable, fits: Fits, out_dir: str,
             project_to: Sequence[float] = (),
             baselines: Sequence[Baseline] = ()) -> List[str]:
  """Write every figure as PNG into out_dir; returns the paths written. The figures describe
  the table the fits saw (fits.table: without runs left out for repeated data) where set, the
  N_opt, D_opt panels are extended to the budgets of project_to, and the loss axes carry the
  baselines as dashed lines."""
  if fits.table is not None:
    table = fits.table
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for name, make in FIGURES.items():
    path = os.path.join(out_dir, name)
    kwargs = {'baselines': tuple(baselines)} if name in WITH_BASELINES else {}
    if name in PROJECTED:
      kwargs['project_to'] = tuple(project_to)
    fig = make(table, fits, **kwargs)
    fig.savefig(path, dpi=120)
    paths.append(path)
  return paths
