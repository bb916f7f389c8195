"""Shared numerics of the fits: Huber loss, multi-start L-BFGS-B, bootstrap, batched regressions.

Every fit expresses a bootstrap replicate as integer weights on the original points (how many
times each point was drawn), so a replicate never copies data and the linear fits of all
replicates are solved at once as a batch.
"""
import contextlib
import dataclasses
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import scipy.optimize

try:
  import threadpoolctl
except ImportError:  # pragma: no cover - then L-BFGS-B is correct but can be ~50x slower
  threadpoolctl = None


class ScalingFitError(ValueError):
  """The data cannot identify the law (too few points or sizes, no minimum, ...)."""


@dataclasses.dataclass(frozen=True)
class Estimate:
  """A point estimate with a bootstrap percentile interval at `level`."""
  value: float
  lo: float
  hi: float
  level: float = 0.95

  def covers(self, x: float) -> bool:
    return self.lo <= x <= self.hi

  def to_json(self) -> Dict[str, object]:
    return {'value': float(self.value), f'ci{round(self.level * 100)}': [float(self.lo),
                                                                         float(self.hi)]}


def estimate(value: float, samples: np.ndarray, level: float = 0.95) -> Estimate:
  """Percentile bootstrap interval; replicates that failed (NaN) are dropped."""
  samples = np.asarray(samples, float)
  samples = samples[np.isfinite(samples)]
  if samples.size == 0:
    return Estimate(float(value), float('nan'), float('nan'), level)
  q = 100 * (1 - level) / 2
  lo, hi = np.percentile(samples, [q, 100 - q])
  return Estimate(float(value), float(lo), float(hi), level)


def huber(r: np.ndarray, delta: float) -> np.ndarray:
  """Huber loss (Hoffmann et al. 2022, Eq. 3); delta = inf gives r^2 / 2."""
  a = np.abs(r)
  return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def huber_grad(r: np.ndarray, delta: float) -> np.ndarray:
  return np.clip(r, -delta, delta)


def bootstrap_weights(rng: np.random.Generator, n: int, n_boot: int,
                      groups: Optional[np.ndarray] = None) -> np.ndarray:
  """(n_boot, n) draw counts; with `groups`, points are resampled within each group."""
  if groups is None:
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)
  w = np.zeros((n_boot, n))
  for g in np.unique(groups):
    idx = np.flatnonzero(groups == g)
    w[:, idx] = rng.multinomial(idx.size, np.full(idx.size, 1.0 / idx.size), size=n_boot)
  return w


def linear_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Weighted least squares y = c0 + c1 x, batched: x, y and w broadcast to (..., n) and the fit
  runs along the last axis. NaN where the weighted x has no spread."""
  x, y, w = np.broadcast_arrays(x, y, w)
  w = np.where(np.isfinite(y) & np.isfinite(x), w, 0.0)
  x, y = np.where(w > 0, x, 0.0), np.where(w > 0, y, 0.0)
  sw, sx, sy = w.sum(-1), (w * x).sum(-1), (w * y).sum(-1)
  sxx, sxy = (w * x * x).sum(-1), (w * x * y).sum(-1)
  den = sw * sxx - sx * sx
  with np.errstate(invalid='ignore', divide='ignore'):
    ok = den > 1e-10 * np.maximum(sw * sxx, 1e-300)
    c1 = np.where(ok, (sw * sxy - sx * sy) / np.where(ok, den, 1.0), np.nan)
    c0 = (sy - c1 * sx) / sw
  return c0, c1


def power_law_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """y = k x^p fitted in log-log space, batched over weight rows: returns (log k, p)."""
  return linear_fit(np.log(x), np.log(y), w)


def parabola_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
  """Weighted least squares y = c0 + c1 x + c2 x^2, batched: w (B, n) -> (B, 3); NaN if singular.

  Solved in x - mean(x): log N spans ~20 +- 2, and the raw normal equations lose ~8 digits."""
  m = x.mean()
  u = x - m
  us = np.stack([np.ones_like(u), u, u * u], axis=-1)  # (n, 3)
  lhs = np.einsum('bn,ni,nj->bij', w, us, us)
  rhs = np.einsum('bn,ni,n->bi', w, us, y)
  out = np.full(rhs.shape, np.nan)
  ok = np.linalg.cond(lhs) < 1e12
  if ok.any():
    out[ok] = np.linalg.solve(lhs[ok], rhs[ok][..., None])[..., 0]
  c0, c1, c2 = out[:, 0], out[:, 1], out[:, 2]
  return np.stack([c0 - c1 * m + c2 * m * m, c1 - 2 * c2 * m, c2], axis=-1)


@dataclasses.dataclass(frozen=True)
class MultiStart:
  """Result of L-BFGS-B from every start: the best point and how the starts agree."""
  x: np.ndarray          # best parameters
  fun: float             # objective at the best parameters
  xs: np.ndarray         # (S, P) optimum reached from each start
  funs: np.ndarray       # (S,) objective reached from each start
  converged: np.ndarray  # (S,) L-BFGS-B reported success

  def at_best(self, rtol: float = 1e-6) -> np.ndarray:
    """Starts whose final objective is within rtol of the best: the same optimum."""
    return self.funs <= self.fun + rtol * max(abs(self.fun), 1e-300)


def single_threaded_blas():
  """scipy's L-BFGS-B calls BLAS on 5-vectors; a multi-threaded OpenBLAS spends ~20 ms per
  iteration synchronizing threads on a loaded 2-core machine (measured: 0.93 s vs 0.02 s for one
  48-iteration fit). One BLAS thread for the duration of a fit removes that."""
  if threadpoolctl is None:
    return contextlib.nullcontext()
  return threadpoolctl.threadpool_limits(limits=1, user_api='blas')


def lbfgs(fun_and_grad: Callable[[np.ndarray], Tuple[float, np.ndarray]], x0: np.ndarray,
          bounds: Optional[Sequence[Tuple[float, float]]] = None, max_iter: int = 1000):
  """One L-BFGS-B run with tolerances tight enough for objectives of order 1e-3."""
  return scipy.optimize.minimize(fun_and_grad, x0, jac=True, method='L-BFGS-B', bounds=bounds,
                                 options={'maxiter': max_iter, 'ftol': 1e-13, 'gtol': 1e-10,
                                          'maxcor': 20})


def multistart_lbfgs(fun_and_grad, starts: np.ndarray, bounds=None,
                     max_iter: int = 1000) -> MultiStart:
  """L-BFGS-B from each row of `starts`; the lowest final objective wins (Hoffmann et al. 2022,
  App. D.2: "we use the L-BFGS algorithm ... from a grid of initialisations")."""
  with single_threaded_blas():
    results = [lbfgs(fun_and_grad, s, bounds, max_iter) for s in starts]
  funs = np.array([r.fun if np.isfinite(r.fun) else np.inf for r in results])
  xs = np.stack([r.x for r in results])
  best = int(np.argmin(funs))
  return MultiStart(xs[best], float(funs[best]), xs, funs,
                    np.array([bool(r.success) for r in results]))


def grid(*axes: Sequence[float]) -> np.ndarray:
  """Cartesian product of 1-D axes as (prod(len), len(axes)) starts."""
  return np.stack(np.meshgrid(*axes, indexing='ij'), axis=-1).reshape(-1, len(axes))
