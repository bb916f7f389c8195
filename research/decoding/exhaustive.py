"""Exhaustive search: the test oracle for beam search on tiny models.

Enumerates every hypothesis a beam search over `max_new_tokens` steps could
return (sequences that end at their first EOS, or run to the maximum length
without one), scores each by teacher forcing with the full forward pass (no
cache, no shared code with the decode loops) and keeps the `beam_width` best
by the same length-penalised score as beam search.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from research.decoding.beam import length_penalty
from research.decoding.sampling import DecodeOutput

_CHUNK = 4096  # hypotheses per forward pass


def enumerate_hypotheses(vocab: int, max_len: int, eos_id: int, pad_id: int):
  """(tokens [h, max_len] padded with pad_id, lengths [h]) of every hypothesis."""
  others = [v for v in range(vocab) if v != eos_id]
  rows, lengths = [], []
  for length in range(1, max_len + 1):
    last = range(vocab) if length == max_len else [eos_id]
    for body in itertools.product(others, repeat=length - 1):
      for token in last:
        rows.append(list(body) + [token] + [pad_id] * (max_len - length))
        lengths.append(length)
  return np.asarray(rows, np.int32), np.asarray(lengths, np.int32)


def _decoder_log_probs(module, params, prompt, hyps, prefix_lm):
  """[h, max_len] log p(hyp_j | prompt, hyp_<j) for a decoder-only model."""
  h, n = hyps.shape
  p = len(prompt)
  tokens = jnp.concatenate([jnp.broadcast_to(jnp.asarray(prompt, jnp.int32), (h, p)),
                            hyps], axis=1)
  prefix = jnp.broadcast_to((jnp.arange(p + n) < p).astype(jnp.int32), tokens.shape)
  logits = module.apply({'params': params}, decoder_input_tokens=tokens,
                        decoder_causal_attention=prefix if prefix_lm else None)
  log_probs = jax.nn.log_softmax(logits[:, p - 1:p - 1 + n], axis=-1)
  return jnp.take_along_axis(log_probs, hyps[:, :, None], axis=-1)[:, :, 0]


def _encoder_decoder_log_probs(module, params, prompt, hyps, start_id):
  h, n = hyps.shape
  encoder_tokens = jnp.broadcast_to(jnp.asarray(prompt, jnp.int32), (h, len(prompt)))
  decoder_tokens = jnp.concatenate(
      [jnp.full((h, 1), start_id, jnp.int32), hyps[:, :-1]], axis=1)
  logits = module.apply({'params': params}, encoder_input_tokens=encoder_tokens,
                        decoder_input_tokens=decoder_tokens)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return jnp.take_along_axis(log_probs, hyps[:, :, None], axis=-1)[:, :, 0]


def score_hypotheses(module, model_config, params, prompt, hyps, lengths, config):
  """[h] length-penalised teacher-forced scores of hypotheses (tokens [h, n], lengths [h])
  continuing one unpadded `prompt`, by the full forward pass."""
  hyps, lengths = jnp.asarray(hyps, jnp.int32), jnp.asarray(lengths, jnp.int32)
  prompt = jnp.asarray(prompt, jnp.int32)
  if model_config.family == 'decoder':
    score_fn = jax.jit(lambda p, prompt, x: _decoder_log_probs(
        module, p, prompt, x, config.prefix_lm))
  else:
    score_fn = jax.jit(lambda p, prompt, x: _encoder_decoder_log_probs(
        module, p, prompt, x, config.decoder_start_id))
  chunks = [score_fn(params, prompt, hyps[i:i + _CHUNK])
            for i in range(0, hyps.shape[0], _CHUNK)]
  log_probs = jnp.concatenate(chunks, axis=0)
  within = jnp.arange(hyps.shape[1])[None, :] < lengths[:, None]
  return (jnp.sum(jnp.where(within, log_probs, 0.0), axis=1)
          / length_penalty(lengths, config.length_penalty))


def exhaustive_search(module, model_config, params, prompts, config) -> DecodeOutput:
  """`prompts`: a list of token lists (unpadded). Not jitted: an oracle, not a tool."""
  hyps, lengths = enumerate_hypotheses(model_config.vocab_size, config.max_new_tokens,
                                       config.eos_id, config.pad_id)
  tokens, out_lengths, scores = [], [], []
  for prompt in prompts:
    score = score_hypotheses(module, model_config, params, prompt, hyps, lengths, config)
    best_scores, best = jax.lax.top_k(score, config.beam_width)
    tokens.append(jnp.asarray(hyps)[best])
    out_lengths.append(jnp.asarray(lengths)[best])
    scores.append(best_scores)
  return DecodeOutput(jnp.stack(tokens), jnp.stack(out_lengths), jnp.stack(scores))
