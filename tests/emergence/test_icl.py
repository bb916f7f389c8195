"""The ICL and induction-head measurements (research/emergence/icl.py): each number on
inputs whose answer is known, and the command on a run directory."""
import dataclasses
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest

from research import models
from research.data import tokenizers
from research.emergence import icl

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ATTN_ONLY = models.TransformerConfig(family='decoder', vocab_size=384, d_model=16,
                                     num_layers=2, num_heads=2, d_ff=16, max_length=64,
                                     attention_only=True)


def test_icl_positions_are_olssons_50th_and_500th_token_scaled():
  assert icl.icl_positions(512) == (49, 499)
  assert icl.icl_positions(128) == (11, 124)


def test_icl_score_is_late_minus_early_window_mean():
  loss = np.full(128, 3.0)
  loss[9:14] = [4.0, 4.0, 5.0, 4.0, 4.0]   # mean 4.2 around 11
  loss[122:127] = 2.0                      # mean 2.0 around 124
  assert icl.icl_score(loss) == pytest.approx(2.0 - 4.2)


def test_repeated_sequences_repeat_printable_bytes():
  tok = tokenizers.ByteTokenizer()
  seqs = icl.repeated_sequences(5, 16, 0, tok)
  assert seqs.shape == (5, 32)
  np.testing.assert_array_equal(seqs[:, :16], seqs[:, 16:])
  text = tok.decode(seqs[0, :16].tolist())
  assert len(text) == 16 and all(32 <= ord(c) < 127 for c in text)
  assert not np.array_equal(seqs[0], seqs[1])


def test_a_subword_run_repeats_random_ordinary_pieces(tmp_path):
  texts = ['def f(x):\n    return x + 1\n' * 20, 'class A:\n    pass\n' * 20,
           'import os\nprint(os.getcwd())\n' * 20]
  path = tokenizers.train_sentencepiece(texts, str(tmp_path / 'sp'), vocab_size=400)
  tok = tokenizers.SentencePieceTokenizer(path)
  seqs = icl.repeated_sequences(50, 20, 0, tok)
  lo, hi = tok.ordinary_range
  assert seqs.min() >= 3 and seqs.max() < hi  # no pad, eos or unk; no sentinel
  np.testing.assert_array_equal(seqs[:, :20], seqs[:, 20:])
  assert len(np.unique(seqs)) > 40


def _fake_forward(half, attend_to_prefix_match: bool, perfect_second_copy: bool, vocab=384):
  """A stand-in for the model: attention of every query on one key, log-probs that are
  uniform, or exact on the second copy."""
  def forward(config, params, tokens, segment_ids=None, positions=None):
    del params, segment_ids, positions
    tokens = np.asarray(tokens)
    n, length = tokens.shape
    logp = np.full((n, length, vocab), -np.log(vocab))
    if perfect_second_copy:
      for t in range(half, length - 1):
        logp[:, t] = -1e9
        logp[np.arange(n), t, tokens[:, t + 1]] = 0.0
    probs = []
    for _ in range(config.num_layers):
      p = np.zeros((n, config.num_heads, length, length))
      for q in range(length):
        k = q - half + 1 if (attend_to_prefix_match and q >= half) else 0
        p[:, 1, q, k] = 1.0  # head 1 is the induction head; head 0 looks at token 0
        p[:, 0, q, 0] = 1.0
      probs.append(p)
    return logp, probs
  return forward


def test_prefix_matching_reads_the_token_after_the_earlier_occurrence(monkeypatch):
  half = 8
  tokens = icl.repeated_sequences(3, half, 1, tokenizers.ByteTokenizer())
  monkeypatch.setattr(icl, '_forward', _fake_forward(half, True, True))
  stats = icl.induction_stats(ATTN_ONLY, None, tokens)
  np.testing.assert_allclose(stats['prefix_matching'], [[0.0, 1.0], [0.0, 1.0]])
  assert stats['loss_first_copy'] == pytest.approx(np.log(384))
  assert stats['loss_second_copy'] == pytest.approx(0.0, abs=1e-9)
  monkeypatch.setattr(icl, '_forward', _fake_forward(half, False, False))
  stats = icl.induction_stats(ATTN_ONLY, None, tokens)
  np.testing.assert_allclose(stats['prefix_matching'], 0.0)
  assert stats['loss_second_copy'] == pytest.approx(np.log(384))


def _params_with_ov(ov_by_head, d=16, vocab=384, seed=0):
  """Random embeddings; value = identity per head, out = the wanted OV map."""
  cfg = dataclasses.replace(ATTN_ONLY, num_layers=1, num_heads=len(ov_by_head))
  params = nn.meta.unbox(models.build(cfg).init(
      jax.random.PRNGKey(seed), decoder_input_tokens=np.ones((1, 1), np.int32))['params'])
  params = jax.tree.map(np.asarray, params)
  dh = cfg.dims_per_head
  value = np.zeros((d, cfg.num_heads, dh))
  out = np.zeros((cfg.num_heads, dh, d))
  for h, ov in enumerate(ov_by_head):  # OV = V_h O_h with V_h = [I_dh; 0]: O_h = ov[:dh]
    value[:dh, h, :] = np.eye(dh)
    out[h] = ov[:dh]
  params['decoder']['layers_0']['attn']['value']['kernel'] = value
  params['decoder']['layers_0']['attn']['out']['kernel'] = out
  params['token_embed']['embedding'] = np.random.default_rng(seed).normal(size=(vocab, d))
  return cfg, params


