"""Interpolated modified Kneser-Ney: normalization, a hand-computed bigram model, and a slow
per-word implementation of Chen & Goodman (1998, sec. 3) as the reference.

No KenLM here: `pip install kenlm` installs only its query module, and estimating needs its
`lmplz` binary; the reference below is written from the paper instead, independently of
research/baselines/ngram.py (dicts of tuples, one word at a time)."""
import collections
import fractions
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from research.baselines import ngram

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ReferenceKN:
  """Chen & Goodman (1998) straight from the formulas: p(w | h) of order k is
  [max(c(hw) - D(c(hw)), 0) + sum_v D(c(hv)) * p(w | h')] / sum_v c(hv), with c the raw
  count at the top order and the number of distinct left neighbours below; an unseen
  context passes p(w | h') through; below order 1 lies 1 / V."""

  def __init__(self, docs, order, vocab):
    self.order, self.vocab, bos = order, vocab, vocab
    grams = collections.Counter()  # (k-gram tuple) -> occurrences at a predicted position
    for doc in docs:
      padded = [bos] * (order - 1) + list(doc)
      for i in range(order - 1, len(padded)):
        for k in range(1, order + 1):
          grams[tuple(padded[i - k + 1:i + 1])] += 1
    self.counts = {}
    for k in range(1, order + 1):
      if k == order:
        self.counts[k] = {g: c for g, c in grams.items() if len(g) == k}
      else:
        left = collections.defaultdict(set)
        for g in grams:
          if len(g) == k + 1:
            left[g[1:]].add(g[0])
        self.counts[k] = {g: len(s) for g, s in left.items()}
    self.d = {}
    for k, counts in self.counts.items():
      n = [sum(1 for c in counts.values() if c == r) for r in (1, 2, 3, 4)]
      # The library's convention where the paper's ratio n_{r+1}/n_r has n_r = 0 (no count
      # equals r): the ratio counts as 0; each D_r is then kept within [0, r].
      y = n[0] / (n[0] + 2 * n[1]) if n[0] + 2 * n[1] else 0.0
      ratios = [n[r] / n[r - 1] if n[r - 1] else 0.0 for r in (1, 2, 3)]
      self.d[k] = tuple(min(max(r - (r + 1) * y * q, 0.0), r)
                        for r, q in zip((1, 2, 3), ratios))

  def discount(self, k, c):
    return 0.0 if c == 0 else self.d[k][min(c, 3) - 1]

  def prob(self, k, h, w):
    if k == 0:
      return 1.0 / self.vocab
    lower = self.prob(k - 1, h[1:], w)
    counts = self.counts[k]
    follow = [counts.get(h + (v,), 0) for v in range(self.vocab)]
    total = sum(follow)
    if total == 0:
      return lower
    gamma = sum(self.discount(k, c) for c in follow)
    c = counts.get(h + (w,), 0)
    return (max(c - self.discount(k, c), 0.0) + gamma * lower) / total

  def log_prob_doc(self, doc):
    padded = [self.vocab] * (self.order - 1) + list(doc)
    return [math.log(self.prob(self.order, tuple(padded[i - self.order + 1:i]), padded[i]))
            for i in range(self.order - 1, len(padded))]


# The hand-computed fixture: symbols a=0, b=1, $=2 (end of document), < the begin context.
A, B, END = 0, 1, 2
HAND_DOCS = [[A, A, A, A, A, B, END], [A, B, B, B, A, B, END]]


