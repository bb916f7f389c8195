"""Where a model's attention heads look when it writes an answer digit.

An addition item is `a+b` then the answer, each operand WIDTH digits and every number least
significant digit first, so the position that predicts answer digit i (the token before it)
sits OPERAND_OFFSETS['a'] = 2 * WIDTH tokens after a's digit i and OPERAND_OFFSETS['b'] =
WIDTH - 1 after b's, for every i and L. A model that adds has, in its first layer, heads that
put their weight on those two offsets. A run on the loss plateau does not: its heads are
spread, or have found one offset and not the other (README, emergence probe). One operand
digit alone says almost nothing about an answer digit, so neither head is rewarded until the
other exists.

`attention_by_offset` reads the weights from the model's own attention layers (they sow them
into the 'intermediates' collection when it is mutable), so it holds for any position scheme,
head layout and attention implementation.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from research import models
from research.data import arithmetic

OPERAND_OFFSETS = {'a': 2 * arithmetic.WIDTH, 'b': arithmetic.WIDTH - 1}


def _layer_probs(state) -> list[np.ndarray]:
  """[batch, heads, q, k] weights of each self-attention layer, in layer order."""
  layers = state['intermediates']['decoder']
  names = sorted((n for n in layers if n.startswith('layers_')), key=lambda n: int(n[7:]))
  return [np.asarray(layers[n]['attn']['attention_probs'][0]) for n in names]


def attention_by_offset(config: models.TransformerConfig, params, *, length: int = 8,
                        n_items: int = 64, max_offset: int = 2 * arithmetic.WIDTH + 2
                        ) -> tuple[np.ndarray, np.ndarray]:
  """(weights [layers, heads, max_offset + 1], per-digit accuracy [length]).

  weights[l, h, o]: the mean attention weight that head h of layer l gives the token o
  positions back, from the positions that predict the answer digits of the last problem of
  the first `n_items` eval items of L-digit addition (`arithmetic.addition_tokens`), averaged
  over items and answer digits. accuracy[i]: how often the argmax at the position predicting
  answer digit i is that digit (teacher-forced, the same pass).
  """
  if config.family != 'decoder':
    raise ValueError(f'attention_by_offset reads decoder-only models, got {config.family!r}')
  tokens = arithmetic.addition_tokens(length, 0, n_items)
  width = tokens.shape[1]
  queries = np.arange(width - length - 2, width - 2)  # predict answer digits 0..L-1
  offsets = np.arange(max_offset + 1)
  if queries[0] < max_offset:
    raise ValueError(f'max_offset {max_offset} reaches before the first token')
  tokens_j = jnp.asarray(tokens)
  logits, state = models.build(config).apply(
      {'params': params}, decoder_input_tokens=tokens_j,
      decoder_segment_ids=jnp.ones_like(tokens_j),
      decoder_positions=jnp.broadcast_to(jnp.arange(width, dtype=jnp.int32), tokens.shape),
      decoder_causal_attention=jnp.zeros_like(tokens_j), mutable=['intermediates'])
  weights = np.stack([
      p[:, :, queries[:, None], queries[:, None] - offsets[None]].mean(axis=(0, 2))
      for p in _layer_probs(state)])
  accuracy = (np.asarray(logits).argmax(-1)[:, queries] == tokens[:, queries + 1]).mean(0)
  return weights, accuracy


def describe_heads(weights: np.ndarray, top: int = 2) -> list[str]:
  """One line per (layer, head): its weights on the two operand offsets, then its `top`
  most-weighted offsets."""
  lines = []
  for layer, heads in enumerate(weights):
    for h, w in enumerate(heads):
      best = np.argsort(-w)[:top]
      lines.append(f'layer {layer} head {h}: '
                   + ' '.join(f'{k}_i {w[o]:.2f}' for k, o in OPERAND_OFFSETS.items())
                   + '  most: ' + ', '.join(f'{o} back {w[o]:.2f}' for o in best))
  return lines
