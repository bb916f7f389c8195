"""A sweep's projected cost from measured start-up and step times (benchmarks/sweep_cost.py
measures them): each point's seconds, interpolated between the measured sizes."""
import numpy as np


def interpolate(measured: dict, x: float) -> np.ndarray:
  """(cold, warm, step) at FLOPs per token x, piecewise linear in log x (held at the ends)."""
  xs = sorted(measured)
  table = np.array([measured[k] for k in xs])
  return np.array([np.interp(np.log(x), np.log(xs), table[:, j]) for j in range(3)])


def run_seconds(points, measured: dict) -> list[float]:
  """Each point's projected seconds, in the sweep's order: cold start-up for the first run
  of each size the sweep starts, warm for the others."""
  seen, out = set(), []
  for p in points:
    cold, warm, step_s = interpolate(measured, p.flops_per_token)
    out.append((warm if p.size in seen else cold) + p.train_steps * step_s)
    seen.add(p.size)
  return out
