r"""Why Kaplan and Chinchilla disagree, on one family of our own sweeps.

Kaplan et al. (2020) found N_opt ~ C^0.73, Hoffmann et al. (2022) C^0.50. Pearce & Song (2024,
arXiv:2406.12907) trace most of the gap to Kaplan's counting of non-embedding parameters at
small scale; Porian et al. (2024, arXiv:2406.19146, Sec. 3-4) to three more factors, which they
remove one at a time: the last layer's FLOPs left out of C, a warm-up too long for small
models, and one learning rate (and AdamW beta2, batch) for every size. Here the same steps run
on three sweeps of one grid that differ only in the training factors:

  step          runs of          N counted        C counted
  kaplan        `kaplan_setup`   non-embedding    6 N_nonembed D
  head_flops    `kaplan_setup`   non-embedding    6 (N_nonembed + V d) D   (last layer counted)
  total_params  `kaplan_setup`   total            6 N D                    (Chinchilla's)
  warmup        `scaled_warmup`  total            6 N D
  lr_rule       `lr_rule`        total            6 N D

where `kaplan_setup` trains every size with one learning rate and one fixed warm-up,
`scaled_warmup` the same learning rate with a warm-up of a fixed fraction of each run, and
`lr_rule` adds the per-size learning rate (the main job). Each step's a is Approach 2's
(IsoFLOP parabolas; under a C that is not 6 N D, C at each budget's optimum is read off the
budget's runs, frontier.approach2), with a bootstrap interval; each shift is a minus the
previous step's a, paired (same replicates) when both steps use the same runs. All sweeps are
cut to the budgets they share, so every step sees the same budgets.

  python -m research.scaling.factors --kaplan_setup=SWEEP_A --scaled_warmup=SWEEP_B \
      --lr_rule=SWEEP_C --out=DIR
"""
import dataclasses
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from research.scaling import frontier
from research.scaling import stats
from research.scaling import table as table_lib
from research.scaling.stats import ScalingFitError

# (step, sweep it reads, N column, C in terms of the results columns, what changed)
STEPS = (
    ('kaplan', 'kaplan_setup', 'n_params_nonembed', 'nonembed',
     'Kaplan conventions: one LR, fixed warm-up, N non-embedding, C = 6 N_nonembed D'),
    ('head_flops', 'kaplan_setup', 'n_params_nonembed', 'nonembed_head',
     '+ last-layer FLOPs in C: 6 (N_nonembed + V d) D'),
    ('total_params', 'kaplan_setup', 'n_params', 'total',
     '+ total parameters in N and C (Chinchilla conventions)'),
    ('warmup', 'scaled_warmup', 'n_params', 'total',
     '+ warm-up scaled with each run'),
    ('lr_rule', 'lr_rule', 'n_params', 'total',
     '+ per-size learning rate (the main job)'),
)
SWEEPS = ('kaplan_setup', 'scaled_warmup', 'lr_rule')


@dataclasses.dataclass
class StepFit:
  step: str
  sweep: str
  label: str
  fit: Optional[frontier.FrontierFit]
  why: str = ''   # why there is no fit


def _final_rows(results_csv: str) -> pd.DataFrame:
  """One row per finished run: its last eval (the run's final point) with the columns the
  conventions need."""
  df = pd.read_csv(results_csv) if os.path.isfile(results_csv) else None
  if df is None or df.empty:
    raise table_lib.ScalingDataError(f'{results_csv}: no such file or no rows')
  need = ('run_id', 'n_params', 'n_params_nonembed', 'vocab_size', 'd_model', 'tokens',
          'flop_budget', 'eval_loss', 'step')
  missing = [c for c in need if c not in df.columns]
  if missing:
    raise table_lib.ScalingDataError(f'{results_csv}: no column {missing[0]} (a sweep\'s '
                                     'results.csv is needed)')
  df = df.dropna(subset=['eval_loss', 'flop_budget'])
  if 'final' in df.columns:
    final = df[df.final.astype(str).str.lower() == 'true']
    df = final if len(final) else df
  return df.sort_values('step').groupby('run_id').tail(1).reset_index(drop=True)


