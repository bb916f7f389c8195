"""Beam search in one jitted `lax.while_loop` (t5x / GNMT conventions).

Each prompt keeps `beam_width` live hypotheses (none ended in EOS) and the
`beam_width` best finished ones. A step extends every live beam by every
token. As in Hugging Face's BeamSearchScorer, a candidate ending in EOS
finishes only if it ranks among the `beam_width` best candidates of the step
(so width 1 is exactly greedy); at the last step the new live beams finish
too. Finished hypotheses are scored log p / ((5 + length) / 6) ** alpha. The
best non-EOS candidates become the live beams, and the model state follows
them with one gather along the batch axis. Repetition controls apply to
every beam; sampling warpers do not (as in Hugging Face).

Stopping per prompt: with `early_stopping`, once `beam_width` hypotheses have
finished; otherwise once no live beam can beat the worst finished one even
with the most favourable remaining length penalty, which returns exactly what
running to `max_new_tokens` would.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

from research.decoding import adapters
from research.decoding import processors
from research.decoding.sampling import DecodeOutput

NEG = -1e9  # score of an empty slot; real scores are far above NEG / 2


def length_penalty(length, alpha: float):
  """Wu et al. 2016, eq. 14: ((5 + |Y|) / 6) ** alpha."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


class _BeamState(NamedTuple):
  step: jax.Array
  logits: jax.Array  # [b * w, vocab]
  state: dict
  history: processors.History
  alive_tokens: jax.Array  # [b, w, n]
  alive_logp: jax.Array  # [b, w]
  finished_tokens: jax.Array  # [b, w, n]
  finished_scores: jax.Array  # [b, w]
  finished_lengths: jax.Array  # [b, w]
  done: jax.Array  # [b]


def _take_beams(x_bw_, parent_bk):
  """x[b, parent[b, k]] for x with beams on axis 1."""
  index = parent_bk.reshape(parent_bk.shape + (1,) * (x_bw_.ndim - 2))
  return jnp.take_along_axis(x_bw_, index, axis=1)


def beam_search(adapter, params, prompts, config, rng) -> DecodeOutput:
  del rng  # deterministic
  w, n, alpha = config.beam_width, config.max_new_tokens, config.length_penalty
  logits, state, history = adapter.init(params, prompts, n)
  b, vocab = logits.shape
  rows = jnp.repeat(jnp.arange(b), w)
  beam_token = jnp.arange(w * vocab) % vocab  # token of each flattened candidate

  def body(s: _BeamState) -> _BeamState:
    t = s.step
    processed = processors.process(config, s.logits, s.history, ('control',))
    log_probs = jax.nn.log_softmax(processed, axis=-1).reshape(b, w, vocab)
    candidates = (s.alive_logp[:, :, None] + log_probs).reshape(b, w * vocab)
    real = (candidates > NEG / 2) & ~s.done[:, None]  # frozen prompts add nothing
    is_eos = beam_token == config.eos_id
    length = t + 1
    batch_index = jnp.arange(b)[:, None]
    _, top_index = jax.lax.top_k(jnp.where(real, candidates, NEG), w)
    in_top = jnp.zeros_like(real).at[batch_index, top_index].set(True)

    # Live beams: the best candidates that did not end in EOS.
    alive_logp, alive_index = jax.lax.top_k(jnp.where(real & ~is_eos, candidates, NEG), w)
    parent, token = alive_index // vocab, alive_index % vocab
    alive_tokens = _take_beams(s.alive_tokens, parent).at[:, :, t].set(token)
    chosen = jnp.zeros_like(real).at[batch_index, alive_index].set(alive_logp > NEG / 2)
    ends = real & ((is_eos & in_top) | ((t == n - 1) & (in_top | chosen)))

    # Finished: merge the best ending candidates into the finished set.
    new_scores, new_index = jax.lax.top_k(
        jnp.where(ends, candidates / length_penalty(length, alpha), NEG), w)
    new_tokens = _take_beams(s.alive_tokens, new_index // vocab).at[:, :, t].set(
        new_index % vocab)
    merged_scores = jnp.concatenate([s.finished_scores, new_scores], axis=1)
    merged_tokens = jnp.concatenate([s.finished_tokens, new_tokens], axis=1)
    merged_lengths = jnp.concatenate(
        [s.finished_lengths, jnp.full((b, w), length, jnp.int32)], axis=1)
    finished_scores, keep = jax.lax.top_k(merged_scores, w)

    # Advance the model along the surviving beams.
    flat_rows = (jnp.arange(b)[:, None] * w + parent).reshape(-1)
    token_n = token.reshape(-1)
    state = adapters.reorder(s.state, flat_rows)
    history = s.history.gather(flat_rows).append(token_n, jnp.ones_like(token_n, jnp.bool_))
    next_logits, state = adapter.step(params, state, token_n)

    full = jnp.all(finished_scores > NEG / 2, axis=1)
    if config.early_stopping:
      stop = full
    else:
      # log p only falls; the most favourable penalty is at one end of the range.
      best_penalty = jnp.maximum(length_penalty(length + 1, alpha),
                                 length_penalty(n, alpha))
      bound = jnp.max(alive_logp, axis=1) / best_penalty
      stop = full & (jnp.min(finished_scores, axis=1) >= bound)
    return _BeamState(
        step=t + 1, logits=next_logits, state=state, history=history,
        alive_tokens=alive_tokens, alive_logp=alive_logp,
        finished_tokens=_take_beams(merged_tokens, keep),
        finished_scores=finished_scores,
        finished_lengths=_take_beams(merged_lengths, keep),
        done=s.done | stop)

  def cond(s: _BeamState):
    return (s.step < n) & ~jnp.all(s.done)

  # Only beam 0 is live at first, so step 0 does not return w copies of one beam.
  init = _BeamState(
      step=jnp.asarray(0, jnp.int32), logits=logits[rows],
      state=adapters.reorder(state, rows), history=history.gather(rows),
      alive_tokens=jnp.full((b, w, n), config.pad_id, jnp.int32),
      alive_logp=jnp.full((b, w), NEG).at[:, 0].set(0.0),
      finished_tokens=jnp.full((b, w, n), config.pad_id, jnp.int32),
      finished_scores=jnp.full((b, w), NEG), finished_lengths=jnp.zeros((b, w), jnp.int32),
      done=jnp.zeros((b,), jnp.bool_))
  final = jax.lax.while_loop(cond, body, init)
  return DecodeOutput(final.finished_tokens, final.finished_lengths, final.finished_scores)
