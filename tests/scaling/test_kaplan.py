"""The KM laws recover Kaplan et al.'s published values from synthetic data.

Tolerances are about 3x the errors measured on these very data (seeded, so deterministic),
and well below the gaps between the published values they must tell apart: alpha_N = 0.076
against alpha_D = 0.095 (gap 0.019) and alpha_C = 0.050 (gap 0.026) (Kaplan et al. 2020,
Sec. 1.2). Intervals must contain the truth and be narrow: a bound on their width.
"""
import numpy as np
import pytest

from research.scaling import kaplan
from research.scaling import laws
from research.scaling import synthetic
from research.scaling.stats import ScalingFitError

TRUE = laws.KAPLAN


def _fit_nd(noise, seed, n_bootstrap):
  t = synthetic.points_table(TRUE.loss, noise, seed)   # 9 budgets x 10 sizes IsoFLOP grid
  return kaplan.fit_nd(t.n_params, t.tokens, t.loss, kaplan.KaplanNDConfig(n_bootstrap=n_bootstrap))


def test_l_nd_recovers_published_values_at_0p3_percent_noise():
  fit = _fit_nd(0.003, 0, 0)
  # Measured: alpha_N off by 3.4e-4, alpha_D by 1.4e-3 (at most 1.4e-3 over noise seeds
  # 0-3); log10 N_c off by 0.027, log10 D_c by 0.074.
  assert abs(fit.law.alpha_N - TRUE.alpha_N) < 0.004, fit.law
  assert abs(fit.law.alpha_D - TRUE.alpha_D) < 0.004, fit.law
  assert abs(np.log10(fit.law.N_c / TRUE.N_c)) < 0.1, fit.law
  assert abs(np.log10(fit.law.D_c / TRUE.D_c)) < 0.2, fit.law
  assert fit.fraction_at_best > 0.5 and fit.init_spread['alpha_N'] < 1e-5, fit.init_spread


def test_l_nd_true_values_inside_narrow_95_percent_intervals_at_1_percent_noise():
  est = _fit_nd(0.01, 0, 200).estimates()
  for name in ('alpha_N', 'N_c', 'alpha_D', 'D_c'):
    assert est[name].covers(getattr(TRUE, name)), (name, est[name])
  # Measured widths: alpha_N 0.0063, alpha_D 0.0139 (at most 0.0097 and 0.0186 over noise
  # seeds 0-5); N_c spans a factor 2.7, D_c 4.9 (at most 7.0).
  for name in ('alpha_N', 'alpha_D'):
    assert est[name].hi - est[name].lo < 0.25 * getattr(TRUE, name), (name, est[name])
  for name in ('N_c', 'D_c'):
    assert est[name].hi / est[name].lo < 10.0, (name, est[name])
  # Each exponent's interval excludes the other exponent.
  assert not est['alpha_N'].covers(TRUE.alpha_D) and not est['alpha_D'].covers(TRUE.alpha_N)


@pytest.mark.parametrize('noise, n_bootstrap', [(0.003, 0), (0.01, 1000)])
def test_one_variable_laws(noise, n_bootstrap):
  rng = np.random.default_rng(1)
  n = np.geomspace(1e6, 1e9, 12)
  c = np.geomspace(1e15, 1e20, 12)
  fn = kaplan.fit_power_law(n, synthetic.add_noise(TRUE.loss_n(n), noise, rng), 'N', n_bootstrap)
  fc = kaplan.fit_power_law(c, synthetic.add_noise(TRUE.loss_c(c), noise, rng), 'C', n_bootstrap)
  # Measured: alpha_N off by 2e-5 / 7e-5, alpha_C by 3e-4 / 1e-3 at 0.3% / 1% noise.
  tolerance = 0.3 * noise
  assert abs(fn.alpha - TRUE.alpha_N) < tolerance, fn.alpha
  assert abs(fc.alpha - TRUE.alpha_C) < tolerance, fc.alpha
  if n_bootstrap:
    en, ec = fn.estimates(), fc.estimates()
    assert en['alpha_N'].covers(TRUE.alpha_N) and en['N_c'].covers(TRUE.N_c), en
    assert ec['alpha_C'].covers(TRUE.alpha_C) and ec['C_c'].covers(TRUE.C_c), ec
    # Measured widths: alpha_N 0.0027, alpha_C 0.0019; N_c spans a factor 1.6, C_c 2.7.
    assert en['alpha_N'].hi - en['alpha_N'].lo < 0.1 * TRUE.alpha_N, en
    assert ec['alpha_C'].hi - ec['alpha_C'].lo < 0.1 * TRUE.alpha_C, ec
    assert en['N_c'].hi / en['N_c'].lo < 5.0 and ec['C_c'].hi / ec['C_c'].lo < 5.0, (en, ec)
    ratio = kaplan.n_opt_exponent(fn, fc)
    assert ratio.value == pytest.approx(fc.alpha / fn.alpha)
    assert ratio.covers(TRUE.n_opt_exponent), ratio
    # Measured width 0.036 around 0.658.
    assert ratio.hi - ratio.lo < 0.1 * TRUE.n_opt_exponent, ratio


def test_envelope_law_is_the_lower_envelope_of_the_curves():
  t = synthetic.results_table(laws.CHINCHILLA.loss, 0.0, 0)
  curves = t.rename(columns={'n_params': 'n', 'tokens': 'd', 'flops': 'c', 'eval_loss': 'loss'})
  fit = kaplan.fit_envelope_power_law(curves, 'c', 'C', n_bootstrap=20)
  # Every envelope point is at or below every curve passing through that compute.
  for _, g in curves.groupby('run_id'):
    inside = fit.points[(fit.points.x >= g.c.min()) & (fit.points.x <= g.c.max())]
    ref = np.exp(np.interp(np.log(inside.x), np.log(g.c), np.log(g.loss)))
    assert np.all(inside.loss <= ref * (1 + 1e-9))
  assert 0.02 < fit.alpha < 0.2


def test_degenerate_inputs_fail_clearly():
  with pytest.raises(ScalingFitError, match='2 distinct N values'):
    kaplan.fit_power_law([1e8, 1e8, 2e8], [3.0, 3.1, 2.9], 'N')
  with pytest.raises(ScalingFitError, match='non-positive'):
    kaplan.fit_power_law([1e8, 2e8, 4e8], [3.0, 0.0, 2.9], 'N')
  with pytest.raises(ScalingFitError, match='3 points for 4 parameters'):
    kaplan.fit_nd([1e8, 2e8, 4e8], [1e9, 2e9, 4e9], [3.0, 2.9, 2.8])