def finals_for(rows: pd.DataFrame, n_col: str, c_kind: str) -> pd.DataFrame:
  """Approach 2's input (n, d, loss, budget, c) under one counting convention."""
  d = rows.tokens.to_numpy(float)
  head = rows.vocab_size.to_numpy(float) * rows.d_model.to_numpy(float)
  n_c = {'nonembed': rows.n_params_nonembed.to_numpy(float),
         'nonembed_head': rows.n_params_nonembed.to_numpy(float) + head,
         'total': rows.n_params.to_numpy(float)}[c_kind]
  return pd.DataFrame({'n': rows[n_col].to_numpy(float), 'd': d,
                       'loss': rows.eval_loss.to_numpy(float),
                       'budget': rows.flop_budget.to_numpy(float), 'c': 6.0 * n_c * d})


def fit_steps(sweep_csvs: Dict[str, str], n_bootstrap: int = 400,
              seed: int = 0) -> tuple[List[StepFit], List[float]]:
  """Every step whose sweep is given, fitted on the budgets all given sweeps share."""
  rows = {name: _final_rows(path) for name, path in sweep_csvs.items()}
  shared = sorted(set.intersection(*(set(r.flop_budget.astype(float)) for r in rows.values())))
  if not shared:
    raise table_lib.ScalingDataError('the sweeps share no FLOP budget')
  out = []
  for step, sweep, n_col, c_kind, label in STEPS:
    if sweep not in rows:
      continue
    r = rows[sweep][rows[sweep].flop_budget.astype(float).isin(shared)]
    try:
      fit = frontier.approach2(finals_for(r, n_col, c_kind), n_bootstrap, seed=seed)
      out.append(StepFit(step, sweep, label, fit))
    except ScalingFitError as e:
      out.append(StepFit(step, sweep, label, None, str(e)))
  return out, shared


def table(steps: Sequence[StepFit], level: float = 0.95) -> pd.DataFrame:
  """a per step with its interval, and the shift from the previous fitted step."""
  records, prev = [], None
  for s in steps:
    rec = {'step': s.step, 'sweep': s.sweep, 'change': s.label}
    if s.fit is None:
      rec.update(a=np.nan, a_lo=np.nan, a_hi=np.nan, shift=np.nan, shift_lo=np.nan,
                 shift_hi=np.nan, budgets_used=0, note=s.why)
      records.append(rec)
      continue
    e = s.fit.estimates()['a']
    rec.update(a=e.value, a_lo=e.lo, a_hi=e.hi, budgets_used=len(s.fit.points),
               note='; '.join(s.fit.notes))
    if prev is None:
      rec.update(shift=np.nan, shift_lo=np.nan, shift_hi=np.nan)
    else:
      boot = s.fit.boot[:, 0] - prev.fit.boot[:, 0]   # paired if same runs, else independent
      sh = stats.estimate(e.value - prev.fit.a, boot, level)
      rec.update(shift=sh.value, shift_lo=sh.lo, shift_hi=sh.hi)
    records.append(rec)
    prev = s
  return pd.DataFrame(records)


def markdown(df: pd.DataFrame, budgets: Sequence[float]) -> str:
  lines = [f'Budgets shared by the sweeps: {", ".join(f"{c:.3g}" for c in budgets)}. '
           'a: N_opt ~ C^a by Approach 2, 95% bootstrap intervals.', '',
           '| step | change | a | shift from the step above |', '|---|---|---|---|']
  for r in df.itertuples():
    a = 'not fitted: ' + r.note if np.isnan(r.a) else f'{r.a:.3f} [{r.a_lo:.3f}, {r.a_hi:.3f}]'
    sh = '' if np.isnan(r.shift) else f'{r.shift:+.3f} [{r.shift_lo:+.3f}, {r.shift_hi:+.3f}]'
    lines.append(f'| {r.step} | {r.change} | {a} | {sh} |')
  return '\n'.join(lines) + '\n'