def test_hand_computed_bigram_model():
  # Order 2 on "aaaaab$" and "abbbab$" (each after one '<'):
  # bigram counts  <a 2, aa 4, ab 3, bb 2, ba 1, b$ 2   -> n1=1 n2=3 n3=1 n4=1
  #   Y = 1/(1+2*3) = 1/7; D1 = 1 - 2Y*3/1 = 1/7; D2 = 2 - 3Y*1/3 = 13/7;
  #   D3+ = 3 - 4Y*1/1 = 17/7
  # unigram continuations  a: {<,a,b} 3, b: {a,b} 2, $: {b} 1, total 6 -> n1=n2=n3=1, n4=0
  #   Y = 1/3; D1 = 1 - 2Y = 1/3; D2 = 2 - 3Y = 1; D3+ = 3 - 4Y*0 = 3
  #   gamma = 1/3 + 1 + 3 = 13/3
  #   p(a) = (3 - 3 + 13/3 * 1/3) / 6 = 13/54
  #   p(b) = (2 - 1 + 13/9) / 6 = 22/54;  p($) = (1 - 1/3 + 13/9) / 6 = 19/54  (sum 1)
  # contexts: '<' total 2, gamma = D2 = 13/7; 'a' total 7, gamma = 2 D3+ = 34/7;
  #           'b' total 5, gamma = 2 D2 + D1 = 27/7
  #   p(a|<) = (2 - 13/7 + 13/7 * 13/54) / 2 = (54/378 + 169/378) / 2 = 223/756
  #   p(b|a) = (3 - 17/7 + 34/7 * 22/54) / 7 = (216/378 + 748/378) / 7 = 482/1323
  #   p($|b) = (2 - 13/7 + 27/7 * 19/54) / 5 = (54/378 + 513/378) / 5 = 3/10
  #   p($|a) = (0 + 34/7 * 19/54) / 7 = 323/1323              (unseen after a)
  #   p(a|x) for a context x never seen = p(a) = 13/54        (backs off entirely)
  F = fractions.Fraction
  model = ngram.KneserNeyLM.fit([np.array(d) for d in HAND_DOCS], order=2, vocab_size=3)
  assert model.tables[1].discounts == pytest.approx((1 / 7, 13 / 7, 17 / 7), rel=1e-12)
  assert model.tables[0].discounts == pytest.approx((1 / 3, 1, 3), rel=1e-12)
  expected = [F(223, 756), F(482, 1323), F(3, 10)]  # "ab$"
  got = np.exp(model.sequence_log_probs(np.array([A, B, END])))
  np.testing.assert_allclose(got, [float(x) for x in expected], rtol=1e-12)
  ref = ReferenceKN(HAND_DOCS, 2, 3)
  np.testing.assert_allclose(np.exp(ref.log_prob_doc([A, B, END])),
                             [float(x) for x in expected], rtol=1e-12)
  # After a: p(a|a) = (4 - 17/7 + 34/7 * 13/54) / 7 = (594/378 + 442/378) / 7 = 518/1323,
  # with p(b|a) = 482/1323 and p($|a) = 323/1323 (sum 1323/1323).
  np.testing.assert_allclose(model.distribution([A]), [518 / 1323, 482 / 1323, 323 / 1323],
                             rtol=1e-12)
  # After b: p(a|b) = (1 - 1/7 + 27/7 * 13/54) / 5 = 675/1890 = 5/14,
  # p(b|b) = (2 - 13/7 + 27/7 * 22/54) / 5 = 648/1890 = 12/35, p($|b) = 3/10 (sum 1).
  np.testing.assert_allclose(model.distribution([B]), [5 / 14, 12 / 35, 3 / 10], rtol=1e-12)
  # A context never seen ('$' precedes nothing) backs off to the unigrams entirely.
  np.testing.assert_allclose(model.distribution([END]), [13 / 54, 22 / 54, 19 / 54],
                             rtol=1e-12)
  # Perplexity of "ab$": (p1 p2 p3)^(-1/3), a reference number to 1e-6 relative.
  pp = float(expected[0] * expected[1] * expected[2]) ** (-1 / 3)
  nll, count = model.evaluate([np.array([A, B, END])])
  assert count == 3
  assert math.exp(nll / count) == pytest.approx(pp, rel=1e-6)


def test_unseen_context_backs_off_to_the_lower_order():
  # Order 3 on the same documents: the context (b, $) is unseen, so is the bigram context
  # '$', and the unigram continuation counts come from the same bigram types as above
  # (a: 3, b: 2, $: 1), so p(. | b $) is the hand-computed unigram distribution.
  model = ngram.KneserNeyLM.fit([np.array(d) for d in HAND_DOCS], order=3, vocab_size=3)
  np.testing.assert_allclose(model.distribution([B, END]), [13 / 54, 22 / 54, 19 / 54],
                             rtol=1e-12)


