"""k-shot prompts for the probe's arithmetic tasks, and accuracy against k (Brown et al.
2020, "Language Models are Few-Shot Learners", Fig. 1.2: accuracy against the number of
in-context examples, per model size).

`k_shot_prompt(task, k, seed, query)` writes exactly k solved demonstrations of the query's
task and length, pairwise distinct and none of them the query itself, then the query, in
the probe's format (research/data/arithmetic.py):

    k = 2, query 12 + 54:   '30000000+14000000' '44;' '21000000+50000000' '71;'
                            '21000000+45000000'        target '66;'

The demonstrations are a pure function of (task, length, k, seed, query), so every model of
a sweep sees the same prompts (paired comparisons), and the k-shot prompt of an eval item
keeps that item's query, answer and multiple-choice options (`k_shot_items`): only the
number of demonstrations changes along a curve. `k_shot_curve` scores a model over those
items for each k with the probe's own cache and metrics (research/emergence/cache.py,
metrics.py), so every metric of the probe gets a curve.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Sequence

import numpy as np

from research.data import arithmetic

MAX_K = 16  # the curves' range: 0..16 demonstrations
# Distinct problems of one task and length: addition with L = 1 has 55 (a + b = c < 10),
# the smallest space; a query needs k + 1 of them.
_MAX_DRAWS_PER_SHOT = 1000
_KSHOT_NAMESPACE = 11  # mixed into every draw: never the eval set's or training's streams


@dataclasses.dataclass(frozen=True)
class KShotPrompt:
  prompt: str  # the demonstrations, then the query's question
  target: str  # the query's answer and the terminator
  shots: tuple[arithmetic.Problem, ...]
  query: arithmetic.Problem


def _rng(task: str, length: int, k: int, seed: int, query: arithmetic.Problem):
  query_code = zlib.crc32(query.question.encode())  # stable across processes
  return np.random.default_rng([_KSHOT_NAMESPACE, seed, arithmetic._TASK_CODES[task],  # pylint: disable=protected-access
                                length, k, query_code])


def k_shot_prompt(task: str, k: int, seed: int, query: arithmetic.Problem) -> KShotPrompt:
  """Exactly k distinct solved problems of the query's task and length, none equal to the
  query, then the query (the probe's format)."""
  if task not in ('add', 'mul'):
    raise ValueError(f'unknown task {task!r}; known: add, mul')
  if query.task != task:
    raise ValueError(f'the query is a {query.task!r} problem, not {task!r}')
  if not isinstance(k, (int, np.integer)) or k < 0:
    raise ValueError(f'k must be a non-negative integer, got {k!r}')
  rng = _rng(task, query.length, int(k), seed, query)
  seen = {query.question}
  shots = []
  for _ in range(_MAX_DRAWS_PER_SHOT * (k + 1)):
    if len(shots) == k:
      break
    problem = arithmetic.make_problem(rng, task, query.length)
    if problem.question not in seen:
      seen.add(problem.question)
      shots.append(problem)
  if len(shots) < k:
    raise ValueError(f'k={k}: found only {len(shots)} distinct {task} problems of length '
                     f'{query.length} besides the query')
  prompt = ''.join(p.question + p.answer + arithmetic.TERMINATOR for p in shots)
  return KShotPrompt(prompt + query.question, query.answer + arithmetic.TERMINATOR,
                     tuple(shots), query)


def query_of(item: arithmetic.Item) -> arithmetic.Problem:
  """The query problem of a probe eval item (the question that ends its prompt)."""
  width = len(arithmetic.digits(0, arithmetic.WIDTH)) * 2 + 1 if item.task == 'add' else 5
  return arithmetic.Problem(item.task, item.length, item.prompt[-width:], item.target[:-1])


def k_shot_items(items: Sequence[arithmetic.Item], k: int, seed: int = 0
                 ) -> list[arithmetic.Item]:
  """The eval items with k demonstrations: the same queries, answers and options."""
  out = []
  for item in items:
    built = k_shot_prompt(item.task, k, seed, query_of(item))
    out.append(dataclasses.replace(item, prompt=built.prompt))
  return out


def k_shot_curve(config, params, items: Sequence[arithmetic.Item],
                 ks: Sequence[int] = tuple(range(MAX_K + 1)), seed: int = 0,
                 with_mc: bool = True):
  """One row per (k, task, length): the mean of every probe metric over the items."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from research.emergence import cache as cache_lib  # pylint: disable=g-import-not-at-top
  from research.emergence import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  rows = []
  for k in ks:
    cache = cache_lib.score_model(config, params, k_shot_items(items, k, seed),
                                  with_mc=with_mc)
    frame = pd.DataFrame(metrics_lib.item_metrics(cache))
    frame['task'], frame['length'] = cache['task'], cache['length']
    for (task, length), group in frame.groupby(['task', 'length']):
      row = {'k': int(k), 'task': task, 'length': int(length), 'n_items': len(group)}
      row.update(group.drop(columns=['task', 'length']).mean(numeric_only=True).to_dict())
      rows.append(row)
  return pd.DataFrame(rows)


def run_curves(run_dirs: Sequence[str], items: Sequence[arithmetic.Item],
               ks: Sequence[int] = tuple(range(MAX_K + 1)), seed: int = 0, log=print):
  """`k_shot_curve` of the latest checkpoint of each run, with its run_id and n_params."""
  import os  # pylint: disable=g-import-not-at-top
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from research import runs  # pylint: disable=g-import-not-at-top
  longest = max(ks) + 1
  tables = []
  for run_dir in run_dirs:
    config = runs.model_config(run_dir)
    if config.family != 'decoder' or config.vocab_size != arithmetic.VOCAB_SIZE:
      raise ValueError(f'{run_dir} is not an arithmetic decoder (family={config.family}, '
                       f'vocab_size={config.vocab_size})')
    need = arithmetic.max_sequence_length(longest - 1, max(it.length for it in items))
    if need > config.max_length:
      raise ValueError(f'{run_dir}: k={max(ks)} prompts need {need} tokens, the model '
                       f'context is max_length={config.max_length}')
    params, step = runs.load_params(run_dir, config=config)
    log(f'kshot: scoring {os.path.basename(run_dir)} (step {step}) at k = '
        f'{", ".join(map(str, ks))}')
    table = k_shot_curve(config, params, items, ks, seed)
    table.insert(0, 'run_id', os.path.basename(os.path.normpath(run_dir)))
    table.insert(1, 'n_params', int(runs.read_run_info(run_dir).get('n_params', 0)))
    tables.append(table)
  return pd.concat(tables, ignore_index=True)


# (column, axis label) of the figure's panels: the probe's discontinuous and continuous
# metrics side by side (Schaeffer et al. 2023).
FIGURE_METRICS = (('exact_match', 'exact match'), ('one_minus_ted_over_L', '1 - TED / L'),
                  ('per_token_accuracy', 'answer-digit accuracy'),
                  ('answer_logp', 'log p per answer digit'))


def k_shot_figure(table, path: str) -> str:
  """Every metric against k, one line per model size (colour) and L (line style)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from research import runs  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(FIGURE_METRICS), figsize=(4.2 * len(FIGURE_METRICS), 3.6))
  sizes = sorted(table.n_params.unique())
  colours = plt.cm.viridis([0.15 + 0.7 * i / max(len(sizes) - 1, 1) for i in range(len(sizes))])
  styles = ['-', '--', ':', '-.']
  adds = table[table.task == 'add']
  for ax, (column, label) in zip(axes, FIGURE_METRICS):
    for colour, n in zip(colours, sizes):
      for style, (length, group) in zip(styles, adds[adds.n_params == n].groupby('length')):
        ax.plot(group.k, group[column], style, color=colour, marker='o', ms=3,
                label=f'{n:.1e} params, L={length}')
    ax.set_xscale('symlog', linthresh=1)
    ax.set_xlabel('demonstrations k')
    ax.set_ylabel(label)
  axes[0].legend(fontsize=7)
  fig.suptitle('Addition against the number of in-context demonstrations')
  fig.tight_layout()
  import io  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=110)
  plt.close(fig)
  runs.write_bytes_atomic(path, buffer.getvalue())
  return path
