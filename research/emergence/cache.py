"""One cached output file per (model, checkpoint): everything the metrics need, nothing more.

`score_model(config, params, items)` runs, over the eval items,
  (1) one teacher-forced pass over prompt + target: log p(target), argmax and sum_v p_v^2 at
      each target position;
  (2) one greedy decode (research.decoding, temperature 0, eos = the terminator, at most
      L + 1 new tokens);
  (3) for multiple-choice items, the summed log-likelihood of each option's digits;
and returns a dict of numpy arrays that `save` / `load` write as one .npz. Metrics are
functions of this dict alone (metrics.item_metrics), so they can be recomputed at will.
"""
from __future__ import annotations

import functools
import os
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research import decoding
from research import models
from research.data import arithmetic

CACHE_VERSION = 1


def _right_pad(rows: Sequence[Sequence[int]], width: int) -> np.ndarray:
  out = np.zeros((len(rows), width), np.int32)
  for r, ids in enumerate(rows):
    out[r, :len(ids)] = ids
  return out


@functools.partial(jax.jit, static_argnums=0)
def _forward_stats(config, params, tokens_bs):
  """(log_softmax gathered at next tokens, argmax, sum p^2) for every position."""
  module = models.build(config)
  segments = (tokens_bs > 0).astype(jnp.int32)
  positions = jnp.cumsum(segments, axis=1) - 1
  logits = module.apply({'params': params}, decoder_input_tokens=tokens_bs,
                        decoder_segment_ids=segments,
                        decoder_positions=jnp.maximum(positions, 0),
                        decoder_causal_attention=jnp.zeros_like(tokens_bs))
  logp_bsv = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  next_bs = jnp.concatenate([tokens_bs[:, 1:], jnp.zeros_like(tokens_bs[:, :1])], 1)
  logp_next = jnp.take_along_axis(logp_bsv, next_bs[..., None], -1)[..., 0]
  return logp_next, jnp.argmax(logp_bsv, -1), jnp.sum(jnp.exp(2.0 * logp_bsv), -1)


def _batched(n: int, batch_size: int):
  for start in range(0, n, batch_size):
    yield start, min(start + batch_size, n)


def _forward_in_batches(config, params, sequences, batch_size):
  """Runs _forward_stats over right-padded sequences in fixed-shape batches."""
  tokens = _right_pad(sequences, max(len(s) for s in sequences))
  return list(_map_in_batches(lambda chunk: _forward_stats(config, params, chunk),
                              tokens, batch_size))


def _map_in_batches(fn, rows: np.ndarray, batch_size: int) -> tuple[np.ndarray, ...]:
  """fn (a tuple of arrays, or one array, with a leading batch axis) over `rows` in batches
  of exactly batch_size rows, so fn compiles once: the last batch is padded with copies of
  its first row, whose outputs are dropped. Returns fn's outputs concatenated over rows."""
  outs = []
  for lo, hi in _batched(len(rows), batch_size):
    chunk = rows[lo:hi]
    if hi - lo < batch_size:
      chunk = np.concatenate([chunk, np.repeat(chunk[:1], batch_size - (hi - lo), 0)])
    out = fn(chunk)
    outs.append([np.asarray(x)[:hi - lo] for x in (out if isinstance(out, tuple) else (out,))])
  return tuple(np.concatenate(parts) for parts in zip(*outs))


def teacher_forced(config, params, items, batch_size: int = 256) -> dict[str, np.ndarray]:
  width = max(len(it.target_ids) for it in items)
  sequences = [it.prompt_ids + it.target_ids for it in items]
  logp_next, argmax, sum_p2 = _forward_in_batches(config, params, sequences, batch_size)
  n = len(items)
  out = {k: np.zeros((n, width), dt) for k, dt in
         (('logp_target', np.float32), ('argmax', np.int32), ('sum_p2', np.float32),
          ('target', np.int32), ('target_mask', np.int8))}
  for i, it in enumerate(items):
    p, t = len(it.prompt_ids), len(it.target_ids)
    span = slice(p - 1, p - 1 + t)  # the positions whose next token is a target token
    out['logp_target'][i, :t] = logp_next[i, span]
    out['argmax'][i, :t] = argmax[i, span]
    out['sum_p2'][i, :t] = sum_p2[i, span]
    out['target'][i, :t] = it.target_ids
    out['target_mask'][i, :t] = 1
  out['version'] = np.array(CACHE_VERSION, np.int32)
  return out


