"""Runs left out of the fits because they repeat their data too often, each named with why.

Muennighoff et al. (2023), "Scaling Data-Constrained Language Models", Sec. 4 / Fig. 3: up to
~4 epochs of repeated data, loss is close to that of unique data; beyond it the value of a
repeated token decays quickly. A run past that limit is not on the unique-data law that every
fit here assumes, so its points are dropped and the run is listed, never averaged in.
"""
import dataclasses
from typing import Dict, Optional, Tuple

import numpy as np
import pandas as pd

from research.scaling.table import ScalingTable

MAX_EPOCHS = 4.0  # Muennighoff et al. (2023): repeated data is nearly as good as new up to ~4


def repeated_data(table: ScalingTable, corpus_tokens: Optional[float] = None,
                  max_epochs: float = MAX_EPOCHS) -> Tuple[ScalingTable, Dict[str, str]]:
  """The table without the points that saw more than max_epochs x the corpus, and
  {run_id: reason} for every run affected.

  The corpus size is `corpus_tokens`, else the table's corpus_tokens column (per row); with
  neither, nothing is dropped. A run whose final point is past the limit leaves the final
  points (Approaches 2 and 3, Kaplan's L(N, D)); its earlier points under the limit stay in
  the training curves (Approach 1 and the envelopes), which saw at most max_epochs epochs."""
  def corpus(df):
    if corpus_tokens is not None:
      return np.full(len(df), float(corpus_tokens))
    if 'corpus_tokens' in df.columns:
      return pd.to_numeric(df['corpus_tokens'], errors='coerce').to_numpy(float)
    return np.full(len(df), np.nan)

  f = table.finals
  epochs_f = f.d.to_numpy(float) / corpus(f)
  over_f = np.isfinite(epochs_f) & (epochs_f > max_epochs)
  if not over_f.any():   # a run's final point is its most tokens: nothing earlier is over
    return table, {}
  reasons = {}
  curves = table.curves
  dropped_rows = {}
  if curves is not None:
    epochs_c = curves.d.to_numpy(float) / corpus(curves)
    over_c = np.isfinite(epochs_c) & (epochs_c > max_epochs)
    dropped_rows = curves[over_c].groupby('run_id').size().to_dict()
    curves = curves[~over_c].reset_index(drop=True)
  for run_id, d, e, over in zip(f.run_id, f.d, epochs_f, over_f):
    if over:
      n_rows = dropped_rows.get(run_id)
      reasons[str(run_id)] = (
          f'repeats its data: {d:.3g} tokens = {e:.2f} epochs of a {d / e:.3g}-token corpus, '
          f'past {max_epochs:g} (Muennighoff et al. 2023)'
          + (f'; {n_rows} eval points past the limit dropped from its training curve'
             if n_rows else ''))
  notes = table.notes + (f'{len(reasons)} runs left out for repeating data past '
                         f'{max_epochs:g} epochs',)
  return dataclasses.replace(table, curves=curves, finals=f[~over_f].reset_index(drop=True),
                             notes=notes), reasons


def check_description(table: ScalingTable, corpus_tokens: Optional[float] = None,
                      max_epochs: float = MAX_EPOCHS) -> str:
  """What repeated_data checked, for fits.json and the summary: an unchecked table is said to
  be unchecked, not passed as clean."""
  if corpus_tokens is not None:
    return f'checked: corpus of {float(corpus_tokens):.3g} tokens, limit {max_epochs:g} epochs'
  col = table.finals.get('corpus_tokens')
  if col is not None and np.isfinite(pd.to_numeric(col, errors='coerce')).all():
    return f'checked: the table\'s corpus_tokens column, limit {max_epochs:g} epochs'
  return ('not checked: no corpus size (give corpus_tokens, or a corpus_tokens column in '
          'the results table)')
