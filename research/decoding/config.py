"""What a researcher chooses when decoding: one frozen, gin-configurable dataclass.

Checks that need only the config live in `__post_init__`; checks that need the
model or the prompts (context length, vocabulary, empty prompts) live in
`check_against_model` / `check_prompts`. Every failure is a `DecodingError`
with a one-line message naming the offending value.
"""
import dataclasses
from typing import Optional

import gin

from research.models.config import TransformerConfig

STRATEGIES = ('greedy', 'sample', 'beam', 'exhaustive')
# The exhaustive oracle enumerates every hypothesis; refuse spaces beyond this.
MAX_EXHAUSTIVE_HYPOTHESES = 200_000


class DecodingError(ValueError):
  """Bad decoding input; the message is one line and names the value."""


# (field, whether a value is out of range, what the field must be), checked in this order
# after the strategy: the first bad field is the one reported.
_FIELD_CHECKS = (
    ('max_new_tokens', lambda v: v <= 0, 'must be positive'),
    ('temperature', lambda v: not v > 0, 'must be > 0'),
    ('top_k', lambda v: v is not None and v <= 0,
     'must be a positive integer (or None for off)'),
    ('top_p', lambda v: v is not None and not 0.0 < v <= 1.0,
     'must be in (0, 1] (or None for off)'),
    ('beam_width', lambda v: v <= 0, 'must be positive'),
    ('repetition_penalty', lambda v: not v > 0, 'must be > 0 (1 = off)'),
    ('no_repeat_ngram_size', lambda v: v < 0, 'must be >= 0 (0 = off)'),
)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class DecodeConfig:
  """One decoding run. Processors apply in the order of `processors.PROCESSORS`."""
  strategy: str = 'greedy'  # a key of decoding.STRATEGIES
  max_new_tokens: int = 32  # generated tokens per sequence, EOS included
  # Sampling: logits / temperature, then top-k, then top-p (nucleus).
  temperature: float = 1.0
  top_k: Optional[int] = None  # None: off; keep the k most likely tokens
  top_p: Optional[float] = None  # None: off; smallest set with mass >= p
  # Beam search (t5x / GNMT conventions).
  beam_width: int = 4
  # score = log p / ((5 + length) / 6) ** alpha (Wu et al. 2016); 0 = raw log p.
  length_penalty: float = 0.0
  # True: stop once beam_width hypotheses ended (HF early_stopping=True).
  # False: stop only when no live beam can still beat the finished ones, which
  # gives the same answer as running to max_new_tokens.
  early_stopping: bool = False
  # Repetition controls, applied to every strategy.
  repetition_penalty: float = 1.0  # CTRL (Keskar et al. 2019); 1 = off
  no_repeat_ngram_size: int = 0  # 0 = off
  # Token ids (the byte tokenizer's: pad 0, eos 1; T5 starts the decoder with pad).
  eos_id: int = 1
  pad_id: int = 0
  decoder_start_id: int = 0
  # Decoder family only: the prompt is a bidirectional prefix (prefix LM).
  prefix_lm: bool = False
  # False recomputes the full forward pass each step (reference and benchmark).
  use_cache: bool = True
  # Keep the raw logits of every step of greedy / sampling ([batch, steps, vocab]).
  return_logits: bool = False

  def __post_init__(self):
    if self.strategy not in STRATEGIES:
      raise DecodingError(f'DecodeConfig.strategy={self.strategy!r} is not one of '
                          f'{", ".join(STRATEGIES)}')
    for name, bad, requirement in _FIELD_CHECKS:
      value = getattr(self, name)
      if bad(value):
        raise DecodingError(f'DecodeConfig.{name} {requirement}, got {value}')
    if self.strategy == 'exhaustive' and (self.repetition_penalty != 1.0
                                          or self.no_repeat_ngram_size):
      raise DecodingError('the exhaustive oracle scores raw model probabilities: set '
                          'repetition_penalty=1 and no_repeat_ngram_size=0')

  @property
  def num_hypotheses(self) -> int:
    """Sequences returned per prompt."""
    return self.beam_width if self.strategy in ('beam', 'exhaustive') else 1

  def replace(self, **changes) -> 'DecodeConfig':
    return dataclasses.replace(self, **changes)