def _markov_docs(rng, n_docs, vocab):
  """Documents from a sparse random Markov chain over vocab - 1 symbols, ended by vocab - 1."""
  trans = rng.dirichlet(np.full(vocab - 1, 0.3), size=vocab - 1)
  # The upper half of the symbols follows only one or two symbols each, so that the lower
  # orders' continuation counts include 1s, 2s and 3s and their discounts are not degenerate.
  half = (vocab - 1) // 2
  for j in range(half, vocab - 1):
    keep = trans[[j - half, (j - half + 1) % half], j].copy()
    trans[:, j] = 0.0
    trans[[j - half, (j - half + 1) % half], j] = keep
  trans /= trans.sum(axis=1, keepdims=True)
  docs = []
  for _ in range(n_docs):
    x, doc = int(rng.integers(half)), []
    for _ in range(int(rng.integers(3, 40))):
      doc.append(x)
      x = int(rng.choice(vocab - 1, p=trans[x]))
    docs.append(doc + [vocab - 1])
  return docs


@pytest.mark.parametrize('order', [1, 2, 3, 4, 5])
def test_matches_the_slow_reference_on_a_fixture(order):
  rng = np.random.default_rng(order)
  vocab = 13
  train, test = _markov_docs(rng, 60, vocab), _markov_docs(rng, 8, vocab)
  test.append([11, 10, 3, 2, 9, 1, 0, 12])  # contexts the chain rarely or never made
  ref = ReferenceKN(train, order, vocab)
  model = ngram.KneserNeyLM.fit([np.array(d) for d in train], order, vocab)
  for k in range(1, order + 1):
    np.testing.assert_allclose(model.tables[k - 1].discounts, ref.d[k], rtol=1e-12)
  want = np.concatenate([ref.log_prob_doc(d) for d in test])
  got = np.concatenate([model.sequence_log_probs(np.array(d)) for d in test])
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
  nll, count = model.evaluate([np.array(d) for d in test])
  assert count == len(want)
  assert math.exp(nll / count) == pytest.approx(math.exp(-want.mean()), rel=1e-6)


TEXT = ('def add(a, b):\n    return a + b\n\n\nclass Point:\n    """A point."""\n\n'
        '    def __init__(self, x, y):\n        self.x, self.y = x, y\n')


@pytest.mark.parametrize('order', [1, 2, 3, 4, 5, 6, 7])
def test_every_context_sums_to_one(order):
  model = ngram.KneserNeyLM.fit(ngram.byte_documents([TEXT, TEXT[::-1], 'x = 1\n']), order)
  contexts = [b'', b'def', b'    ', b'self.', b'zzzzz', b'\xff\xfe\x00', b'return a + ',
              b'a, b', b'\n\n\n', b'Q' + b'self.'[:order]]
  for ctx in contexts:
    p = model.distribution(list(ctx))
    assert p.shape == (ngram.BYTE_VOCAB,)
    assert abs(p.sum() - 1.0) < 1e-9, (ctx, p.sum())
    assert (p > 0).all()
  # The end of a document follows a context that ended one in training.
  nl = model.distribution(list(b'x = 1\n'))
  assert nl[ngram.EOS_ID] > 1.0 / ngram.BYTE_VOCAB or order == 1


def test_chunks_restart_from_the_begin_context():
  docs = [np.array(d) for d in HAND_DOCS]
  model = ngram.KneserNeyLM.fit(docs, order=3, vocab_size=3)
  nll, count = model.evaluate(docs, chunk=3)
  pieces = [d[s:s + 3] for d in docs for s in range(0, len(d), 3)]
  assert count == sum(map(len, pieces)) == 14
  assert nll == pytest.approx(-sum(model.sequence_log_probs(p).sum() for p in pieces), rel=1e-12)
  whole, _ = model.evaluate(docs)
  assert whole != pytest.approx(nll)


