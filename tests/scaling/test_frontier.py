"""Approaches 1 and 2 recover the exponents of a known compute-optimal frontier."""
import numpy as np
import pandas as pd
import pytest

from research.scaling import frontier
from research.scaling import laws
from research.scaling import synthetic
from research.scaling.stats import ScalingFitError

TRUE = laws.CHINCHILLA   # known optimum: a = 0.4516, b = 0.5484 (Hoffmann Eq. 4)


def _tables(noise, seed):
  t = synthetic.results_table(TRUE.loss, noise, seed)   # 9 budgets x 10 sizes x 8 evals
  curves = t.rename(columns={'n_params': 'n', 'tokens': 'd', 'flops': 'c', 'eval_loss': 'loss'})
  finals = curves.groupby('run_id').tail(1).rename(columns={'flop_budget': 'budget'})
  return curves, finals


@pytest.mark.parametrize('seed', [0, 1])
def test_approach1_recovers_exponents(seed):
  curves, _ = _tables(0.003, seed)
  fit = frontier.approach1(curves, n_bootstrap=200, seed=seed)
  assert abs(fit.a - TRUE.a) < 0.03 and abs(fit.b - TRUE.b) < 0.03, (fit.a, fit.b)
  est = fit.estimates()
  assert est['a'].covers(TRUE.a) and est['b'].covers(TRUE.b), est


@pytest.mark.parametrize('seed', [0, 1])
def test_approach2_recovers_exponents(seed):
  _, finals = _tables(0.003, seed)
  fit = frontier.approach2(finals, n_bootstrap=200, seed=seed)
  assert abs(fit.a - TRUE.a) < 0.03 and abs(fit.b - TRUE.b) < 0.03, (fit.a, fit.b)
  assert len(fit.points) == 9 and not fit.notes
  est = fit.estimates()
  assert est['a'].covers(TRUE.a) and est['b'].covers(TRUE.b), est
  opt = fit.optimal(1e21)
  n_true, _ = TRUE.optimal(1e21)
  assert opt['N_opt'].lo < n_true < opt['N_opt'].hi


def test_parabola_minimum_of_an_exact_parabola():
  x = np.linspace(18, 22, 7)
  finals = pd.DataFrame({'budget': 1e20, 'n': np.exp(x), 'd': 1e20 / (6 * np.exp(x)),
                         'loss': 2.5 + 0.1 * (x - 20.3) ** 2})
  prof = frontier.isoflop_parabolas(finals)
  assert np.log(prof.n_opt[0]) == pytest.approx(20.3, abs=1e-9)
  assert prof.loss[0] == pytest.approx(2.5, abs=1e-9)


def test_too_few_budgets_fail_clearly():
  _, finals = _tables(0.003, 0)
  two = finals[finals.budget.isin([1e19, 1e20])]
  with pytest.raises(ScalingFitError, match='2 usable compute budgets; needs at least 3'):
    frontier.approach2(two, n_bootstrap=10)