def figure(df: pd.DataFrame, path: str) -> str:
  """a per step with its interval, the published 0.73 (Kaplan) and 0.50 (Chinchilla) marked."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  ok = df[np.isfinite(df.a)]
  fig, ax = plt.subplots(figsize=(7, 0.6 * len(df) + 1.6))
  y = np.arange(len(ok))[::-1]
  ax.errorbar(ok.a, y, xerr=[ok.a - ok.a_lo, ok.a_hi - ok.a], fmt='o', color='C0', capsize=4)
  for value, name, color in ((0.73, 'Kaplan et al. 0.73', 'C3'),
                             (0.50, 'Hoffmann et al. 0.50', 'C2')):
    ax.axvline(value, ls='--', color=color, lw=1)
    ax.text(value, y.max() + 0.6, name, color=color, ha='center', fontsize=8)
  ax.set_yticks(y, [f'{s}\n({c})' if len(c) < 40 else s for s, c in zip(ok.step, ok.sweep)],
                fontsize=8)
  ax.set_ylim(-0.7, y.max() + 1.0)
  ax.set_xlabel('a in N_opt ~ C^a (Approach 2, 95% interval)')
  ax.set_title('From Kaplan\'s setup to Chinchilla\'s, one factor at a time', fontsize=10)
  fig.tight_layout()
  tmp = path + '.tmp.png'
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  os.replace(tmp, path)
  return path


PROG = 'python -m research.scaling.factors'


def main(argv, flag_values) -> None:
  """Fits the steps of the sweeps given, writes factors.csv, factors.md and factors.png."""
  from research import cli  # pylint: disable=g-import-not-at-top
  del argv
  fv = flag_values
  cli.require(PROG, out=fv.out)
  given = {name: os.path.join(getattr(fv, name), 'results.csv')
           for name in SWEEPS if getattr(fv, name)}
  if not given:
    cli.usage_error(PROG, 'give at least one of --' + ', --'.join(SWEEPS))
  try:
    steps, budgets = fit_steps(given, fv.bootstrap, fv.seed)
  except ValueError as e:
    cli.fail(PROG, e)
  df = table(steps)
  os.makedirs(fv.out, exist_ok=True)
  from research import runs  # pylint: disable=g-import-not-at-top
  runs.write_bytes_atomic(os.path.join(fv.out, 'factors.csv'), df.to_csv(index=False).encode())
  text = markdown(df, budgets)
  runs.write_bytes_atomic(os.path.join(fv.out, 'factors.md'), text.encode())
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  figure(df, os.path.join(fv.out, 'factors.png'))
  print(text, end='')
  print(f'wrote {fv.out}/factors.csv, factors.md, factors.png')


if __name__ == '__main__':
  from absl import flags as absl_flags  # pylint: disable=g-import-not-at-top
  from research import cli as cli_lib  # pylint: disable=g-import-not-at-top
  for _name, _help in (
      ('kaplan_setup', 'Sweep dir trained with one LR and a fixed warm-up for every size.'),
      ('scaled_warmup', 'Sweep dir: the same LR, warm-up a fraction of each run.'),
      ('lr_rule', 'Sweep dir: scaled warm-up and a per-size LR (the main job).')):
    absl_flags.DEFINE_string(_name, None, _help)
  absl_flags.DEFINE_string('out', None, 'Directory for factors.csv, factors.md, factors.png.')
  absl_flags.DEFINE_integer('bootstrap', 400, 'Bootstrap replicates of every fit.')
  absl_flags.DEFINE_integer('seed', 0, 'Seed of the bootstrap.')
  cli_lib.run(lambda argv: main(argv, absl_flags.FLAGS), PROG)
