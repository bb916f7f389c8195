r"""Near-dedup quality against Jaccard similarity: the LSH candidate probability
1 - (1 - J^r)^b of the default layout, and the measured rate at which pairs of generated
documents of known Jaccard similarity are grouped (docs/figures/near_dedup_curve.png).

  python benchmarks/near_dedup_curve.py --output=docs/figures/near_dedup_curve.png
"""
import os

from absl import flags
import numpy as np

from research import cli

_OUTPUT = flags.DEFINE_string('output', 'docs/figures/near_dedup_curve.png', 'PNG path.')
_PAIRS = flags.DEFINE_integer('pairs_per_point', 100, 'Generated pairs per similarity.')


def _pair(rng, target, n=120, k=5):
  """Two documents of `n` made-up words whose k-shingle Jaccard is about `target`: a
  block inside the text replaced by fresh words (m words break m + k - 1 shingles)."""
  words = [f'w{x:x}' for x in rng.choice(2**40, size=n, replace=False)]
  s = n - k + 1
  m = max(1, int(round(s * (1 - target) / (1 + target) - k + 1)))
  start = int(rng.integers(k, n - m - k))
  fresh = [f'v{x:x}' for x in rng.choice(2**40, size=m, replace=False)]
  return ' '.join(words), ' '.join(words[:start] + fresh + words[start + m:])


PROG = 'near_dedup_curve.py'


def main(argv):
  del argv
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from research.data.cleaning import dedup  # pylint: disable=g-import-not-at-top
  config = dedup.NearDedupConfig()
  b, r = dedup.NearDedupIndex(config).bands_rows
  rng = np.random.default_rng(0)
  targets = np.arange(0.5, 1.0, 0.025)
  xs, ys = [], []
  for t in targets:
    js, hits = [], []
    for _ in range(_PAIRS.value):
      a, v = _pair(rng, t)
      index = dedup.NearDedupIndex(config)
      index.add('a', dedup.signature(a, config))
      hits.append(index.add('v', dedup.signature(v, config)) == 'a')
      js.append(dedup.jaccard(dedup.shingles(a, 5), dedup.shingles(v, 5)))
    xs.append(np.mean(js))
    ys.append(np.mean(hits))
    print(f'J {xs[-1]:.3f}  grouped {ys[-1]:.2f}')
  grid = np.linspace(0.4, 1, 200)
  fig, ax = plt.subplots(figsize=(6, 3.6))
  ax.plot(grid, 1 - (1 - grid**r)**b, label=f'LSH candidate, {b} bands x {r} rows')
  ax.plot(xs, ys, 'o', label=f'grouped (candidate and estimate >= {config.threshold})')
  ax.axvline(config.threshold, color='gray', ls=':')
  ax.set_xlabel('Jaccard similarity of 5-word shingles')
  ax.set_ylabel('probability')
  ax.set_title(f'MinHash-LSH near dedup, {config.num_perm} permutations')
  ax.legend(loc='upper left', fontsize=8)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
  fig.savefig(_OUTPUT.value + '.tmp.png', dpi=110)
  os.replace(_OUTPUT.value + '.tmp.png', _OUTPUT.value)


if __name__ == '__main__':
  cli.run(main, PROG)