def check_against_model(config: DecodeConfig, model: TransformerConfig):
  """Checks that need the model: family, vocabulary, ids, search-space size."""
  if model.family not in ('decoder', 'encoder_decoder'):
    raise DecodingError(f'cannot generate with family={model.family!r}: decoding needs '
                        "a 'decoder' or 'encoder_decoder' model")
  if config.prefix_lm and model.family != 'decoder':
    raise DecodingError("DecodeConfig.prefix_lm applies to family='decoder' only, got "
                        f'{model.family!r}')
  for name in ('eos_id', 'pad_id', 'decoder_start_id'):
    value = getattr(config, name)
    if not 0 <= value < model.vocab_size:
      raise DecodingError(f'DecodeConfig.{name}={value} is outside the vocabulary '
                          f'[0, {model.vocab_size})')
  if config.num_hypotheses > model.vocab_size:
    raise DecodingError(f'DecodeConfig.beam_width={config.beam_width} is larger than the '
                        f'vocabulary ({model.vocab_size} tokens)')
  if config.top_k is not None and config.top_k > model.vocab_size:
    raise DecodingError(f'DecodeConfig.top_k={config.top_k} is larger than the '
                        f'vocabulary ({model.vocab_size} tokens)')
  if config.strategy == 'exhaustive':
    space = model.vocab_size ** config.max_new_tokens
    if space > MAX_EXHAUSTIVE_HYPOTHESES:
      raise DecodingError(f'exhaustive search over vocab_size={model.vocab_size} and '
                          f'max_new_tokens={config.max_new_tokens} has {space} '
                          f'hypotheses (limit {MAX_EXHAUSTIVE_HYPOTHESES})')


def check_prompts(config: DecodeConfig, model: TransformerConfig, lengths):
  """`lengths`: real tokens per prompt (python ints). Context and emptiness checks."""
  if len(lengths) == 0:
    raise DecodingError('no prompts given: the batch is empty')
  for i, n in enumerate(lengths):
    if n == 0:
      raise DecodingError(f'prompt {i} is empty: give at least one token')
  longest = max(lengths)
  if longest > model.max_length:
    raise DecodingError(f'prompt of {longest} tokens is longer than the model context '
                        f'max_length={model.max_length}')
  # Decoder-only rows hold prompt and continuation in one context; an
  # encoder-decoder's decoder holds the continuation alone.
  needed = config.max_new_tokens + (longest if model.family == 'decoder' else 0)
  peft = model.peft
  if peft is not None and peft.method in ('prompt', 'prefix', 'ptuning_v2'):
    # Virtual tokens (or a prefix) hold context positions before the prompt.
    extra = peft.num_virtual_tokens if peft.method == 'prompt' else peft.prefix_length
    if model.family != 'decoder':  # the encoder holds them with the prompt
      if extra + longest > model.max_length:
        raise DecodingError(f'PEFT {peft.method} length {extra} + prompt ({longest} tokens) '
                            f'= {extra + longest} exceeds the model context '
                            f'max_length={model.max_length}')
    elif extra + needed > model.max_length:
      raise DecodingError(f'PEFT {peft.method} length {extra} + prompt ({longest} tokens) '
                          f'+ max_new_tokens ({config.max_new_tokens}) = {extra + needed} '
                          f'exceeds the model context max_length={model.max_length}')
  if needed > model.max_length:
    raise DecodingError(f'prompt ({longest if model.family == "decoder" else 0} tokens) '
                        f'+ max_new_tokens ({config.max_new_tokens}) = {needed} exceeds '
                        f'the model context max_length={model.max_length}')
