"""Logical-axis rules: the one table mapping docs/design.md's logical names to mesh axes.

Rules are applied in order by flax: for each array, a logical name takes the first rule
whose mesh axes are not already used by another dimension of that array. So `batch`
comes first (activations shard the batch over `data` and `fsdp`) and `embed` then falls
back to unsharded on activations but takes `fsdp` on parameters, which have no `batch`.
"""
from typing import Optional, Sequence

import gin

LOGICAL_AXES = ('batch', 'length', 'embed', 'mlp', 'heads', 'kv_heads', 'head_dim', 'vocab',
                'layers')

Rules = tuple[tuple[str, Optional[str | tuple[str, ...]]], ...]

_BATCH = ('batch', ('data', 'fsdp'))

RULE_PRESETS: dict[str, Rules] = {
    # Every parameter replicated; the batch split over all data-like axes.
    'data_parallel': (
        _BATCH,
    ),
    # ZeRO-3: parameters (and so optimizer state) sharded along `embed` over `fsdp`.
    'fsdp': (
        _BATCH,
        ('embed', 'fsdp'),
    ),
    # FSDP plus Megatron-style tensor parallelism over heads, mlp and vocab.
    'fsdp_tensor': (
        _BATCH,
        ('embed', 'fsdp'),
        ('mlp', 'tensor'),
        ('heads', 'tensor'),
        ('kv_heads', 'tensor'),
        ('vocab', 'tensor'),
    ),
}


def _complete(rules: Rules) -> Rules:
  """Adds an explicit `None` (replicated) rule for every logical axis not mentioned."""
  named = {name for name, _ in rules}
  return tuple(rules) + tuple((name, None) for name in LOGICAL_AXES if name not in named)


@gin.configurable
def logical_axis_rules(preset: str = 'fsdp_tensor',
                       overrides: Sequence[tuple[str, Optional[str | Sequence[str]]]] = ()
                       ) -> Rules:
  """Returns the rules table: a preset from RULE_PRESETS, with `overrides` taking priority.

  In gin: `logical_axis_rules.preset = 'fsdp'` or
  `logical_axis_rules.overrides = [('vocab', 'tensor')]`.
  """
  if preset not in RULE_PRESETS:
    raise ValueError(f'unknown logical_axis_rules preset {preset!r}; '
                     f'known: {", ".join(sorted(RULE_PRESETS))}')
  override_rules = tuple(
      (name, tuple(axes) if isinstance(axes, (list, tuple)) else axes)
      for name, axes in overrides)
  for name, _ in override_rules:
    if name not in LOGICAL_AXES:
      raise ValueError(f'unknown logical axis {name!r} in logical_axis_rules.overrides')
  return _complete(override_rules + RULE_PRESETS[preset])
