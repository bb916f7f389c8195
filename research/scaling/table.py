"""Reading a results table into the arrays the fits take, with one clear error per bad input.

Two kinds of table are accepted:
- a sweep's results.csv (docs/design.md): one row per (run, eval step) with at least run_id, family,
  objective, n_params, n_params_nonembed, tokens, flops, step, train_loss, eval_loss;
- a published table with just n_params, tokens, loss (one row per model): only Approach 3 and
  Kaplan's L(N, D) (and the per-point L(N)) can be fitted; C is then taken as 6 N D.
"""
import dataclasses
from typing import Optional, Tuple

import numpy as np
import pandas as pd

SWEEP_COLUMNS = ('run_id', 'n_params', 'tokens', 'step')
POINTS_COLUMNS = ('n_params', 'tokens', 'loss')


class ScalingDataError(ValueError):
  """The results table cannot be read or does not hold what the fits need."""


@dataclasses.dataclass(frozen=True)
class Columns:
  """Which columns of results.csv the fits read."""
  loss: str = 'eval_loss'                    # losses of the fits (train_loss also works)
  flops: str = 'flops'                       # FLOP convention, e.g. flops_6N, flops_chinchilla
  params: str = 'n_params'                   # Chinchilla's N: total parameters (Hoffmann et al.)
  kaplan_params: str = 'n_params_nonembed'   # KM's N: non-embedding parameters (Kaplan et al.)
  kaplan_flops: str = 'flops_6N_nonembed'    # KM's C = 6 N_nonembed D (Kaplan et al. Sec. 2.1)
  corpus_tokens: str = 'corpus_tokens'       # size of the training corpus, if the table has it
  budget: str = 'flop_budget'                # IsoFLOP budget of each run, if the sweep wrote it
  budget_decimals: int = 1                   # else: group runs by round(log10(final FLOPs), this)


@dataclasses.dataclass(frozen=True)
class ScalingTable:
  """curves: every eval row (run_id, n, n_km, d, c, c_km, loss, step, and corpus_tokens where
  the table has it), None for a published table; finals: the last eval of each run (or each
  row of a published table) plus its budget. c is C under the Chinchilla convention (the
  flops column), c_km under Kaplan's (6 N_nonembed D)."""
  kind: str                          # 'sweep' or 'points'
  curves: Optional[pd.DataFrame]
  finals: pd.DataFrame
  columns: Columns
  notes: Tuple[str, ...]


def _read(path: str) -> pd.DataFrame:
  try:
    df = pd.read_csv(path)
  except FileNotFoundError:
    raise ScalingDataError(f'{path}: no such file') from None
  except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
    raise ScalingDataError(f'{path}: not a readable CSV ({str(e).splitlines()[0]})') from None
  if df.empty:
    raise ScalingDataError(f'{path}: no rows')
  return df


def _need(df: pd.DataFrame, cols, path: str, what: str):
  missing = [c for c in cols if c not in df.columns]
  if missing:
    raise ScalingDataError(f'{path}: missing column(s) {", ".join(missing)} for {what} '
                           f'(has: {", ".join(map(str, df.columns))})')


def _positive(df: pd.DataFrame, cols, path: str):
  for c in cols:
    v = pd.to_numeric(df[c], errors='coerce').to_numpy(float)
    bad = ~(np.isfinite(v) & (v > 0))
    if bad.any():
      first = df[c].to_numpy()[bad][0]
      raise ScalingDataError(f'{path}: column {c} has {bad.sum()} non-positive or non-numeric '
                             f'values (first: {first!r}); losses, sizes, tokens and FLOPs must '
                             'be > 0')


def _check_sizes(finals: pd.DataFrame, path: str):
  sizes = np.unique(finals.n)
  if sizes.size < 2:
    raise ScalingDataError(f'{path}: a single model size (N={sizes[0]:.4g}); scaling fits need '
                           'several')


def _kaplan_flops(df: pd.DataFrame, cols: Columns, km_col: str, notes: list) -> np.ndarray:
  """C under Kaplan's convention: the table's column where every row has a positive value,
  else 6 N_nonembed D computed here."""
  if cols.kaplan_flops in df.columns:
    v = pd.to_numeric(df[cols.kaplan_flops], errors='coerce').to_numpy(float)
    if (np.isfinite(v) & (v > 0)).all():
      return v
  notes.append(f'no complete column {cols.kaplan_flops}: Kaplan-convention FLOPs are '
               f'6 x {km_col} x tokens')
  return 6.0 * df[km_col].to_numpy(float) * df.tokens.to_numpy(float)


