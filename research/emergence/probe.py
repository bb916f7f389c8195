"""Scores every run of a sweep: checkpoints -> caches -> emergence.csv and sharpness.csv.

A run directory (DESIGN.md) is usable when it has a readable run_info.json, the completion
marker and at least one restorable checkpoint; anything else is reported run by run and
skipped, never averaged in. Every checkpoint present (final and intermediate) is scored into
`<out>/cache/<run_id>/step_<step>.npz` (reused if present: the metrics are recomputed from it).

emergence.csv: one row per run x checkpoint x task x L x metric, with
  run_id, seed, n_params, n_params_nonembed, step, final, task, L, metric, value, n_items,
  successes, ci_low, ci_high     (Clopper-Pearson for 0/1 metrics, else empty)
sharpness.csv: per (task, L, metric) over the final checkpoints: onset index with a bootstrap
  interval over items and seeds, breakthroughness, linearity, and for exact match the paired
  difference A(exact_match) - A(1 - TED/L) with its interval.
"""
from __future__ import annotations

import dataclasses
import json
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
from research.emergence import sharpness
from research.train.metrics import write_atomic, write_json_atomic

COMPLETION_MARKER = 'COMPLETED'  # research.train.trainer.COMPLETION_MARKER (no train import)
BINARY_METRICS = ('exact_match', 'argmax_all_correct', 'mc_grade')


@dataclasses.dataclass
class Run:
  run_id: str
  path: str
  info: dict
  steps: list


def find_runs(sweep_dir: str) -> tuple[list[Run], list[tuple[str, str]]]:
  """(usable runs, [(run_id, why skipped)]): every subdirectory with a run_info.json or a
  checkpoints/ folder is a run."""
  usable, skipped = [], []
  if not os.path.isdir(sweep_dir):
    raise ValueError(f'--sweep_dir {sweep_dir!r} is not a directory')
  for name in sorted(os.listdir(sweep_dir)):
    path = os.path.join(sweep_dir, name)
    if not os.path.isdir(path) or not (os.path.exists(os.path.join(path, 'run_info.json'))
                                       or os.path.isdir(os.path.join(path, 'checkpoints'))):
      continue
    try:
      with open(os.path.join(path, 'run_info.json')) as f:
        info = json.load(f)
      arch = info['architecture']
    except (OSError, ValueError, KeyError) as e:
      skipped.append((name, f'corrupt run_info.json ({type(e).__name__}: {e})'))
      continue
    if arch.get('family') != 'decoder' or arch.get('vocab_size') != arithmetic.VOCAB_SIZE:
      skipped.append((name, f"not an arithmetic decoder (family={arch.get('family')}, "
                            f"vocab_size={arch.get('vocab_size')})"))
      continue
    if not os.path.exists(os.path.join(path, COMPLETION_MARKER)):
      skipped.append((name, 'unfinished (no completion marker)'))
      continue
    ckpt_dir = os.path.join(path, 'checkpoints')
    steps = sorted(int(d) for d in (os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else [])
                   if d.isdigit() and int(d) > 0)
    if not steps:
      skipped.append((name, 'no checkpoints after step 0'))
      continue
    usable.append(Run(name, path, info, steps))
  return usable, skipped


