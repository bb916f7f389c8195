"""Repetition penalty > 1 lowers the repeat rate of a trained tiny model.

A 2-layer decoder learns, in a few hundred optax steps, a corpus where every
sequence repeats a short random pattern, so greedy decoding repeats almost
every token. The CTRL penalty must bring the repeat rate down. The training is
self-contained (no trainer code), deterministic, and takes a few seconds.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research import decoding
from research import models

VOCAB, LENGTH, FIRST_TOKEN = 16, 24, 2  # ids 0 and 1 are pad and eos


def repetitive_corpus(rng: np.random.Generator, count: int):
  """[count, LENGTH] sequences that repeat a random pattern of 2-4 distinct tokens."""
  rows = []
  for _ in range(count):
    period = rng.integers(2, 5)
    pattern = rng.choice(np.arange(FIRST_TOKEN, VOCAB), size=period, replace=False)
    rows.append(np.resize(pattern, LENGTH))
  return np.asarray(rows, np.int32)


def repeat_rate(prompts, tokens, lengths):
  """Fraction of generated tokens already seen earlier in the row (prompt included)."""
  repeats = total = 0
  for prompt, row, n in zip(prompts, np.asarray(tokens), np.asarray(lengths)):
    seen = set(prompt)
    for token in row[:n].tolist():
      repeats += token in seen
      total += 1
      seen.add(token)
  return repeats / total


@pytest.fixture(scope='module')
def trained():
  config = models.TransformerConfig(vocab_size=VOCAB, d_model=32, num_layers=2, num_heads=2,
                                    d_ff=64, max_length=LENGTH + 8, position='rope')
  module = models.build(config)
  corpus = repetitive_corpus(np.random.default_rng(0), 2048)
  params = jax.jit(module.init)(jax.random.PRNGKey(0),
                                decoder_input_tokens=jnp.asarray(corpus[:1]))['params']
  optimizer = optax.adam(3e-3)

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def train_step(params, opt_state, batch):
    def loss_fn(p):
      logits = module.apply({'params': p}, decoder_input_tokens=batch[:, :-1])
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state = optimizer.init(params)
  order = np.random.default_rng(1)
  for _ in range(300):
    batch = corpus[order.integers(0, len(corpus), 32)]
    params, opt_state, loss = train_step(params, opt_state, jnp.asarray(batch))
  return config, params, float(loss)


def test_repetition_penalty_lowers_the_repeat_rate(trained):
  config, params, loss = trained
  assert loss < 1.0, f'the tiny model did not learn the corpus (loss {loss:.2f})'
  prompts = [row[:6].tolist() for row in repetitive_corpus(np.random.default_rng(2), 16)]
  rates = {}
  for penalty in (1.0, 6.0):
    out = decoding.generate(config, params, prompts, decoding.DecodeConfig(
        max_new_tokens=8, repetition_penalty=penalty))
    rates[penalty] = repeat_rate(prompts, out.best, out.lengths[:, 0])
  print(rates)
  assert rates[1.0] > 0.9, rates  # trained: it continues the pattern
  assert rates[6.0] < rates[1.0] - 0.4, rates