@functools.partial(jax.jit, static_argnums=(0, 3))
def _answer_correct(config, params, tokens_bs, answer_len):
  """[b, answer_len] bool: the argmax is the next token at each of the last answer_len
  positions (rows of one length, no padding)."""
  module = models.build(config)
  b, s = tokens_bs.shape
  logits = module.apply({'params': params}, decoder_input_tokens=tokens_bs,
                        decoder_segment_ids=jnp.ones_like(tokens_bs),
                        decoder_positions=jnp.broadcast_to(jnp.arange(s), (b, s)),
                        decoder_causal_attention=jnp.zeros_like(tokens_bs))
  predicted = jnp.argmax(logits[:, s - answer_len - 1:s - 1], -1)
  return predicted == tokens_bs[:, s - answer_len:]


def answer_correct(config, params, tokens: np.ndarray, answer_len: int,
                   batch_size: int = 1024) -> np.ndarray:
  """`_answer_correct` over equal-length rows (arithmetic.addition_tokens) in fixed-shape
  batches: per row and answer position (digits, then the terminator), whether the
  teacher-forced argmax is the target. The same predictions as `teacher_forced`'s argmax
  (tests/emergence/test_probe.py), without the per-position arrays it keeps."""
  if not len(tokens):
    return np.zeros((0, answer_len), bool)
  correct, = _map_in_batches(lambda chunk: _answer_correct(config, params, chunk, answer_len),
                             tokens, batch_size)
  return correct


def greedy(config, params, items, batch_size: int = 256) -> np.ndarray:
  """[items, max L + 1] greedy continuations (pad after the terminator).

  One compiled shape for the whole eval set: prompts left-padded to the longest, batches of
  `batch_size` rows, max L + 1 new tokens; each item keeps its first L + 1 tokens (a row
  stops at its terminator, so extra steps never change what an item keeps).
  """
  width = max(len(it.target_ids) for it in items)
  prompt_width = max(len(it.prompt_ids) for it in items)
  decode_config = decoding.DecodeConfig(strategy='greedy', max_new_tokens=width,
                                        eos_id=arithmetic.TERMINATOR_ID,
                                        pad_id=arithmetic.PAD_ID)
  out = np.zeros((len(items), width), np.int32)
  rows = min(batch_size, len(items))
  for lo, hi in _batched(len(items), rows):
    prompts = [it.prompt_ids for it in items[lo:hi]]
    prompts += [prompts[0]] * (rows - len(prompts))
    result = decoding.generate(config, params,
                               decoding.pad_prompts(prompts, arithmetic.PAD_ID, prompt_width),
                               decode_config)
    out[lo:hi] = np.asarray(result.best)[:hi - lo]
  for i, it in enumerate(items):
    out[i, it.length + 1:] = arithmetic.PAD_ID
  return out


def multiple_choice(config, params, items, batch_size: int = 256
                    ) -> tuple[np.ndarray, np.ndarray]:
  """([items, 4] summed log p of each option's digits, [items] gold index; -1 if none)."""
  logp = np.zeros((len(items), 4), np.float32)
  gold = np.array([it.gold for it in items], np.int32)
  sequences, where = [], []
  for i, it in enumerate(items):
    for j, option in enumerate(it.options):
      sequences.append(it.prompt_ids + arithmetic.encode(option))
      where.append((i, j, len(it.prompt_ids), len(option)))
  if not sequences:
    return logp, gold
  logp_next, _, _ = _forward_in_batches(config, params, sequences, batch_size)
  for row, (i, j, p, t) in enumerate(where):
    logp[i, j] = logp_next[row, p - 1:p - 1 + t].astype(np.float64).sum()
  return logp, gold


def score_model(config: models.TransformerConfig, params, items, *,
                with_mc: bool = True, batch_size: int = 256) -> dict[str, np.ndarray]:
  """The cache dict of one model over `items` (arithmetic.Item list)."""
  params = nn.meta.unbox(params)
  cache = teacher_forced(config, params, items, batch_size)
  cache['generated'] = greedy(config, params, items, batch_size)
  if with_mc:
    cache['mc_logp'], cache['mc_gold'] = multiple_choice(config, params, items, batch_size)
  cache.update(
      item_id=np.array([it.item_id for it in items]),
      task=np.array([it.task for it in items]),
      length=np.array([it.length for it in items], np.int32),
      terminator=np.array(arithmetic.TERMINATOR_ID, np.int32))
  return cache


def save(path: str, cache: dict) -> None:
  """Writes atomically (a reader never sees half a file)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + '.tmp.npz'
  np.savez_compressed(tmp, **cache)
  os.replace(tmp, path)


def load(path: str) -> dict[str, np.ndarray]:
  with np.load(path, allow_pickle=False) as data:
    cache = {k: data[k] for k in data.files}
  if int(cache.get('version', -1)) != CACHE_VERSION:
    raise ValueError(f'{path}: cache version {cache.get("version")} != {CACHE_VERSION} '
                     '(delete it to score again)')
  return cache
