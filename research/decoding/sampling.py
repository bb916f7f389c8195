"""Greedy decoding and ancestral sampling: one jitted `lax.while_loop`.

Each step processes the logits (repetition controls, then for sampling the
temperature / top-k / top-p warpers), picks one token per row with a selector
from `SELECTORS`, and feeds it back. A row stops at EOS (later slots hold pad)
and the loop stops when every row has stopped or `max_new_tokens` is reached.
Sampling draws step t with `fold_in(key, t)`, so a key fixes the output.
"""
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from research.decoding import processors


class DecodeOutput(NamedTuple):
  """K hypotheses per prompt (K = 1 for greedy / sampling, beam_width for beams)."""
  tokens: jax.Array  # [batch, K, max_new_tokens] int32, pad after EOS
  lengths: jax.Array  # [batch, K] int32: tokens up to and including EOS
  scores: jax.Array  # [batch, K]: sum of log p (beam: divided by the length penalty)
  logits: Optional[jax.Array] = None  # [batch, max_new_tokens, vocab] raw, if asked

  @property
  def best(self):
    """[batch, max_new_tokens]: the top hypothesis of each prompt."""
    return self.tokens[:, 0]


def _greedy(logits_nv, key):
  del key
  return jnp.argmax(logits_nv, axis=-1).astype(jnp.int32)


def _sample(logits_nv, key):
  return jax.random.categorical(key, logits_nv, axis=-1).astype(jnp.int32)


# strategy -> (selector, processor kinds it applies).
SELECTORS = {
    'greedy': (_greedy, ('control',)),
    'sample': (_sample, ('control', 'warp')),
}


class _LoopState(NamedTuple):
  step: jax.Array
  logits: jax.Array  # [b, vocab]: the model's prediction for slot `step`
  state: dict  # the adapter's state
  history: processors.History
  tokens: jax.Array  # [b, n]
  done: jax.Array  # [b]
  lengths: jax.Array  # [b]
  scores: jax.Array  # [b]
  all_logits: jax.Array  # [b, n, vocab] or [b, 0, vocab]


def decode_loop(adapter, params, prompts, config, rng) -> DecodeOutput:
  """Greedy or sampled continuations of `prompts` (adapters.Prompts)."""
  select, kinds = SELECTORS[config.strategy]
  n = config.max_new_tokens
  logits, state, history = adapter.init(params, prompts, n)
  b, vocab = logits.shape
  kept = n if config.return_logits else 0

  def body(s: _LoopState) -> _LoopState:
    processed = processors.process(config, s.logits, s.history, kinds)
    token = select(processed, jax.random.fold_in(rng, s.step))
    token = jnp.where(s.done, config.pad_id, token)
    log_probs = jax.nn.log_softmax(s.logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, token[:, None], axis=-1)[:, 0]
    live = ~s.done
    all_logits = s.all_logits
    if kept:
      all_logits = jax.lax.dynamic_update_slice(all_logits, s.logits[:, None],
                                                (0, s.step, 0))
    next_logits, next_state = adapter.step(params, s.state, token)
    return _LoopState(
        step=s.step + 1, logits=next_logits, state=next_state,
        history=s.history.append(token, live),
        tokens=s.tokens.at[:, s.step].set(token),
        done=s.done | (token == config.eos_id),
        lengths=s.lengths + live.astype(jnp.int32),
        scores=s.scores + jnp.where(live, picked, 0.0),
        all_logits=all_logits)

  def cond(s: _LoopState):
    return (s.step < n) & ~jnp.all(s.done)

  init = _LoopState(
      step=jnp.asarray(0, jnp.int32), logits=logits, state=state, history=history,
      tokens=jnp.full((b, n), config.pad_id, jnp.int32), done=jnp.zeros((b,), jnp.bool_),
      lengths=jnp.zeros((b,), jnp.int32), scores=jnp.zeros((b,), jnp.float32),
      all_logits=jnp.zeros((b, kept, vocab), logits.dtype))
  final = jax.lax.while_loop(cond, body, init)
  return DecodeOutput(final.tokens[:, None], final.lengths[:, None], final.scores[:, None],
                      final.all_logits if kept else None)