def test_copying_score_is_one_for_a_copying_head_and_minus_one_for_its_negation():
  d = 16
  keep = np.zeros((d, d))
  keep[:8, :8] = np.eye(8)  # the head's own 8 dimensions, copied
  rotate = np.zeros((d, d))  # a 90-degree rotation within the head's dimensions
  for i in range(0, 8, 2):
    rotate[i, i + 1], rotate[i + 1, i] = 1.0, -1.0
  cfg, params = _params_with_ov([keep, -keep])
  ids = np.arange(3, 259)
  scores = icl.copying_scores(cfg, params, ids)
  np.testing.assert_allclose(scores, [[1.0, -1.0]], atol=1e-9)
  # E^T E is symmetric positive definite, so OV = I gives 1 for any embeddings; a rotation
  # composed with it is neither copying nor anti-copying: strictly between.
  cfg, params = _params_with_ov([rotate, keep])
  scores = icl.copying_scores(cfg, params, ids)
  assert -1.0 < scores[0, 0] < 1.0 and scores[0, 1] == pytest.approx(1.0)


def test_loss_by_position_averages_within_segments(monkeypatch):
  vocab = 384

  def forward(config, params, tokens, segment_ids=None, positions=None):
    del config, params, segment_ids
    # loss = position + 1 nats at each token: log p(target) = -(pos + 1)
    logp = np.full(tokens.shape + (vocab,), -50.0)
    logp[..., :] = -(np.asarray(positions)[..., None] + 1.0)
    return logp, []
  monkeypatch.setattr(icl, '_forward', forward)
  seg = np.array([[1, 1, 1, 2, 2, 0]])
  pos = np.array([[0, 1, 2, 0, 1, 0]])
  batch = {'decoder_input_tokens': np.zeros((1, 6), np.int32),
           'decoder_target_tokens': np.ones((1, 6), np.int32),
           'decoder_segment_ids': seg, 'decoder_positions': pos,
           'decoder_loss_weights': (seg > 0).astype(np.int32)}
  loss, count = icl.loss_by_position(ATTN_ONLY, None, [batch, batch])
  np.testing.assert_allclose(loss[:3], [1.0, 2.0, 3.0])
  np.testing.assert_array_equal(count[:4], [4, 4, 2, 0])


def test_rise_step_is_the_first_halfway_checkpoint():
  steps = [0, 100, 200, 300, 400]
  assert icl.rise_step(steps, [0.0, 0.1, 0.2, 0.9, 1.0]) == 300
  assert icl.rise_step(steps, [0.0, -0.1, -0.6, -0.9, -1.0]) == 200  # a falling ICL score
  assert icl.rise_step(steps, [0.5] * 5) is None
  assert icl.rise_step(steps, [0.01, 0.02, 0.015, 0.03, 0.02], min_change=0.1) is None


def _write_run(run_dir, config, params_by_step):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  os.makedirs(run_dir)
  with open(os.path.join(run_dir, 'run_info.json'), 'w') as f:
    json.dump({'architecture': dataclasses.asdict(config), 'batch_size': 4,
               'feature_lengths': {'targets': config.max_length}}, f)
  with open(os.path.join(run_dir, 'config.gin'), 'w') as f:
    f.write('# the operative config: no tokenizer bound, so bytes\n')
  checkpointer = ocp.StandardCheckpointer()
  for step, params in params_by_step.items():
    checkpointer.save(os.path.join(run_dir, 'checkpoints', str(step), 'state'),
                      {'step': np.int32(step), 'params': params})
  checkpointer.wait_until_finished()


def test_the_command_measures_every_checkpoint_and_writes_its_tables(tmp_path):
  init = lambda seed: nn.meta.unbox(models.build(ATTN_ONLY).init(
      jax.random.PRNGKey(seed), decoder_input_tokens=np.ones((1, 1), np.int32))['params'])
  run = str(tmp_path / 'two_layers')
  _write_run(run, ATTN_ONLY, {0: init(0), 50: init(1)})
  out = str(tmp_path / 'report')
  proc = subprocess.run(
      [sys.executable, '-m', 'research.emergence.icl', f'--run_dirs={run}', f'--out={out}',
       '--eval_batches=2', '--repeats=4', '--half=16'],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  import pandas as pd  # pylint: disable=g-import-not-at-top
  table = pd.read_csv(os.path.join(out, 'icl.csv'))
  assert table['step'].tolist() == [0, 50]
  assert table['tokens'].tolist() == [0, 50 * 4 * 64]
  # A random init predicts nothing from context: both copies cost about log(vocab).
  assert np.all(np.abs(table['loss_first_copy'] - np.log(384)) < 0.2)
  heads = pd.read_csv(os.path.join(out, 'heads.csv'))
  assert len(heads) == 2 * 2 * 2  # checkpoints x layers x heads
  summary = json.load(open(os.path.join(out, 'icl_summary.json')))
  assert summary['two_layers']['checkpoint_interval'] == 50
  assert os.path.getsize(os.path.join(out, 'icl.png')) > 10_000
  assert 'two_layers: step 50' in proc.stdout


def test_the_command_refuses_a_missing_run_dir(tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'research.emergence.icl', f'--run_dirs={tmp_path}/nope',
       f'--out={tmp_path}/out'], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].endswith("is not a directory")
  assert not os.path.exists(tmp_path / 'out')
