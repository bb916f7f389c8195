"""Exact and near deduplication: recall and precision of MinHash-LSH on a generated set of
documents whose Jaccard similarity is known exactly; the settings' validation."""
import numpy as np
import pytest

from research.data.cleaning import dedup
from research.data.cleaning.rules import RuleError

CONFIG = dedup.NearDedupConfig()  # the defaults: 5-word shingles, 256 permutations, 0.8
MARGIN = 0.1  # pairs are generated at least this far from the threshold on either side


def _words(rng, n):
  """n distinct made-up words (no accidental shared shingles between documents)."""
  return [f'w{x:x}' for x in rng.choice(2**40, size=n, replace=False)]


def _variant(rng, base, target):
  """`base` with a block of words replaced by fresh ones, the block's length chosen so the
  shingle-set Jaccard similarity is close to `target` (the exact value is computed)."""
  n, k = len(base), CONFIG.shingle_size
  s = n - k + 1
  # Replacing m contiguous words inside the text breaks m + k - 1 shingles:
  # J = (s - m - k + 1) / (s + m + k - 1)  ->  m = s (1 - J) / (1 + J) - k + 1.
  m = max(1, int(round(s * (1 - target) / (1 + target) - k + 1)))
  start = int(rng.integers(k, n - m - k))  # inside, away from both ends
  return base[:start] + _words(rng, m) + base[start + m:]


def _generated_set(seed=0, pairs=600, length=120):
  """`pairs` (base, variant) pairs, half with J in [0.9, 1), half in (0.5, 0.7]."""
  rng = np.random.default_rng(seed)
  docs, truth = [], []
  for i in range(pairs):
    base = _words(rng, length)
    high = i % 2 == 0
    target = rng.uniform(0.9, 0.99) if high else rng.uniform(0.5, 0.68)
    variant = _variant(rng, base, target)
    a, b = ' '.join(base), ' '.join(variant)
    j = dedup.jaccard(dedup.shingles(a, CONFIG.shingle_size),
                      dedup.shingles(b, CONFIG.shingle_size))
    docs += [(f'{i}a', a), (f'{i}b', b)]
    truth.append(j)
  return docs, np.array(truth)


def test_near_dedup_recall_above_and_precision_below_the_threshold():
  docs, truth = _generated_set()
  assert len(docs) >= 1000
  above = truth >= CONFIG.threshold + MARGIN
  below = truth <= CONFIG.threshold - MARGIN
  assert above.sum() >= 250 and below.sum() >= 250 and (above | below).all()
  index = dedup.NearDedupIndex(CONFIG)
  grouped_with = {}
  for key, text in docs:
    grouped_with[key] = index.add(key, dedup.signature(text, CONFIG))
  # Every base comes first and has nothing like it before: none is grouped.
  assert all(grouped_with[f'{i}a'] is None for i in range(len(truth)))
  found = np.array([grouped_with[f'{i}b'] == f'{i}a' for i in range(len(truth))])
  wrong = [k for k, v in grouped_with.items() if v is not None and v != k[:-1] + 'a']
  assert not wrong  # never grouped with an unrelated document
  recall = found[above].mean()
  precision = found[above].sum() / found.sum()
  false_positive_rate = found[below].mean()
  assert recall >= 0.95, recall
  assert precision >= 0.95, precision
  assert false_positive_rate <= 0.05, false_positive_rate


def test_the_variant_generator_hits_its_targets():
  rng = np.random.default_rng(1)
  base = _words(rng, 200)
  for target in (0.6, 0.8, 0.95):
    v = _variant(rng, base, target)
    j = dedup.jaccard(dedup.shingles(' '.join(base), 5), dedup.shingles(' '.join(v), 5))
    assert abs(j - target) < 0.02, (target, j)


def test_the_signature_estimates_jaccard():
  rng = np.random.default_rng(2)
  base = _words(rng, 300)
  v = _variant(rng, base, 0.7)
  a, b = ' '.join(base), ' '.join(v)
  j = dedup.jaccard(dedup.shingles(a, 5), dedup.shingles(b, 5))
  est = np.mean(dedup.signature(a, CONFIG) == dedup.signature(b, CONFIG))
  # 256 permutations: standard error sqrt(J (1 - J) / 256) ~ 0.03; allow four.
  assert abs(est - j) < 0.12, (est, j)


def test_the_first_of_a_cluster_is_kept_and_later_copies_join_it():
  rng = np.random.default_rng(3)
  base = _words(rng, 100)
  index = dedup.NearDedupIndex(CONFIG)
  texts = {'a': ' '.join(base), 'b': ' '.join(_words(rng, 100)),
           'c': ' '.join(base[:-1] + ['tail']), 'd': ' '.join(base)}
  got = {k: index.add(k, dedup.signature(t, CONFIG)) for k, t in texts.items()}
  assert got == {'a': None, 'b': None, 'c': 'a', 'd': 'a'}


def test_exact_hash_is_of_the_bytes():
  assert dedup.exact_hash('a b') == dedup.exact_hash('a b')
  assert dedup.exact_hash('a b') != dedup.exact_hash('a  b')
  assert len(dedup.exact_hash('')) == 64


def test_shingles():
  assert dedup.shingles('a b c d', 2) == {b'a b', b'b c', b'c d'}
  assert dedup.shingles('a b', 5) == {b'a b'}


def test_explicit_bands_and_rows_are_used():
  assert dedup.NearDedupIndex(dedup.NearDedupConfig(bands=16, rows=8)).bands_rows == (16, 8)
  assert dedup.NearDedupIndex(CONFIG).bands_rows == (17, 15)


@pytest.mark.parametrize('kwargs, message', [
    ({'threshold': 1.2}, 'near_dedup.threshold must be in (0, 1), got 1.2'),
    ({'threshold': 0}, 'near_dedup.threshold must be in (0, 1), got 0'),
    ({'num_perm': 1}, 'near_dedup.num_perm must be an integer in [2, 4096], got 1'),
    ({'shingle_size': 0}, 'near_dedup.shingle_size must be an integer >= 1, got 0'),
    ({'bands': 4}, 'set together'),
    ({'bands': 40, 'rows': 8}, 'bands * rows = 320 exceeds num_perm = 256'),
])
def test_bad_settings_fail_with_one_line(kwargs, message):
  with pytest.raises(RuleError) as e:
    dedup.NearDedupConfig(**kwargs)
  assert message in str(e.value).splitlines()[0]
