"""Evaluation on the held-out split: per-sequence sums on device, metrics on the host.

The eval stream depends on the data config only. The trainer asks its batch source for the
'eval' split with EVAL_SEED, never the run's seed, and reads it from its start at every
evaluation, so every run of a sweep, whatever its model seed, sees the same sequences in
the same order. That is what lets research/heldout.py pair two runs' final losses sequence
by sequence. Intermediate evaluations read the first `eval_batches` batches of that stream;
the final one reads `final_eval_batches`, and its per-sequence losses are saved.
"""
from typing import Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research import heldout
from research.models import losses
from research.train import step as step_lib
from research.train import tasks

EVAL_SEED = 0

# A row's fingerprint: sum_j t_j * m_j mod 2^32 over its target tokens t, with odd
# multipliers m_j = (2j + 1) * 0x9E3779B1 (Knuth's multiplicative-hashing constant, TAOCP
# vol. 3, sec. 6.4). Two runs compare fingerprints to know they evaluated the same rows.
_HASH_MULTIPLIER = 0x9E3779B1


def _fingerprint(targets):
  position = jnp.arange(targets.shape[-1], dtype=jnp.uint32)
  multipliers = (2 * position + 1) * jnp.uint32(_HASH_MULTIPLIER)
  return jnp.sum(targets.astype(jnp.uint32) * multipliers, axis=-1, dtype=jnp.uint32)


def make_eval_step(module: nn.Module, family: str, z_loss: float = 0.0):
  """The pure eval step: per-row arrays [batch] of summed loss (z-loss excluded), target
  weight, correct tokens, and the row's fingerprint."""
  features = tasks.FAMILY_FEATURES[family]
  row_sums = jax.vmap(lambda logits, targets, weights: losses.cross_entropy_loss(
      logits[None], targets[None], weights[None], z_loss))

  def eval_step(params, batch):
    logits = module.apply({'params': params}, **tasks.model_inputs(family, batch),
                          deterministic=True, rngs={'dropout': jax.random.PRNGKey(0)})
    targets, weights = batch[features.targets], batch[features.weights]
    loss_sum, z_sum, weight_sum = row_sums(logits, targets, weights)
    correct = jnp.sum((step_lib.first_argmax(logits) == targets)
                      * weights.astype(jnp.float32), axis=-1)
    return {'loss_sum': loss_sum - z_sum, 'weight_sum': weight_sum, 'correct': correct,
            'fingerprint': _fingerprint(targets)}
  return eval_step


def evaluate(step_fn: Callable[[dict], dict], source: Iterator[dict],
             num_batches: int) -> tuple[heldout.HeldOutLosses, float]:
  """(per-sequence losses, correct tokens) over the first `num_batches` batches of
  `source` (all of it, if the split holds fewer). step_fn(host batch) -> eval_step's
  outputs for the global batch."""
  never_prefix = getattr(source, 'may_have_prefix', True) is False
  outputs = []
  for _ in range(num_batches):
    batch = next(source, None)
    if batch is None:
      break
    outputs.append(step_fn(tasks.without_empty_prefix(batch, never_prefix)))
  # One transfer at the end, so the device runs ahead of the host's input pipeline.
  outputs = jax.device_get(outputs)

  def column(key, dtype):
    return np.concatenate([np.asarray(o[key], dtype).reshape(-1) for o in outputs]
                          ) if outputs else np.zeros((0,), dtype)
  rows = heldout.HeldOutLosses.from_rows(column('loss_sum', np.float64),
                                         column('weight_sum', np.float64),
                                         column('fingerprint', np.uint32))
  return rows, float(column('correct', np.float64).sum())


def metrics(rows: heldout.HeldOutLosses, correct: float) -> dict:
  """The eval columns of metrics.jsonl: token-weighted loss, its standard error over
  sequences (research/heldout.py), perplexity, accuracy, and how many sequences."""
  tokens = max(float(rows.tokens.sum()), 1.0)
  loss = float(rows.loss_sum.sum()) / tokens
  _, se = rows.mean_and_se()
  return {'eval_loss': loss, 'eval_perplexity': float(np.exp(min(loss, 80.0))),
          'eval_accuracy': correct / tokens, 'eval_loss_se': se,
          'eval_sequences': len(rows)}