def load_results(path, columns: Columns = Columns(), family: Optional[str] = None,
                 objective: Optional[str] = None) -> ScalingTable:
  """Read a results.csv or a published (n_params, tokens, loss) table, or take one already
  read (a DataFrame, e.g. from research.scaling.load_results); see the module doc."""
  if isinstance(path, pd.DataFrame):
    df, path = path, 'the results table'
    if df.empty:
      raise ScalingDataError(f'{path}: no rows')
  else:
    df = _read(path)
  cols = columns
  if set(POINTS_COLUMNS) <= set(df.columns) and 'run_id' not in df.columns:
    _positive(df, POINTS_COLUMNS, path)
    n = df.n_params.to_numpy(float)
    finals = pd.DataFrame({'run_id': [f'row{i}' for i in range(len(df))], 'n': n, 'n_km': n,
                           'd': df.tokens.to_numpy(float), 'c': 6.0 * n * df.tokens.to_numpy(float),
                           'c_km': 6.0 * n * df.tokens.to_numpy(float),
                           'loss': df.loss.to_numpy(float), 'budget': np.nan})
    _check_sizes(finals, path)
    notes = ('published table (n_params, tokens, loss): only Approach 3 and Kaplan L(N, D) and '
             'L(N) are fitted; Approaches 1 and 2 and L(D), L(C_min) need training curves and '
             'FLOP budgets, so they are skipped',
             'Kaplan fits use n_params (the table has no non-embedding count)')
    return ScalingTable('points', None, finals, cols, notes)

  _need(df, SWEEP_COLUMNS + (cols.loss, cols.flops, cols.params), path,
        'a results table (or give a published table with columns n_params, tokens, loss)')
  notes = []
  km_col = cols.kaplan_params
  if km_col not in df.columns:
    notes.append(f'no column {km_col}: Kaplan fits use {cols.params}')
    km_col = cols.params
  for name, value in (('family', family), ('objective', objective)):
    if value is not None:
      _need(df, [name], path, f'--{name}')
      df = df[df[name] == value]
      if df.empty:
        raise ScalingDataError(f'{path}: no rows with {name} == {value!r}')
  groups = [c for c in ('family', 'objective') if c in df.columns]
  if groups and len(df.groupby(groups)) > 1:
    found = '; '.join(' '.join(map(str, k)) for k in df.groupby(groups).groups)
    raise ScalingDataError(f'{path}: several families/objectives ({found}); choose one with '
                           '--family and --objective, a fit mixes nothing')
  df = df[pd.to_numeric(df[cols.loss], errors='coerce').notna()]   # only eval steps
  if df.empty:
    raise ScalingDataError(f'{path}: no rows with a value in {cols.loss}')
  _positive(df, (cols.loss, cols.flops, cols.params, km_col, 'tokens'), path)
  curves = pd.DataFrame({'run_id': df.run_id.astype(str).to_numpy(),
                         'n': df[cols.params].to_numpy(float), 'n_km': df[km_col].to_numpy(float),
                         'd': df.tokens.to_numpy(float), 'c': df[cols.flops].to_numpy(float),
                         'c_km': _kaplan_flops(df, cols, km_col, notes),
                         'loss': df[cols.loss].to_numpy(float), 'step': df.step.to_numpy()})
  if cols.corpus_tokens in df.columns:
    curves['corpus_tokens'] = pd.to_numeric(df[cols.corpus_tokens], errors='coerce').to_numpy()
  curves = curves.sort_values(['run_id', 'step'], kind='stable').reset_index(drop=True)
  finals = curves.groupby('run_id', sort=True).tail(1).reset_index(drop=True)
  # IsoFLOP budget: the sweep's column where it has one (token-budget sweeps leave it empty),
  # else the final step's FLOPs rounded in log10, the group's median FLOPs as its value.
  key = np.round(np.log10(finals.c.to_numpy()), cols.budget_decimals)
  derived = finals.groupby(key).c.transform(lambda c: 10 ** np.median(np.log10(c))).to_numpy()
  given = np.full(len(finals), np.nan)
  if cols.budget in df.columns:
    per_run = pd.to_numeric(df[cols.budget], errors='coerce').groupby(
        df.run_id.astype(str)).first()
    given = finals.run_id.map(per_run).to_numpy(float)
  finals['budget'] = np.where(np.isfinite(given), given, derived)
  if not np.isfinite(given).all():
    notes.append(f'{int((~np.isfinite(given)).sum())} runs without {cols.budget}: IsoFLOP budgets '
                 f'from round(log10(final {cols.flops}), {cols.budget_decimals})')
  _check_sizes(finals, path)
  return ScalingTable('sweep', curves, finals, cols, tuple(notes))
