"""Parameter-efficient fine-tuning (PEFT) inside the model modules.

One frozen, gin-configurable `PeftConfig` on `TransformerConfig.peft` turns on one method;
the modules then create the method's extra parameters beside the base ones (never in
place of them), so a base checkpoint loads into the adapted model unchanged and the
same jitted forward, loss and decode loop serve both:

  'lora'        Hu et al. 2021: y = x W + (alpha / r) dropout(x) A B on the projections
                named by `lora_targets`; A ~ Kaiming-uniform (as HF peft, or normal), B = 0,
                so the adapted model starts equal to the base. Parameters `lora_a`,
                `lora_b` inside the projection's DenseGeneral.
  'prompt'      Lester et al. 2021: `num_virtual_tokens` learned embeddings prepended to
                the (encoder's, for encoder-decoders) input embeddings; initialized from
                the embeddings of random vocabulary entries or N(0, init_std).
  'prefix'      Li & Liang 2021: per-layer key/value prefixes of length `prefix_length`
                on every self-attention, produced by an MLP (`prefix_projection`) from
                a [prefix_length, d_model] table shared by the stack's layers.
  'ptuning_v2'  Liu et al. 2022 (deep prompts): the same per-layer prefixes as free
                parameters, no reparameterization.
  'adapter'     Houlsby et al. 2019: a bottleneck (down-project to `adapter_size`,
                nonlinearity, up-project initialized to 0, residual) after the
                attention and after the MLP sublayer of every block.

research/adapt/peft.py has the rest: trainable-parameter counts, the optimizer mask,
splitting checkpoints, LoRA merge/unmerge. This module imports nothing of `research`
so that `config.py` can hold a PeftConfig.
"""
import dataclasses
from typing import Optional, Tuple

import gin

METHODS = ('none', 'lora', 'prompt', 'prefix', 'ptuning_v2', 'adapter')
PREFIX_METHODS = ('prefix', 'ptuning_v2')
# Projection names of layers.dense inside Attention (self and cross) and MLP.
ATTENTION_PROJECTIONS = ('query', 'key', 'value', 'out')
MLP_PROJECTIONS = ('wi', 'wi_0', 'wi_1', 'wo')
# Short names (HF peft's q_proj/... and T5's q/k/v/o) and 'mlp' for every MLP matrix.
TARGET_ALIASES = {'q': ('query',), 'k': ('key',), 'v': ('value',), 'o': ('out',),
                  'mlp': MLP_PROJECTIONS, 'attention': ATTENTION_PROJECTIONS}
LORA_INITS = ('kaiming', 'normal')
PROMPT_INITS = ('vocab', 'random')
ADAPTER_ACTIVATIONS = ('relu', 'gelu', 'silu', 'tanh')


class PeftError(ValueError):
  """An inconsistent PeftConfig, or one that does not fit the model; names the value."""


