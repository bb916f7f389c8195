"""Plan-time check of an IsoFLOP grid: which budgets cannot show an interior minimum.

Approach 2 (Hoffmann et al. 2022, Sec. 3.2) reads N_opt off the minimum of each budget's
loss-vs-size curve; if every size of a budget lies on one side of that minimum, the budget's
curve is monotone and it is left out of the fit (frontier.budget_exclusions). This predicts
that before any run, from the heuristic D_opt ~= 20 N_opt (Hoffmann et al. 2022, Table 3: e.g. 1.0B
parameters for 20.2B tokens, about 20 tokens per parameter on every row) and C = 6 N D, so
N_opt(C) = sqrt(C / (6 * 20)).
"""
from typing import Dict, List, Mapping, Sequence, Union

import numpy as np

TOKENS_PER_PARAM = 20.0       # Hoffmann et al. (2022), Table 3
FLOPS_PER_PARAM_TOKEN = 6.0   # C = 6 N D (Kaplan et al. 2020, Sec. 2.1; Hoffmann et al. 2022)

Sizes = Union[Sequence[float], Mapping[float, Sequence[float]]]


def predicted_n_opt(budget: float, tokens_per_param: float = TOKENS_PER_PARAM,
                    flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN) -> float:
  """N_opt from C = k N D with D = tokens_per_param N: N_opt = sqrt(C / (k tokens_per_param))."""
  return float(np.sqrt(budget / (flops_per_param_token * tokens_per_param)))


def budgets_without_interior_minimum(
    budgets: Sequence[float], sizes_n: Sizes, tokens_per_param: float = TOKENS_PER_PARAM,
    flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN) -> Dict[float, str]:
  """{budget: reason} for each budget whose predicted N_opt is not strictly between the
  smallest and largest size planned for it (all sizes on one side of the optimum).

  sizes_n: the parameter counts of the grid, one list for every budget or a mapping
  budget -> sizes (a planner that drops sizes too small or too large for a budget)."""
  out = {}
  for c in budgets:
    sizes = np.asarray(sizes_n[c] if isinstance(sizes_n, Mapping) else sizes_n, float)
    n_opt = predicted_n_opt(c, tokens_per_param, flops_per_param_token)
    if sizes.size == 0:
      out[float(c)] = 'no model sizes'
      continue
    lo, hi = sizes.min(), sizes.max()
    if lo < n_opt < hi:
      continue
    side = 'below the smallest' if n_opt <= lo else 'above the largest'
    out[float(c)] = (f'predicted N_opt = {n_opt:.3g} ({tokens_per_param:g} tokens per parameter) '
                     f'is {side} size ({lo:.3g} to {hi:.3g}): no interior minimum expected')
  return out


def warnings(budgets: Sequence[float], sizes_n: Sizes,
             tokens_per_param: float = TOKENS_PER_PARAM) -> List[str]:
  """One line per budget of budgets_without_interior_minimum, for a planner to print."""
  return [f'budget {c:.3g} FLOPs: {why}' for c, why in budgets_without_interior_minimum(
      budgets, sizes_n, tokens_per_param).items()]
