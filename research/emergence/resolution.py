"""Schaeffer et al.'s resolution argument: cells with no exact match, scored again on more items.

A final (run, L) addition cell with no hit among the probe's first items is scored on many
more (the same first items, then more), and its Clopper-Pearson interval is set against
chance, 10^-L; where that is not enough, one more look is sized from the exact match its
per-position accuracies predict. Written as resolution.csv and summed up in the probe's
checks.
"""
from __future__ import annotations

import os
import re
import time
import zipfile
from typing import Sequence

import flax.linen as nn
import numpy as np
import pandas as pd
from scipy import stats

from research.data import arithmetic
from research.emergence import cache as cache_lib
from research.emergence import metrics as metrics_lib
from research.emergence import scoring
from research.emergence import sharpness
from research.emergence import tables

RESOLUTION_CSV = 'resolution.csv'


def items_to_resolve(rate: float, chance: float, *, alpha: float = 0.05,
                     power: float = 0.5) -> float:
  """The fewest eval items (on a 2% grid) at which a cell with true exact match `rate`
  puts its Clopper-Pearson lower bound (at level 1 - alpha) above `chance` with
  probability `power`; inf if `rate` is not above chance. The lower bound for k hits of n
  is above p0 exactly when P(Binomial(n, p0) >= k) < alpha / 2, so with k_min(n) the
  fewest such hits, the chance is P(Binomial(n, rate) >= k_min(n)). power = 0.5 is about
  "the expected hit count resolves it"."""
  if not rate > chance:
    return float('inf')
  n = np.unique(np.round(np.geomspace(10, 1e13, 1500)))
  k_min = stats.binom.isf(alpha / 2, n, chance) + 1
  resolved = stats.binom.sf(k_min - 1, n, rate) >= power
  return float(n[np.argmax(resolved)]) if resolved.any() else float('inf')


# The second look is sized for this chance of resolving a cell whose per-position
# accuracies predict its rate (at the two looks' Bonferroni level).
SECOND_LOOK_POWER = 0.9


def resolution(runs: Sequence[scoring.Run], caches: dict, out_dir: str, *, small: int = 200,
               large: int = 2000, max_large: int = 0, log=print) -> pd.DataFrame:
  """Schaeffer et al.'s resolution argument (their Fig. 4-5): every final (run, L) addition
  cell with no exact match among its first `small` eval items is scored again on `large`
  items (the eval set's first `small` items are the same ones), and its Clopper-Pearson
  interval is set against chance, 10^-L.

  With `max_large` > `large`, a cell whose lower bound is not above chance gets one more
  look, on large x 4^k items (capped at `max_large`), enough for the exact match its
  per-position accuracies predict (`predicted`) to be resolved, where that fits within
  `max_large` (`items_needed`: enough for a 90% chance of resolving that rate at the 97.5%
  level); its interval is then at 97.5% (Bonferroni over the two looks). The second
  look scores exact match from one teacher-forced pass, as "argmax correct at every answer
  position and the terminator", which is greedy exact match item for item (greedy emits
  the gold answer exactly when every teacher-forced argmax is gold) at a quarter of the
  cost of decoding; `identity` is the share of the first look's decoded items on which the
  two agree (1.0 but for argmax ties). It keeps counts, not items (`answer_counts`:
  streamed in chunks, saved after each, resumed after an interruption), so its size is
  bounded by time, not memory.
  `items_needed` says how far out of reach the others are. `small_hits` is greedy exact
  match on the first `small` items (0: that is why the cell is here), `large_hits` of the
  last look. One row per cell; the large caches and counts are kept beside the others and
  reused."""
  max_large = max(max_large, large)
  rows = []
  for run in runs:
    if not caches.get(run.run_id):
      continue
    step = max(caches[run.run_id])
    cache = caches[run.run_id][step]
    em = metrics_lib.item_metrics(cache)['exact_match']
    for length in arithmetic.LENGTHS:
      select = np.flatnonzero((cache['task'] == 'add') & (cache['length'] == length))[:small]
      if len(select) < small or em[select].sum() > 0:
        continue
      chance, looks = 10.0**-length, 1
      big = large_cache(run, step, length, large, out_dir)
      hits = metrics_lib.item_metrics(big)['exact_match']
      identity = float(np.mean(hits == all_argmax_correct(big)))
      n_items, n_hits = hits.size, int(hits.sum())
      low, _ = sharpness.clopper_pearson(n_hits, n_items)
      predicted = tables.position_accuracy_product(big, length)
      needed = items_to_resolve(predicted, chance, alpha=0.025, power=SECOND_LOOK_POWER)
      if low <= chance and needed <= max_large and large < max_large:
        # One more look, sized once from the prediction (large x 4^k items, capped).
        n = large
        while n < max(needed, large + 1) and n < max_large:
          n = min(4 * n, max_large)
        counts = answer_counts(run, step, length, n, out_dir, log=log)
        n_items, n_hits = int(counts['done']), int(counts['hits'])
        predicted = float(np.prod(counts['position_correct'] / n_items))
        needed = items_to_resolve(predicted, chance, alpha=0.025, power=SECOND_LOOK_POWER)
        looks = 2
      # Bonferroni over the looks: the second eval contains the first.
      low, high = sharpness.clopper_pearson(n_hits, n_items, alpha=0.05 / looks)
      row = {'run_id': run.run_id, 'n_params': run.info.get('n_params'), 'step': step,
             'L': length, 'small_n': small, 'small_hits': int(hits[:small].sum()),
             'large_n': n_items, 'large_hits': n_hits,
             'ci_low': float(low), 'ci_high': float(high), 'chance': chance,
             'above_chance': bool(low > chance), 'predicted': predicted,
             'items_needed': needed, 'looks': looks, 'identity': identity}
      log(f"probe: resolution {run.run_id} L={length}: 0/{small} -> {row['large_hits']}/"
          f"{row['large_n']}, Clopper-Pearson [{low:.2g}, {high:.2g}] vs chance "
          f"{chance:.0e}{' (above chance)' if row['above_chance'] else ''}; per-position "
          f"accuracies predict {predicted:.2g} (about {row['items_needed']:.3g} items)")
      rows.append(row)
  return pd.DataFrame(rows, columns=['run_id', 'n_params', 'step', 'L', 'small_n',
                                     'small_hits', 'large_n', 'large_hits', 'ci_low',
                                     'ci_high', 'chance', 'above_chance', 'predicted',
                                     'items_needed', 'looks', 'identity'])


