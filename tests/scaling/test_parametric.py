"""Approach 3 recovers Chinchilla's published law from synthetic IsoFLOP data."""
import numpy as np
import pytest
import scipy.optimize

from research.scaling import laws
from research.scaling import parametric
from research.scaling import synthetic
from research.scaling.stats import ScalingFitError

TRUE = laws.CHINCHILLA


def _fit(noise, seed, n_bootstrap):
  t = synthetic.points_table(TRUE.loss, noise, seed)   # 9 budgets x 10 sizes, as Fig. 3
  return parametric.fit(t.n_params, t.tokens, t.loss,
                        parametric.ParametricConfig(n_bootstrap=n_bootstrap))


@pytest.fixture(scope='module')
def low_noise():
  return _fit(0.003, seed=0, n_bootstrap=0)


def test_recovers_published_values_at_0p3_percent_noise(low_noise):
  law = low_noise.law
  assert abs(law.alpha - TRUE.alpha) < 0.02, law
  assert abs(law.beta - TRUE.beta) < 0.02, law
  assert abs(law.E - TRUE.E) < 0.05, law


def test_grid_of_starts_reaches_one_optimum(low_noise):
  # Starts that reach the lowest objective agree to far below the statistical error, and a
  # good share of the screened grid gets there (the rest stop in worse, distinct basins).
  assert low_noise.fraction_at_best > 0.2
  assert low_noise.init_spread['alpha'] < 1e-4 and low_noise.init_spread['beta'] < 1e-4
  assert low_noise.init_spread['E'] < 1e-3


def test_true_values_inside_95_percent_intervals_at_1_percent_noise():
  fit = _fit(0.01, seed=0, n_bootstrap=200)
  est = fit.estimates()
  for name in ('E', 'A', 'B', 'alpha', 'beta'):
    assert est[name].covers(getattr(TRUE, name)), (name, est[name])
  assert est['a'].covers(TRUE.a) and est['b'].covers(TRUE.b), est
  # The intervals are informative, not just wide.
  assert est['alpha'].hi - est['alpha'].lo < 0.2
  pred = fit.predict(1e9, 2e10)
  assert pred.covers(float(TRUE.loss(1e9, 2e10))), pred
  opt = fit.optimal(1e22)
  n_true, d_true = TRUE.optimal(1e22)
  assert opt['N_opt'].covers(n_true) and opt['D_opt'].covers(d_true), opt
  assert opt['tokens_per_param'].covers(d_true / n_true)


def test_closed_form_optimum_matches_numeric_minimum():
  # Eq. 4 against a plain 1-D minimization of L(N, C / 6N) over log N.
  for c in (1e20, 5.76e23):
    res = scipy.optimize.minimize_scalar(lambda x: TRUE.loss(np.exp(x), c / (6 * np.exp(x))),
                                         bounds=(10, 40), method='bounded',
                                         options={'xatol': 1e-10})
    n_opt, d_opt = TRUE.optimal(c)
    np.testing.assert_allclose(np.exp(res.x), n_opt, rtol=1e-4)
    np.testing.assert_allclose(d_opt * n_opt * 6, c, rtol=1e-12)
  assert TRUE.a + TRUE.b == pytest.approx(1.0)


def test_objective_gradient_matches_finite_differences():
  t = synthetic.points_table(TRUE.loss, 0.01, 3)
  logs = [np.log(t[c].to_numpy()) for c in ('n_params', 'tokens', 'loss')]
  w = np.random.default_rng(0).integers(0, 3, len(t)).astype(float)
  fun = parametric.make_objective(*logs, w, delta=1e-3)
  theta = np.array([6.0, 6.2, 0.5, 0.33, 0.29])
  num = scipy.optimize.approx_fprime(theta, lambda x: fun(x)[0], 1e-7)
  np.testing.assert_allclose(fun(theta)[1], num, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('n, d, loss, message', [
    ([1e8, 2e8, 4e8, 8e8], [1e9, 2e9, 4e9, 8e9], [3.0, 2.9, 2.8, 2.7], '4 points for 5 parameters'),
    ([1e8] * 8, np.geomspace(1e9, 1e11, 8), np.linspace(3, 2.5, 8), '1 distinct model sizes'),
    (np.geomspace(1e8, 1e9, 8), np.geomspace(1e9, 1e11, 8), [3, 2.9, 0, 2.7, 2.6, 2.5, 2.4, 2.3],
     'non-positive or non-finite loss'),
    (np.geomspace(1e8, 1e9, 8), np.geomspace(1e9, 1e11, 8), [3, 2.9, -1, 2.7, 2.6, 2.5, 2.4, 2.3],
     'non-positive or non-finite loss'),
])
def test_degenerate_inputs_fail_clearly(n, d, loss, message):
  with pytest.raises(ScalingFitError, match=message):
    parametric.fit(n, d, loss, parametric.ParametricConfig(n_bootstrap=0))