def test_discounts_follow_chen_and_goodman():
  y = 10 / (10 + 2 * 4)
  assert ngram.discounts(10, 4, 2, 1) == pytest.approx(
      (1 - 2 * y * 4 / 10, 2 - 3 * y * 2 / 4, 3 - 4 * y * 1 / 2))
  # Degenerate count-of-counts stay in [0, r], so distributions stay normalized.
  for coc in [(4, 0, 0, 0), (0, 0, 0, 3), (1, 9, 0, 0), (0, 0, 0, 0)]:
    d = ngram.discounts(*coc)
    assert all(0 <= x <= r for r, x in zip((1, 2, 3), d)), (coc, d)


def test_bad_library_input():
  with pytest.raises(ValueError, match='max_order'):
    ngram.KneserNeyLM.fit([np.array([1, 2])], 0)
  with pytest.raises(ValueError, match='empty train split'):
    ngram.KneserNeyLM.fit([np.array([], np.int64)], 3)
  with pytest.raises(ValueError, match='out of'):
    ngram.KneserNeyLM.fit([np.array([1, 300])], 2)
  model = ngram.KneserNeyLM.fit([np.array([1, 2, 3])], 2)
  with pytest.raises(ValueError, match='contexts must be in'):
    model.log_probs(np.array([[ngram.BYTE_VOCAB + 1]]), np.array([1]))
  with pytest.raises(ValueError, match='targets must be in'):
    model.log_probs(np.array([[1]]), np.array([ngram.BYTE_VOCAB]))


def _cli(tmp_path, *args):
  env = dict(os.environ, PYTHONPATH=ROOT, TFDS_DATA_DIR=str(tmp_path / 'tfds'))
  return subprocess.run([sys.executable, '-m', 'research.baselines.ngram', *args],
                        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def _corpus(tmp_path, texts):
  corpus = tmp_path / 'corpus'
  corpus.mkdir()
  for i, t in enumerate(texts):
    (corpus / f'f{i}.txt').write_text(t)
  return f'text_files:{corpus}'


def test_command_writes_the_table(tmp_path):
  name = _corpus(tmp_path, [TEXT * (i + 1) for i in range(6)])
  proc = _cli(tmp_path, '--max_order=3', f'--dataset={name}', '--out=ngram.json')
  assert proc.returncode == 0, proc.stderr
  table = json.loads((tmp_path / 'ngram.json').read_text())
  assert [r['order'] for r in table['orders']] == [1, 2, 3]
  assert all(r['bytes_scored'] == table['orders'][0]['bytes_scored'] for r in table['orders'])
  nats = [r['nats_per_byte'] for r in table['orders']]
  assert nats[0] > nats[1] > nats[2] > 0
  for r in table['orders']:
    assert r['bits_per_byte'] == pytest.approx(r['nats_per_byte'] / math.log(2))
  assert [p.name for p in tmp_path.iterdir() if p.name.startswith('ngram')] == ['ngram.json']


@pytest.mark.parametrize('args, words', [
    (['--max_order=0'], '--max_order must be in [1, 7], got 0'),
    (['--max_order=8'], '--max_order must be in [1, 7], got 8'),
    (['--min_order=4', '--max_order=3'], '--min_order must be in [1, --max_order=3], got 4'),
    (['--dataset=text_files:/nonexistent/corpus'], '/nonexistent/corpus'),
    (['--dataset=no_such_dataset'], "'no_such_dataset'"),
])
def test_bad_command_input_fails_in_one_line(tmp_path, args, words):
  proc = _cli(tmp_path, *args, '--out=ngram.json')
  assert proc.returncode != 0
  lines = proc.stderr.strip().splitlines()
  assert words in lines[-1] and 'error' in lines[-1], proc.stderr
  assert not (tmp_path / 'ngram.json').exists()


def test_empty_train_split_fails_in_one_line(tmp_path):
  # Files without text: each document is empty, so nothing is left to count.
  name = _corpus(tmp_path, [''] * 4)
  proc = _cli(tmp_path, f'--dataset={name}', '--out=ngram.json')
  assert proc.returncode != 0
  assert 'empty' in proc.stderr.strip().splitlines()[-1], proc.stderr
  assert not (tmp_path / 'ngram.json').exists()
