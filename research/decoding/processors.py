"""Logit processors: functions (config, logits [n, vocab], history) -> logits.

Two kinds, in the order listed in `PROCESSORS`:
  'control' (repetition penalty, no-repeat-n-gram) applies to every strategy;
  'warp' (temperature, top-k, top-p) shapes the sampling distribution only, as
  in Hugging Face, where beam search and greedy ignore warpers.
A processor runs only when `enabled(config)`, so disabled ones are not traced.
Masked logits get the finite `MASKED` so that beam scores stay NaN-free.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

MASKED = -1e9


class History(NamedTuple):
  """Every token a row has seen so far, for the repetition controls.

  Decoder-only rows hold the left-padded prompt then the generated tokens;
  encoder-decoder rows hold the generated tokens only. All rows share one
  write position `length` (the prompt is left-padded), so the last token of
  every row sits at `length - 1`.
  """
  tokens: jax.Array  # [n, size] int32
  valid: jax.Array  # [n, size] bool: a real token has been written here
  length: jax.Array  # int32 scalar: slots written so far

  def append(self, token_n, valid_n) -> 'History':
    tokens = jax.lax.dynamic_update_slice(self.tokens, token_n[:, None].astype(jnp.int32),
                                          (0, self.length))
    valid = jax.lax.dynamic_update_slice(self.valid, valid_n[:, None], (0, self.length))
    return History(tokens, valid, self.length + 1)

  def gather(self, rows_n) -> 'History':
    return History(self.tokens[rows_n], self.valid[rows_n], self.length)


def _scatter_rows(tokens_ns, flags_ns, vocab: int):
  """[n, vocab] bool: True where some valid flagged slot of the row holds the token."""
  n = tokens_ns.shape[0]
  rows = jnp.broadcast_to(jnp.arange(n)[:, None], tokens_ns.shape)
  return jnp.zeros((n, vocab), jnp.bool_).at[rows, tokens_ns].max(flags_ns)


def repetition_penalty(config, logits_nv, history: History):
  """CTRL (Keskar et al. 2019), as implemented by Hugging Face: a seen token's
  positive logit is divided by the penalty, a negative one multiplied."""
  seen_nv = _scatter_rows(history.tokens, history.valid, logits_nv.shape[-1])
  p = config.repetition_penalty
  penalized = jnp.where(logits_nv > 0, logits_nv / p, logits_nv * p)
  return jnp.where(seen_nv, penalized, logits_nv)


def banned_ngram_tokens(history: History, n: int, vocab: int):
  """[rows, vocab] bool: tokens that would complete an n-gram already in the row."""
  tokens, valid = history.tokens, history.valid
  size = tokens.shape[1]
  starts = size - n + 1
  if starts <= 0:
    return jnp.zeros((tokens.shape[0], vocab), jnp.bool_)
  # The last n - 1 tokens of each row (all rows end at history.length - 1).
  begin = jnp.maximum(history.length - (n - 1), 0)
  last_tokens = jax.lax.dynamic_slice_in_dim(tokens, begin, n - 1, axis=1)
  last_valid = jax.lax.dynamic_slice_in_dim(valid, begin, n - 1, axis=1)
  enough = (history.length >= n - 1) & jnp.all(last_valid, axis=1)
  match = enough[:, None] & valid[:, n - 1:n - 1 + starts]  # the continuation exists
  for j in range(n - 1):
    match &= valid[:, j:j + starts] & (tokens[:, j:j + starts] == last_tokens[:, j:j + 1])
  return _scatter_rows(tokens[:, n - 1:n - 1 + starts], match, vocab)


def no_repeat_ngram(config, logits_nv, history: History):
  """Bans any token that would repeat an n-gram of the row (prompt included)."""
  banned = banned_ngram_tokens(history, config.no_repeat_ngram_size, logits_nv.shape[-1])
  return jnp.where(banned, MASKED, logits_nv)


def temperature(config, logits_nv, history):
  del history
  return logits_nv / config.temperature


def top_k(config, logits_nv, history):
  del history
  kth_n1 = jax.lax.top_k(logits_nv, config.top_k)[0][:, -1:]
  return jnp.where(logits_nv < kth_n1, MASKED, logits_nv)


def top_p(config, logits_nv, history):
  """Nucleus (Holtzman et al. 2020): the smallest most-likely set with mass >= p.
  The most likely token is always kept, so a tiny p is greedy."""
  del history
  sorted_nv = jnp.sort(logits_nv, axis=-1)[:, ::-1]
  probs_nv = jax.nn.softmax(sorted_nv, axis=-1)
  mass_before_nv = jnp.cumsum(probs_nv, axis=-1) - probs_nv
  keep_nv = mass_before_nv < config.top_p
  keep_nv = keep_nv.at[:, 0].set(True)
  threshold_n1 = jnp.min(jnp.where(keep_nv, sorted_nv, jnp.inf), axis=-1, keepdims=True)
  return jnp.where(logits_nv < threshold_n1, MASKED, logits_nv)


class Processor(NamedTuple):
  kind: str  # 'control' or 'warp'
  enabled: Callable
  apply: Callable


PROCESSORS = {
    'repetition_penalty': Processor('control', lambda c: c.repetition_penalty != 1.0,
                                    repetition_penalty),
    'no_repeat_ngram': Processor('control', lambda c: c.no_repeat_ngram_size > 0,
                                 no_repeat_ngram),
    'temperature': Processor('warp', lambda c: c.temperature != 1.0, temperature),
    'top_k': Processor('warp', lambda c: c.top_k is not None, top_k),
    'top_p': Processor('warp', lambda c: c.top_p is not None, top_p),
}


def process(config, logits_nv, history: History, kinds=('control', 'warp')):
  """Applies the enabled processors of `kinds` in registry order."""
  for processor in PROCESSORS.values():
    if processor.kind in kinds and processor.enabled(config):
      logits_nv = processor.apply(config, logits_nv, history)
  return logits_nv
