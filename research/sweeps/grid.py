"""The grid of a sweep: model sizes x budgets x families x objectives x seeds, from gin.

The gin names stay `sweep.SweepConfig`, `sweep.depth_width_sizes` and `sweep.SlurmConfig`
(gin_configs/sweeps/*.gin bind them), whichever module of research.sweeps defines them.
"""
import dataclasses
import math
from typing import Any, Callable, Mapping, Optional, Sequence

import gin

from research import cli

GIN_MODULE = 'sweep'


class SweepError(cli.UsageError):
  """A sweep that cannot be planned or launched; the message says which setting."""


@gin.configurable(module=GIN_MODULE)
def depth_width_sizes(depths: Sequence[int] = (1, 2, 3, 4, 6), width_per_layer: int = 64,
                      head_dim: int = 32, ff_ratio: int = 4,
                      widths: Optional[Sequence[int]] = None,
                      per_size: Optional[Sequence[Mapping[str, Any]]] = None) -> dict:
  """Model sizes by a shape rule: d_model = width_per_layer * depth (aspect ratio fixed).

  `widths`, if given, pairs with `depths` instead of the rule. Names are 'L<depth>d<width>'.
  Widths are multiples of head_dim, or below it (then one head).
  Kaplan et al. (2020) found loss nearly flat over d_model / n_layer in [20, 200]; the
  default 64 is inside it. `per_size`, if given, pairs with `depths` too: more gin
  parameters of each size (a learning rate or init tuned per size), which come after the
  sweep's run_bindings.
  """
  widths = list(widths) if widths is not None else [width_per_layer * d for d in depths]
  if len(widths) != len(depths):
    raise SweepError(f'depth_width_sizes: {len(depths)} depths but {len(widths)} widths')
  per_size = [{}] * len(depths) if per_size is None else list(per_size)
  if len(per_size) != len(depths):
    raise SweepError(f'depth_width_sizes: {len(depths)} depths but {len(per_size)} '
                     'per_size entries')
  sizes = {}
  for depth, width, extra in zip(depths, widths, per_size):
    # A width below head_dim is one head of that width (the smallest models of a grid).
    heads = max(1, width // head_dim)
    if width % head_dim and width > head_dim:
      raise SweepError(f'depth_width_sizes: d_model {width} is not a multiple of '
                       f'head_dim {head_dim}')
    sizes[f'L{depth}d{width}'] = {
        'TransformerConfig.num_layers': depth, 'TransformerConfig.d_model': width,
        'TransformerConfig.num_heads': heads,
        'TransformerConfig.d_ff': ff_ratio * width, **dict(extra)}
  return sizes


@gin.configurable(module=GIN_MODULE)
@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """One sweep. Exactly one of flop_budgets / token_budgets is non-empty."""
  sizes: Mapping[str, Mapping[str, Any]] = gin.REQUIRED  # name -> {gin parameter: value}
  flop_budgets: Sequence[float] = ()   # IsoFLOP: each size trained to D = C / FLOPs-per-token
  token_budgets: Sequence[float] = ()  # every size trained on each D tokens
  families: Sequence[str] = ('decoder',)
  objectives: Sequence[str] = ('causal_lm',)
  seeds: Sequence[int] = (0,)
  # Relative to the working directory, else to the gin_configs shipped with the package.
  run_gin_files: Sequence[str] = ('gin_configs/runs/tiny.gin',)
  run_bindings: Sequence[str] = ()     # applied to every run, before the point's own
  flops_convention: str = '6N'
  min_steps: int = 10                  # IsoFLOP points with fewer steps are left out
  evals_per_run: int = 8               # intermediate evals (Chinchilla Approach 1 uses them)
  checkpoints_per_run: int = 4
  warmup_fraction: float = 0.1         # warm-up scales with the run: short runs still decay
  # A warm-up of this many steps for every run instead (Kaplan et al.'s fixed warm-up, which
  # Porian et al. 2024 find too long for small models); None: warmup_fraction of each run.
  warmup_steps: Optional[int] = None
  # IsoFLOP points whose tokens per parameter D / N fall outside [low, high] are left out
  # (named in the plan): each budget then trains the sizes around its optimum only, as
  # Hoffmann et al. chose a range of N per budget. Empty: every size at every budget.
  tokens_per_param: Sequence[float] = ()
  # The peak learning rate of each point as a function of its parameter count (a
  # `power_law_lr`), bound after run_bindings and the size's own parameters. None: the
  # run config's make_schedule.peak for every size.
  learning_rate: Optional[Callable[[int], float]] = None

  def __post_init__(self):
    # A budget at or below zero would plan 1-step runs and blame the model's size for it.
    for name in ('flop_budgets', 'token_budgets'):
      for budget in getattr(self, name):
        if not isinstance(budget, (int, float)) or isinstance(budget, bool) or (
            not math.isfinite(budget)) or budget <= 0:
          raise SweepError(f'SweepConfig.{name} must be positive, got {budget!r}')
    if self.warmup_steps is not None and (isinstance(self.warmup_steps, bool) or not isinstance(
        self.warmup_steps, int) or self.warmup_steps < 0):
      raise SweepError(f'SweepConfig.warmup_steps must be a step count >= 0, got '
                       f'{self.warmup_steps!r}')
    window = tuple(self.tokens_per_param)
    if window and not (len(window) == 2 and all(
        isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in window)
                       and window[0] < window[1]):
      raise SweepError('SweepConfig.tokens_per_param must be [low, high] with '
                       f'0 < low < high, got {list(window)!r}')


@dataclasses.dataclass(frozen=True)
class PowerLawLR:
  """Peak learning rate = `peak` * (N / `reference_params`) ** -`exponent`, N the total
  parameter count: the per-size rule a learning-rate sweep at a few sizes fits
  (docs/scaling.md has the sweep behind the quickstart's constants)."""
  peak: float
  reference_params: float = 1e4
  exponent: float = 0.0

  def __post_init__(self):
    for name in ('peak', 'reference_params'):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or (
          not math.isfinite(value)) or value <= 0:
        raise SweepError(f'power_law_lr.{name} must be positive, got {value!r}')

  def __call__(self, n_params: int) -> float:
    return float(self.peak * (n_params / self.reference_params) ** -self.exponent)


@gin.configurable(module=GIN_MODULE)
def power_law_lr(peak: float = gin.REQUIRED, reference_params: float = 1e4,
                 exponent: float = 0.0) -> PowerLawLR:
  """gin: `sweep.SweepConfig.learning_rate = @sweep.power_law_lr()`."""
  return PowerLawLR(peak, reference_params, exponent)


@dataclasses.dataclass(frozen=True)
class Point:
  run_id: str
  size: str
  family: str
  objective: str
  seed: int
  flop_budget: Optional[float]
  token_budget: Optional[float]
  train_steps: int
  tokens: int                 # planned: train_steps x tokens per step
  n_params: int
  flops_per_token: float      # under the sweep's flops_convention
  gin_files: tuple            # gin files of this run, after run_gin_files
  bindings: tuple             # gin bindings of this run, after run_bindings

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def _budget_tag(prefix: str, value: float) -> str:
  if value < 1e4 and float(value).is_integer():
    return f'{prefix}{int(value)}'
  mantissa, exponent = f'{value:.2e}'.split('e')
  mantissa = mantissa.rstrip('0').rstrip('.')
  return f'{prefix}{mantissa}e{int(exponent)}'


def make_run_id(size: str, family: str, objective: str, seed: int,
                flop_budget: Optional[float] = None,
                token_budget: Optional[float] = None) -> str:
  """Readable and deterministic, e.g. 'C1e12-L2d64-decoder-causal_lm-s0'."""
  budget = (_budget_tag('C', flop_budget) if flop_budget is not None
            else _budget_tag('D', token_budget))
  return f'{budget}-{size}-{family}-{objective}-s{seed}'
