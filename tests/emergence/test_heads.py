"""Attention by offset from the answer positions (research/emergence/heads.py) and its CLI."""
import csv
import dataclasses
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from research import models
from research.data import arithmetic
from research.emergence import heads
from research.models import attention
from tests.emergence import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_operand_offsets_point_at_the_operand_digits():
  """The position before answer digit i is 16 tokens after a's digit i and 7 after b's."""
  length = 5
  tokens = arithmetic.addition_tokens(length, 0, 3)
  width = tokens.shape[1]
  start = width - (2 * arithmetic.WIDTH + 1 + length + 1)  # the last problem's first token
  for row in tokens:
    problem = arithmetic.decode(row[start:])
    a, b = problem[:arithmetic.WIDTH], problem[arithmetic.WIDTH + 1:2 * arithmetic.WIDTH + 1]
    for i in range(length):
      q = width - length - 2 + i
      assert arithmetic.decode([row[q - heads.OPERAND_OFFSETS['a']]]) == a[i]
      assert arithmetic.decode([row[q - heads.OPERAND_OFFSETS['b']]]) == b[i]


def test_weights_are_the_models_own_attention(tiny_model, monkeypatch):
  """The sown weights, indexed by offset, equal softmax(q k^T * scale) recomputed here from
  the q and k that the model hands its attention implementation; sowing leaves the logits
  unchanged."""
  config, params, _ = tiny_model
  seen = []
  einsum = attention.ATTENTION_IMPLS['einsum']

  def recording(q, k, v, mask, bias, scale, lower_triangular=False):
    seen.append((np.asarray(q), np.asarray(k), np.asarray(mask), scale))
    return einsum(q, k, v, mask, bias, scale, lower_triangular)

  monkeypatch.setitem(attention.ATTENTION_IMPLS, 'einsum', recording)
  cfg = dataclasses.replace(config, attention_impl='einsum')
  length, n_items, max_offset = 3, 5, 18
  weights, accuracy = heads.attention_by_offset(cfg, params, length=length, n_items=n_items,
                                                max_offset=max_offset)
  assert weights.shape == (config.num_layers, config.num_heads, max_offset + 1)
  assert accuracy.shape == (length,) and np.all((accuracy >= 0) & (accuracy <= 1))
  assert len(seen) == config.num_layers
  width = arithmetic.addition_tokens(length, 0, n_items).shape[1]
  queries = np.arange(width - length - 2, width - 2)
  for layer, (q, k, mask, scale) in enumerate(seen):
    logits = np.einsum('bqhd,bkhd->bhqk', q, k) * scale
    logits = np.where(mask, logits, -np.inf)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    for o in (0, 7, 16, max_offset):
      expected = np.mean([probs[:, :, qi, qi - o] for qi in queries], axis=(0, 1))
      np.testing.assert_allclose(weights[layer, :, o], expected, rtol=1e-5, atol=1e-7)
  assert np.all(weights.sum(-1) <= 1 + 1e-6)

  tokens = jnp.asarray(arithmetic.addition_tokens(length, 0, n_items))
  kwargs = dict(decoder_input_tokens=tokens, decoder_segment_ids=jnp.ones_like(tokens),
                decoder_causal_attention=jnp.zeros_like(tokens))
  module = models.build(cfg)
  plain = module.apply({'params': params}, **kwargs)
  sown, state = module.apply({'params': params}, **kwargs, mutable=['intermediates'])
  np.testing.assert_array_equal(np.asarray(plain), np.asarray(sown))
  assert 'attention_probs' in state['intermediates']['decoder']['layers_0']['attn']


def test_describe_heads_names_the_operand_offsets():
  w = np.zeros((1, 2, 19))
  w[0, 0, 16], w[0, 0, 3] = 0.9, 0.1
  w[0, 1, 7] = 1.0
  lines = heads.describe_heads(w)
  assert lines[0].startswith('layer 0 head 0: a_i 0.90 b_i 0.00  most: 16 back 0.90, 3 back 0.10')
  assert lines[1].startswith('layer 0 head 1: a_i 0.00 b_i 1.00  most: 7 back 1.00')


def test_only_decoders_and_offsets_inside_the_item(tiny_model):
  config, params, _ = tiny_model
  with pytest.raises(ValueError, match='reads decoder-only models'):
    heads.attention_by_offset(dataclasses.replace(config, family='encoder_decoder'), params)
  with pytest.raises(ValueError, match='reaches before the first token'):
    heads.attention_by_offset(config, params, length=1, n_items=1, max_offset=200)


def test_entry_point_over_a_sweep_directory(tiny_model, tmp_path):
  config, _, snaps = tiny_model
  sweep = tmp_path / 'sweep'
  helpers.write_run(str(sweep / 'n1_s0'), config, {40: snaps[40], 120: snaps[120]}, n_params=1)
  helpers.write_run(str(sweep / 'unfinished'), config, {40: snaps[40]}, n_params=2,
                    completed=False)
  script = os.path.join(REPO, 'experiments', 'attention_offsets.py')
  out = tmp_path / 'offsets.csv'
  ok = subprocess.run([sys.executable, script, f'--sweep_dir={sweep}', '--steps=all',
                       '--length=2', '--n_items=4', f'--out={out}'],
                      capture_output=True, text=True, timeout=600)
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert 'skipped unfinished: unfinished' in ok.stderr
  assert 'n1_s0 step 120: per-digit accuracy at L=2' in ok.stdout
  assert 'layer 1 head 1: a_i' in ok.stdout
  with open(out) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2 * config.num_layers * config.num_heads * 19
  assert {r['step'] for r in rows} == {'40', '120'}
  state = sweep / 'n1_s0' / 'checkpoints' / '40' / 'state'
  for dirpath, _, files in os.walk(state):  # one unreadable checkpoint: named and skipped
    for name in files:
      with open(os.path.join(dirpath, name), 'wb') as fh:
        fh.write(b'garbage')
  part = subprocess.run([sys.executable, script, f'--sweep_dir={sweep}', '--steps=all',
                         '--length=2', '--n_items=4'], capture_output=True, text=True,
                        timeout=600)
  assert part.returncode == 0, part.stderr[-2000:]
  assert 'n1_s0: checkpoint 40 unreadable' in part.stderr
  assert 'step 120' in part.stdout and 'step 40' not in part.stdout
  bad = subprocess.run([sys.executable, script, f'--sweep_dir={sweep}', '--runs=nothing'],
                       capture_output=True, text=True, timeout=120)
  assert bad.returncode == 1
  assert 'no usable run' in bad.stderr.strip().splitlines()[-1]