def load_params(run: Run, step: int):
  """Parameters of one checkpoint (orbax, restored without a target: plain arrays)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  state_dir = os.path.join(run.path, 'checkpoints', str(step), 'state')
  restored = ocp.StandardCheckpointer().restore(os.path.abspath(state_dir))
  params = restored['params'] if isinstance(restored, dict) else restored.params
  return params


def model_config(run: Run):
  from research import models  # pylint: disable=g-import-not-at-top
  return models.TransformerConfig(**run.info['architecture'])


def score_run(run: Run, items, out_dir: str, *, with_mc: bool = True,
              log=print) -> dict[int, dict]:
  """{step: cache} for every checkpoint of `run`; caches are written once and reused."""
  caches = {}
  for step in run.steps:
    path = os.path.join(out_dir, 'cache', run.run_id, f'step_{step}.npz')
    if os.path.exists(path):
      caches[step] = cache_lib.load(path)
      continue
    try:
      params = load_params(run, step)
    except Exception as e:  # pylint: disable=broad-except  # orbax raises many types
      log(f'probe: {run.run_id}: checkpoint {step} unreadable ({type(e).__name__}); skipped')
      continue
    caches[step] = cache_lib.score_model(model_config(run), params, items, with_mc=with_mc)
    cache_lib.save(path, caches[step])
  return caches


def rows_of(run: Run, step: int, final: bool, cache: dict) -> list[dict]:
  per_item = metrics_lib.item_metrics(cache)
  base = {'run_id': run.run_id, 'seed': run.info.get('seed'),
          'n_params': run.info.get('n_params'),
          'n_params_nonembed': run.info.get('n_params_nonembed'), 'step': step,
          'final': final}
  rows = []
  for task in np.unique(cache['task']):
    for length in np.unique(cache['length'][cache['task'] == task]):
      select = (cache['task'] == task) & (cache['length'] == length)
      for metric, values in per_item.items():
        v = values[select]
        v = v[np.isfinite(v)]
        if v.size == 0:
          continue
        row = dict(base, task=str(task), L=int(length), metric=metric,
                   value=float(np.mean(v)), n_items=int(v.size), successes=np.nan,
                   ci_low=np.nan, ci_high=np.nan)
        if metric in BINARY_METRICS:
          k = int(v.sum())
          low, high = sharpness.clopper_pearson(k, v.size)
          row.update(successes=k, ci_low=float(low), ci_high=float(high))
        rows.append(row)
      # Du et al. / the identity: exact match against the product of per-position accuracy
      rows.append(dict(base, task=str(task), L=int(length),
                       metric='product_position_accuracy',
                       value=_position_accuracy_product(cache, int(length), select),
                       n_items=int(select.sum()), successes=np.nan, ci_low=np.nan,
                       ci_high=np.nan))
  return rows


def per_item_finals(runs: Sequence[Run], caches: dict, task: str, length: int,
                    metric: str) -> tuple[list[float], list[np.ndarray]]:
  """(sorted sizes, one [seeds, items] array per size) of final-checkpoint item scores."""
  by_size: dict = {}
  for run in runs:
    if run.run_id not in caches or not caches[run.run_id]:
      continue
    cache = caches[run.run_id][max(caches[run.run_id])]
    select = (cache['task'] == task) & (cache['length'] == length)
    per_item = metrics_lib.item_metrics(cache)
    if metric not in per_item:  # e.g. mc_* when scored without multiple choice
      continue
    values = per_item[metric][select]
    by_size.setdefault(run.info['n_params'], []).append(values)
  sizes = sorted(by_size)
  return sizes, [np.stack(by_size[s]) for s in sizes]


def sharpness_table(runs, caches, num_samples: int = 1000, seed: int = 0) -> pd.DataFrame:
  rows = []
  metrics_to_score = ('exact_match', 'one_minus_ted_over_L', 'answer_logp',
                      'per_token_accuracy', 'brier', 'mc_grade', 'mc_brier')
  groups = [('add', L) for L in arithmetic.LENGTHS] + [('mul', arithmetic.MUL_LENGTH)]
  for task, length in groups:
    for metric in metrics_to_score:
      if task == 'mul' and metric.startswith('mc_'):
        continue
      sizes, arrays = per_item_finals(runs, caches, task, length, metric)
      if len(sizes) < 3:
        continue
      y = sharpness.curve(arrays)
      row = {'task': task, 'L': length, 'metric': metric, 'n_sizes': len(sizes),
             **sharpness.summarize(y)}
      boot = sharpness.bootstrap(arrays, num_samples=num_samples, seed=seed)
      row.update(onset_low=boot['low'], onset_high=boot['high'])
      if metric == 'exact_match':
        _, other = per_item_finals(runs, caches, task, length, 'one_minus_ted_over_L')
        diff = sharpness.bootstrap(arrays, num_samples=num_samples, seed=seed,
                                   paired_with=other)
        row.update(diff_vs_ted=diff['estimate'], diff_low=diff['low'],
                   diff_high=diff['high'])
      rows.append(row)
  return pd.DataFrame(rows)


def _position_accuracy_product(cache: dict, length: int, select=None) -> float:
  """Product over answer positions (digits and terminator) of teacher-forced argmax
  accuracy over the `select`ed items (all by default): the exact match the per-position
  accuracies predict (Du et al.)."""
  acc = metrics_lib.teacher_forced_scores(
      cache['logp_target'], cache['sum_p2'], cache['argmax'], cache['target'],
      cache['target_mask'])['correct']
  if select is not None:
    acc = acc[select]
  return float(np.prod(acc[:, :length + 1].mean(0)))


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


def resolution(runs: Sequence[Run], caches: dict, out_dir: str, *, small: int = 200,
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
  two agree (1.0 but for argmax ties). It keeps counts, not items (`_answer_counts`:
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
      big = _large_cache(run, step, length, large, out_dir)
      hits = metrics_lib.item_metrics(big)['exact_match']
      identity = float(np.mean(hits == _all_argmax_correct(big)))
      n_items, n_hits = hits.size, int(hits.sum())
      low, _ = sharpness.clopper_pearson(n_hits, n_items)
      predicted = _position_accuracy_product(big, length)
      needed = items_to_resolve(predicted, chance, alpha=0.025, power=SECOND_LOOK_POWER)
      if low <= chance and needed <= max_large and large < max_large:
        # One more look, sized once from the prediction (large x 4^k items, capped).
        n = large
        while n < max(needed, large + 1) and n < max_large:
          n = min(4 * n, max_large)
        counts = _answer_counts(run, step, length, n, out_dir, log=log)
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


def _all_argmax_correct(cache: dict) -> np.ndarray:
  """Per item: the teacher-forced argmax is the target at every answer position and the
  terminator (metrics.item_metrics' 'argmax_all_correct')."""
  return np.all(metrics_lib.teacher_forced_scores(
      cache['logp_target'], cache['sum_p2'], cache['argmax'], cache['target'],
      cache['target_mask'])['correct'], axis=1)


def _large_cache(run: Run, step: int, length: int, n: int, out_dir: str) -> dict:
  """The cache (teacher-forced pass and greedy decode) of the first `n` items of `add
  length`: the first look."""
  path = os.path.join(out_dir, 'cache', run.run_id, f'step_{step}_large{n}_L{length}.npz')
  if os.path.exists(path):
    return cache_lib.load(path)
  items = arithmetic.eval_items(n, lengths=[length], include_mul=False)
  params = nn.meta.unbox(load_params(run, step))
  big = cache_lib.score_model(model_config(run), params, items, with_mc=False)
  cache_lib.save(path, big)
  return big


COUNT_CHUNK = 65536  # items per chunk of the second look (about 20 MB of tokens)


def _answer_counts(run: Run, step: int, length: int, n: int, out_dir: str, *,
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
  config, params = model_config(run), nn.meta.unbox(load_params(run, step))
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


def acceptance(table: pd.DataFrame, sharp: pd.DataFrame, *, min_lengths: int = 4,
               min_hits: int = 10) -> dict:
  """The issue's checks on a probe's own output, each with the numbers behind it.

  onset: for every addition length L >= `min_lengths`, whether the onset index of exact
    match is below that of 1 - TED/L with the bootstrap interval of the difference below 0.
  product: Spearman correlation, over the (run, checkpoint, L) addition cells with at least
    `min_hits` exact-match hits, between exact match and the product of per-position
    teacher-forced accuracies; holds at >= 0.95.
  """
  from scipy import stats  # pylint: disable=g-import-not-at-top
  def pick(length, metric):
    if not len(sharp):
      return sharp
    return sharp[(sharp['task'] == 'add') & (sharp['L'] == length) & (sharp['metric'] == metric)]

  onset = []
  for length in [L for L in arithmetic.LENGTHS if L >= min_lengths]:
    row = pick(length, 'exact_match')
    if not len(row):  # sharpness_table scores a curve of 3 sizes or more
      onset.append({'L': length, 'holds': False,
                    'why': 'fewer than 3 model sizes, no curve to take an onset index of'})
      continue
    if not np.isfinite(row['diff_vs_ted'].iloc[0]):
      flat = []
      for m in ('exact_match', 'one_minus_ted_over_L'):
        index = pick(length, m)['onset_index']
        if not len(index) or not np.isfinite(index.iloc[0]):
          flat.append(m)
      why = (f"{' and '.join(flat)} {'is' if len(flat) == 1 else 'are'} the same at the "
             'smallest and the largest size: onset index undefined'
             ) if flat else 'onset difference undefined'
      onset.append({'L': length, 'holds': False, 'why': why})
      continue
    r = row.iloc[0]
    ted = pick(length, 'one_minus_ted_over_L')['onset_index']
    onset.append({'L': length, 'onset_exact_match': float(r['onset_index']),
                  'onset_one_minus_ted': float(ted.iloc[0]) if len(ted) else float('nan'),
                  'difference': float(r['diff_vs_ted']), 'low': float(r['diff_low']),
                  'high': float(r['diff_high']),
                  'holds': bool(r['diff_vs_ted'] < 0 and r['diff_high'] < 0)})
  keys = ['run_id', 'step', 'task', 'L']
  add = table[table['task'] == 'add']
  em = add[add['metric'] == 'exact_match'].set_index(keys)
  prod = add[add['metric'] == 'product_position_accuracy'].set_index(keys)['value']
  cells = em[em['successes'] >= min_hits].join(prod.rename('product'), how='inner')
  rho = (float(stats.spearmanr(cells['value'], cells['product']).statistic)
         if len(cells) >= 3 else float('nan'))
  return {'onset': onset,
          'product': {'spearman': rho, 'cells': int(len(cells)), 'min_hits': min_hits,
                      'holds': bool(rho >= 0.95)}}


def format_acceptance(result: dict) -> list[str]:
  lines = []
  for o in result['onset']:
    if 'difference' in o:
      lines.append(f"onset L={o['L']}: A(exact match) {o['onset_exact_match']:.3f} vs "
                   f"A(1-TED/L) {o['onset_one_minus_ted']:.3f}, difference "
                   f"{o['difference']:+.3f} [{o['low']:+.3f}, {o['high']:+.3f}]: "
                   f"{'holds' if o['holds'] else 'does not hold'}")
    else:
      lines.append(f"onset L={o['L']}: does not hold ({o['why']})")
  p = result['product']
  lines.append(f"exact match vs product of per-position accuracies: Spearman {p['spearman']:.3f}"
               f" over {p['cells']} cells with >= {p['min_hits']} hits: "
               f"{'holds' if p['holds'] else 'does not hold'}")
  if 'resolution' in result:
    r = result['resolution']
    lines.append(f"resolution: {r['above_chance']} of {r['zero_cells']} cells with 0/"
                 f"{r['small_n']} exact matches are above chance on up to {r['max_large_n']} "
                 f"items; {r['out_of_reach']} would need more than that")
  return lines


def probe(sweep_dir: str, out_dir: str, *, n_per_length: int = 200, with_mc: bool = True,
          bootstrap_samples: int = 1000, figures: bool = True, large_n_per_length: int = 0,
          max_large_n_per_length: int = 0, log=print) -> dict:
  """The whole probe; returns {'runs', 'skipped', 'csv', 'sharpness_csv', 'figures'}."""
  runs, skipped = find_runs(sweep_dir)
  for run_id, why in skipped:
    log(f'probe: skipped {run_id}: {why}')
  if not runs:
    raise ValueError(f'no usable runs in {sweep_dir} ({len(skipped)} skipped)')
  os.makedirs(out_dir, exist_ok=True)
  items = arithmetic.eval_items(n_per_length)
  caches, rows = {}, []
  for run in runs:
    log(f'probe: scoring {run.run_id} ({len(run.steps)} checkpoints)')
    caches[run.run_id] = score_run(run, items, out_dir, with_mc=with_mc, log=log)
    if not caches[run.run_id]:
      skipped.append((run.run_id, 'no readable checkpoint'))
      log(f'probe: skipped {run.run_id}: no readable checkpoint')
      continue
    final = max(caches[run.run_id], default=None)
    for step, cache in sorted(caches[run.run_id].items()):
      rows.extend(rows_of(run, step, step == final, cache))
  table = pd.DataFrame(rows)
  csv_path = os.path.join(out_dir, 'emergence.csv')
  write_atomic(csv_path, table.to_csv(index=False))
  sharp = sharpness_table(runs, caches, num_samples=bootstrap_samples)
  sharp_path = os.path.join(out_dir, 'sharpness.csv')
  write_atomic(sharp_path, sharp.to_csv(index=False))
  written = []
  if figures:
    from research.emergence import plots  # pylint: disable=g-import-not-at-top
    written = plots.all_figures(table, out_dir)
  write_json_atomic(os.path.join(out_dir, 'skipped.json'),
                    [{'run_id': r, 'why': w} for r, w in skipped])
  checks = acceptance(table, sharp)
  if large_n_per_length:
    resolved = resolution(runs, caches, out_dir, small=n_per_length, large=large_n_per_length,
                          max_large=max_large_n_per_length, log=log)
    write_atomic(os.path.join(out_dir, 'resolution.csv'), resolved.to_csv(index=False))
    if figures and len(resolved):
      from research.emergence import plots  # pylint: disable=g-import-not-at-top
      written.append(plots.save_figure(plots.resolution_figure(resolved),
                                       os.path.join(out_dir, 'resolution.png')))
    checks['resolution'] = {'zero_cells': int(len(resolved)),
                            'above_chance': int(resolved['above_chance'].sum()),
                            'small_n': n_per_length, 'large_n': large_n_per_length,
                            'max_large_n': max(max_large_n_per_length, large_n_per_length),
                            'out_of_reach': int(((resolved['items_needed'] > max(
                                max_large_n_per_length, large_n_per_length))
                                                 & ~resolved['above_chance']).sum())}
  for line in format_acceptance(checks):
    log(f'probe: {line}')
  write_json_atomic(os.path.join(out_dir, 'acceptance.json'), checks)
  return {'runs': [r.run_id for r in runs], 'skipped': skipped, 'csv': csv_path,
          'sharpness_csv': sharp_path, 'figures': written, 'acceptance': checks}
