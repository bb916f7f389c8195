"""Architecture-agnostic pretraining objectives: token sequence -> {'inputs', 'targets'}.

Each objective is a frozen dataclass whose `apply(tokens, tokenizer, seed=...)` is a pure
seeded function; `max_lengths` / `min_tokens` let the pipeline cut chunks that always fit.
"""
from research.objectives.base import Lengths, Objective, check_fits, max_tokens_that_fit
from research.objectives.glm import GLM
from research.objectives.lm import CausalLM, MaskedLM, PrefixLM, SpanCorruption
from research.objectives.spans import (random_spans_noise_mask, span_corruption,
                                       span_corruption_lengths,
                                       span_corruption_output_lengths, uncorrupt)
from research.objectives.ul2 import UL2

# Registry for gin and flags: name -> class. A choice is a value here, not an if/elif.
OBJECTIVES = {
    'causal_lm': CausalLM,
    'prefix_lm': PrefixLM,
    'span_corruption': SpanCorruption,
    'masked_lm': MaskedLM,
    'ul2': UL2,
    'glm': GLM,
}


def get_objective(name: str, **kwargs) -> Objective:
  if name not in OBJECTIVES:
    raise ValueError(f'unknown objective {name!r}; known: {sorted(OBJECTIVES)}')
  return OBJECTIVES[name](**kwargs)