@gin.configurable
@dataclasses.dataclass(frozen=True)
class PeftConfig:
  """Which PEFT method, and its sizes. Bind in gin as `TransformerConfig.peft = @PeftConfig()`."""
  method: str = 'none'
  # LoRA
  lora_rank: int = 8
  lora_alpha: float = 16.0
  lora_dropout: float = 0.0
  lora_targets: Tuple[str, ...] = ('query', 'value')
  lora_init: str = 'kaiming'
  # Prompt tuning
  num_virtual_tokens: int = 20
  prompt_init: str = 'vocab'
  # Prefix tuning / P-tuning v2
  prefix_length: int = 10
  prefix_projection: bool = True  # 'prefix' only: Li & Liang's MLP reparameterization
  prefix_hidden: int = 512
  # Bottleneck adapters
  adapter_size: int = 64
  adapter_activation: str = 'relu'

  def __post_init__(self):
    if isinstance(self.lora_targets, str):
      object.__setattr__(self, 'lora_targets', (self.lora_targets,))
    object.__setattr__(self, 'lora_targets', tuple(self.lora_targets))
    for field, choices in (('method', METHODS), ('lora_init', LORA_INITS),
                           ('prompt_init', PROMPT_INITS),
                           ('adapter_activation', ADAPTER_ACTIVATIONS)):
      if getattr(self, field) not in choices:
        raise PeftError(f'PeftConfig.{field}={getattr(self, field)!r} is not one of '
                        f'{", ".join(choices)}')
    for field in ('lora_rank', 'prefix_length', 'prefix_hidden', 'adapter_size'):
      value = getattr(self, field)
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise PeftError(f'PeftConfig.{field} must be a positive int, got {value!r}')
    if (not isinstance(self.num_virtual_tokens, int) or isinstance(self.num_virtual_tokens, bool)
        or self.num_virtual_tokens < 0):
      raise PeftError('PeftConfig.num_virtual_tokens must be an int >= 0, got '
                      f'{self.num_virtual_tokens!r}')
    if not 0.0 <= self.lora_dropout < 1.0:
      raise PeftError(f'PeftConfig.lora_dropout must be in [0, 1), got {self.lora_dropout}')
    if not self.lora_alpha > 0:
      raise PeftError(f'PeftConfig.lora_alpha must be > 0, got {self.lora_alpha}')
    if self.method == 'lora' and not self.lora_targets:
      raise PeftError('PeftConfig.lora_targets is empty: name at least one projection')
    for target in self.lora_targets:
      if target not in TARGET_ALIASES and target not in ATTENTION_PROJECTIONS + MLP_PROJECTIONS:
        raise PeftError(f'PeftConfig.lora_targets: {target!r} names no module; choose from '
                        f'{", ".join(ATTENTION_PROJECTIONS + MLP_PROJECTIONS)} or '
                        f'{", ".join(TARGET_ALIASES)}')

  @property
  def lora_scale(self) -> float:
    return self.lora_alpha / self.lora_rank

  @property
  def lora_modules(self) -> Tuple[str, ...]:
    """The projection names LoRA adapts (aliases expanded)."""
    names = []
    for target in self.lora_targets:
      for name in TARGET_ALIASES.get(target, (target,)):
        if name not in names:
          names.append(name)
    return tuple(names)

  @property
  def virtual_tokens(self) -> int:
    """Positions the input grows by (prompt tuning), 0 for every other method."""
    return self.num_virtual_tokens if self.method == 'prompt' else 0

  @property
  def uses_prefix_projection(self) -> bool:
    return self.method == 'prefix' and self.prefix_projection

  def replace(self, **changes) -> 'PeftConfig':
    return dataclasses.replace(self, **changes)


def from_value(value) -> Optional[PeftConfig]:
  """None, a PeftConfig, or its dict (a config read back from a run's JSON)."""
  if value is None or isinstance(value, PeftConfig):
    return value
  if isinstance(value, dict):
    return PeftConfig(**value)
  raise PeftError(f'TransformerConfig.peft must be a PeftConfig or None, got {value!r}')


def check_against_model(peft: PeftConfig, *, gated: bool, attention_only: bool,
                        d_model: int, q_features: int, kv_features: int, ff_hidden: int,
                        scan_layers: bool) -> None:
  """Refuses a PeftConfig that does not fit the model, in one line naming the value."""
  if peft.method == 'lora':
    mlp = () if attention_only else (('wi_0', 'wi_1') if gated else ('wi',)) + ('wo',)
    present = ATTENTION_PROJECTIONS + mlp
    for target in peft.lora_targets:
      names = TARGET_ALIASES.get(target, (target,))
      if not any(n in present for n in names):
        raise PeftError(f'PeftConfig.lora_targets: {target!r} names no module of this '
                        f'model (it has {", ".join(present)})')
    shapes = {'query': (d_model, q_features), 'key': (d_model, kv_features),
              'value': (d_model, kv_features), 'out': (q_features, d_model),
              'wi': (d_model, ff_hidden), 'wi_0': (d_model, ff_hidden),
              'wi_1': (d_model, ff_hidden), 'wo': (ff_hidden, d_model)}
    for name in peft.lora_modules:
      if name in present and peft.lora_rank > min(shapes[name]):
        raise PeftError(f'PeftConfig.lora_rank={peft.lora_rank} is larger than the '
                        f'{shapes[name][0]}x{shapes[name][1]} matrix {name!r}')
  if peft.uses_prefix_projection and scan_layers:
    raise PeftError("PeftConfig.method='prefix' with prefix_projection needs "
                    'scan_layers=False (use ptuning_v2 with scanned layers)')
