"""The plan-time check names the budgets whose 20-tokens-per-parameter optimum is off the grid."""
import math

import pytest

from research.scaling import planning


def test_predicted_n_opt_is_20_tokens_per_parameter_under_6nd():
  n = planning.predicted_n_opt(1.2e21)
  assert n == pytest.approx(math.sqrt(1.2e21 / 120))          # 1e9.5 parameters
  assert 6 * n * (20 * n) == pytest.approx(1.2e21)


def test_budgets_off_the_grid_are_named_with_their_side():
  sizes = [1e7, 3e7, 1e8, 3e8]      # optima inside: 1.2e17 (N_opt 3.2e7) and 1.2e18 (1e8)
  budgets = [1.2e15, 1.2e17, 1.2e18, 1.2e21]
  out = planning.budgets_without_interior_minimum(budgets, sizes)
  assert sorted(out) == [1.2e15, 1.2e21]
  assert 'below the smallest' in out[1.2e15] and 'above the largest' in out[1.2e21]
  assert '3.16e+06' in out[1.2e15] and '3.16e+09' in out[1.2e21]   # the predicted N_opt


def test_optimum_on_a_grid_size_is_not_interior():
  # N_opt = 1e8 exactly at the largest size: every other size is smaller, the curve falls only.
  assert list(planning.budgets_without_interior_minimum([1.2e18], [1e7, 3e7, 1e8])) == [1.2e18]


def test_per_budget_sizes_and_tokens_per_param():
  sizes = {1.2e18: [3e7, 3e8], 1.2e20: [3e7, 6e8]}      # N_opt 1e8 and 1e9
  assert list(planning.budgets_without_interior_minimum(list(sizes), sizes)) == [1.2e20]
  # At 80 tokens per parameter N_opt halves: 5e8 at 1.2e20 is then inside.
  assert planning.budgets_without_interior_minimum([1.2e20], sizes, tokens_per_param=80) == {}


def test_warnings_name_each_budget():
  lines = planning.warnings([1e15, 1e18], [1e7, 1e8, 1e9])
  assert len(lines) == 1 and lines[0].startswith('budget 1e+15 FLOPs: predicted N_opt')
