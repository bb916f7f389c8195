"""Synthetic scaling data from a known law: IsoFLOP grids and results tables with training curves.

Used by the recovery tests, the notebook's fixture and to check a fit before trusting it on
real runs. Noise is multiplicative and log-normal: loss * exp(noise * eps), eps ~ N(0, 1).
"""
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from research.scaling import laws

LossFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def isoflop_grid(loss_fn: LossFn, budgets: Sequence[float] = laws.CHINCHILLA_BUDGETS,
                 n_sizes: int = 10, span_decades: float = 1.2,
                 flops_per_param_token: float = 6.0) -> pd.DataFrame:
  """For each budget C, `n_sizes` model sizes log-spaced over `span_decades` centred on the
  loss-minimizing size under C = 6ND, each with D = C / (6N) (Hoffmann et al. 2022, Sec. 3.2).

  Returns columns flop_budget, n_params, tokens, flops.
  """
  rows = []
  for c in budgets:
    n_fine = np.logspace(5, 14, 4001)
    n_star = n_fine[np.argmin(loss_fn(n_fine, c / (flops_per_param_token * n_fine)))]
    n = n_star * np.logspace(-span_decades / 2, span_decades / 2, n_sizes)
    rows.append(pd.DataFrame({'flop_budget': c, 'n_params': n,
                              'tokens': c / (flops_per_param_token * n), 'flops': c}))
  return pd.concat(rows, ignore_index=True)


def add_noise(loss: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
  return np.asarray(loss, float) * np.exp(noise * rng.standard_normal(np.shape(loss)))


def points_table(loss_fn: LossFn, noise: float, seed: int, **grid_kwargs) -> pd.DataFrame:
  """A published-style table (n_params, tokens, loss) on an IsoFLOP grid."""
  g = isoflop_grid(loss_fn, **grid_kwargs)
  loss = add_noise(loss_fn(g.n_params.to_numpy(), g.tokens.to_numpy()), noise,
                   np.random.default_rng(seed))
  return pd.DataFrame({'n_params': g.n_params, 'tokens': g.tokens, 'loss': loss})


def nonembed_params(n_total, vocab_size: int, aspect_ratio: float = 64.0) -> np.ndarray:
  """Non-embedding parameters N_E of a model of n_total parameters with a tied vocab_size x
  d_model embedding, under Kaplan's N_E = 12 n_layer d_model^2 (Kaplan et al. 2020, Sec. 2.1)
  at a fixed aspect ratio d_model / n_layer, so d_model = (aspect_ratio N_E / 12)^(1/3) and
  n_total = N_E + vocab_size d_model (the relation Pearce & Song 2024, Sec. 3, build on).

  The embedding's share falls as models grow, which is what moves the compute-optimal
  exponent between the conventions. Solved by bisection in log N_E (n_total is increasing in
  N_E)."""
  n_total = np.asarray(n_total, float)
  lo, hi = np.zeros_like(n_total), np.log(n_total)
  for _ in range(100):
    mid = (lo + hi) / 2
    ne = np.exp(mid)
    too_big = ne + vocab_size * (aspect_ratio * ne / 12.0) ** (1 / 3) > n_total
    lo, hi = np.where(too_big, lo, mid), np.where(too_big, mid, hi)
  return np.exp(lo)


def results_table(loss_fn: LossFn, noise: float, seed: int, n_evals: int = 8,
                  embed_fraction: float = 0.0, grid: Optional[pd.DataFrame] = None,
                  flops_per_param_token: float = 6.0, vocab_size: Optional[int] = None,
                  aspect_ratio: float = 64.0, **grid_kwargs) -> pd.DataFrame:
  """A results.csv-shaped table (docs/design.md): one row per (run, eval step).

  Each run of the IsoFLOP grid logs `n_evals` evaluations log-spaced up to its final step; an
  intermediate evaluation at D_t tokens is given the loss of L(N, D_t), i.e. the curve is the
  envelope of runs trained to each length (real cosine-schedule curves lie above it, which is
  why Hoffmann et al. match the schedule to the horizon). `embed_fraction` of n_params are
  embeddings, so n_params_nonembed = (1 - embed_fraction) n_params; with `vocab_size` the
  embeddings are instead a tied vocab_size x d_model table (nonembed_params), whose share
  falls with size as in real models.
  """
  rng = np.random.default_rng(seed)
  g = isoflop_grid(loss_fn, flops_per_param_token=flops_per_param_token,
                   **grid_kwargs) if grid is None else grid
  rows = []
  tokens_per_step = 1024
  for i, r in enumerate(g.itertuples()):
    last = max(int(round(r.tokens / tokens_per_step)), n_evals)
    steps = np.unique(np.round(np.logspace(np.log10(last) - 1.5, np.log10(last),
                                           n_evals)).astype(int))
    d = steps * float(tokens_per_step)
    loss = add_noise(loss_fn(np.full(d.shape, r.n_params), d), noise, rng)
    flops = flops_per_param_token * r.n_params * d
    n_e = (nonembed_params(r.n_params, vocab_size, aspect_ratio) if vocab_size
           else (1 - embed_fraction) * r.n_params)
    rows.append(pd.DataFrame({
        'run_id': f'run{i:03d}', 'family': 'decoder', 'objective': 'causal_lm',
        'n_params': np.round(r.n_params).astype(np.int64),
        'n_params_nonembed': np.round(n_e).astype(np.int64),
        'tokens': d, 'flops': flops, 'flops_6N': flops,
        'flops_6N_nonembed': flops_per_param_token * n_e * d, 'flop_budget': r.flop_budget,
        'step': steps, 'train_loss': loss * 1.01, 'eval_loss': loss}))
  return pd.concat(rows, ignore_index=True)