def all_argmax_correct(cache: dict) -> np.ndarray:
  """Per item: the teacher-forced argmax is the target at every answer position and the
  terminator (metrics.item_metrics' 'argmax_all_correct')."""
  return np.all(metrics_lib.teacher_forced_scores(
      cache['logp_target'], cache['sum_p2'], cache['argmax'], cache['target'],
      cache['target_mask'])['correct'], axis=1)


def large_cache(run: scoring.Run, step: int, length: int, n: int, out_dir: str) -> dict:
  """The cache (teacher-forced pass and greedy decode) of the first `n` items of `add
  length`: the first look."""
  path = os.path.join(out_dir, 'cache', run.run_id, f'step_{step}_large{n}_L{length}.npz')
  if os.path.exists(path):
    return cache_lib.load(path)
  items = arithmetic.eval_items(n, lengths=[length], include_mul=False)
  params = nn.meta.unbox(scoring.load_params(run, step))
  big = cache_lib.score_model(scoring.model_config(run), params, items, with_mc=False)
  cache_lib.save(path, big)
  return big


COUNT_CHUNK = 65536  # items per chunk of the second look (about 20 MB of tokens)


def answer_counts(run: scoring.Run, step: int, length: int, n: int, out_dir: str, *,
                   chunk: int = COUNT_CHUNK, log=print) -> dict:
  """The second look, streamed: over the first `n` items of `add length`, the number of
  items whose teacher-forced argmax is the target at every answer position and the
  terminator (`hits`), and the number correct at each position (`position_correct`),
  counted chunk by chunk (arithmetic.addition_tokens -> cache.answer_correct), so memory
  stays flat at any `n`. The counts are saved after every chunk (written atomically); a
  rerun goes on from the last one (`done` items so far), and a larger look of the same cell
  from the largest count already made (the items are a prefix of one sequence). Progress
  is logged about every 30 s with the rate and the time left."""
  folder = os.path.join(out_dir, 'cache', run.run_id)
  path = os.path.join(folder, f'step_{step}_large{n}_L{length}_counts.npz')
  state = {'done': np.int64(0), 'hits': np.int64(0),
           'position_correct': np.zeros(length + 1, np.int64)}
  # Any earlier count of this cell, finished or not, covers a prefix of these items.
  pattern = re.compile(rf'step_{step}_large(\d+)_L{length}_counts\.npz$')
  for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
    if pattern.match(name):
      try:
        earlier = cache_lib.load(os.path.join(folder, name))
      except (OSError, ValueError, zipfile.BadZipFile) as e:
        log(f'probe: {run.run_id}: ignoring unreadable count {name} ({type(e).__name__})')
        continue
      if state['done'] < earlier['done'] <= n:
        state = earlier
  if state['done'] >= n:
    return state
  config, params = scoring.model_config(run), nn.meta.unbox(scoring.load_params(run, step))
  start, first, last_log = time.time(), int(state['done']), time.time()
  while state['done'] < n:
    lo = int(state['done'])
    hi = min(lo + chunk, n)
    correct = cache_lib.answer_correct(config, params,
                                       arithmetic.addition_tokens(length, lo, hi), length + 1)
    state = {'done': np.int64(hi), 'hits': state['hits'] + correct.all(1).sum(),
             'position_correct': state['position_correct'] + correct.sum(0),
             'version': np.int32(cache_lib.CACHE_VERSION)}
    cache_lib.save(path, state)
    if time.time() - last_log > 30 or hi == n:
      last_log = time.time()
      rate = (hi - first) / max(last_log - start, 1e-9)
      log(f'probe: resolution {run.run_id} L={length}: {hi:,}/{n:,} items, '
          f'{rate:,.0f} items/s, {int(state["hits"])} hits, {(n - hi) / rate:.0f} s left')
  return state


def summary(resolved: pd.DataFrame, *, small: int, large: int, max_large: int) -> dict:
  """The resolution study in the probe's checks: how many zero cells are above chance, and
  how many would need more items than the largest look."""
  max_large = max(max_large, large)
  return {'zero_cells': int(len(resolved)),
          'above_chance': int(resolved['above_chance'].sum()),
          'small_n': small, 'large_n': large, 'max_large_n': max_large,
          'out_of_reach': int(((resolved['items_needed'] > max_large)
                               & ~resolved['above_chance']).sum())}
