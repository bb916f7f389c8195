"""results.csv: one row per (run, eval step) of a sweep, the input of every scaling fit.

Read from each run directory's `run_info.json` and `metrics.jsonl` (docs/design.md), plus the
sweep's `sweep.json` for what the grid meant by the run (its IsoFLOP or token budget, size
name). Only finished runs (completion marker present) with a readable history are kept; every
other run is listed in the report with the reason, never averaged in silently.

Columns (besides those of docs/design.md): parameter counts by convention (`n_params` total,
`n_params_nonembed`, `n_params_embedding`), FLOPs by every convention of
research.models.accounting (`flops_6N`, `flops_6N_nonembed`, `flops_kaplan`,
`flops_chinchilla`; `flops` is the trainer's C = 6ND), `flop_budget` (IsoFLOP sweeps) and
`token_budget`, `final` (the row of the last step of the run), and `eval_loss_se` and
`eval_sequences`: the standard error of `eval_loss` over the held-out sequences, and how
many there were (research/heldout.py; the final row's come from the larger final eval).

`paired_differences` compares adjacent sizes at each budget on the same held-out sequences
(each run's `final_eval_losses.npz`): far less noisy than the difference of two losses,
whose per-sequence spread the two runs share.
"""
import csv
import dataclasses
import io
import json
import math
import os
from typing import Iterable, Optional

from research import heldout
from research import runs as runs_lib

COMPLETION_MARKER = runs_lib.COMPLETION_MARKER
PLAN_FILE = 'sweep.json'
FLOP_CONVENTIONS = ('6N', '6N_nonembed', 'kaplan', 'chinchilla')

COLUMNS = (
    'run_id', 'family', 'objective', 'size', 'seed', 'n_params', 'n_params_nonembed',
    'n_params_embedding', 'd_model', 'num_layers', 'num_heads', 'd_ff', 'vocab_size',
    'batch_size', 'seq_len', 'train_steps', 'flop_budget', 'token_budget', 'step', 'tokens',
    'flops', *[f'flops_{c}' for c in FLOP_CONVENTIONS], 'train_loss', 'eval_loss',
    'eval_accuracy', 'learning_rate', 'final', 'eval_loss_se', 'eval_sequences')


@dataclasses.dataclass
class Report:
  rows: list
  runs: list      # run_ids kept
  excluded: dict  # run_id -> why it was left out
  pairs: list = dataclasses.field(default_factory=list)  # paired_differences()

  def lines(self) -> list[str]:
    out = [f'results: {len(self.rows)} rows from {len(self.runs)} finished runs'
           + (f'; {len(self.excluded)} left out:' if self.excluded else '')]
    out += [f'  {run_id}: {why}' for run_id, why in sorted(self.excluded.items())]
    return out + uncertainty_lines(self.rows, self.pairs)


class RunError(runs_lib.RunDirError):
  """A run directory that cannot be read as a finished run."""


def _finite(value) -> Optional[float]:
  try:
    x = float(value)
  except (TypeError, ValueError):
    return None
  return x if math.isfinite(x) else None


def read_run(run_dir: str, point: Optional[dict] = None) -> list[dict]:
  """The results rows of one finished run; RunError says why a run is not usable."""
  if not runs_lib.is_complete(run_dir):
    raise RunError('unfinished (no completion marker)')
  info = runs_lib.read_run_info(run_dir)
  metrics = runs_lib.read_metrics(run_dir)
  evals = [m for m in metrics if 'eval_loss' in m]
  if not evals:
    raise RunError('no eval steps in metrics.jsonl')
  bad = [m['step'] for m in evals if _finite(m['eval_loss']) is None]
  if bad:
    raise RunError(f'non-finite eval_loss at step(s) {bad}')
  if metrics[-1]['step'] != info.get('train_steps'):
    raise RunError(f'metrics.jsonl ends at step {metrics[-1]["step"]}, run_info.json says '
                   f'{info.get("train_steps")} steps')
  point = point or {}
  arch = info.get('architecture', {})
  lengths = info.get('feature_lengths', {})
  seq_len = (lengths.get('targets', 0) + lengths.get('inputs', 0)
             if info.get('family') == 'decoder' else lengths.get('targets'))
  base = {
      'run_id': os.path.basename(os.path.normpath(run_dir)), 'family': info.get('family'),
      'objective': info.get('objective'), 'size': point.get('size'),
      'seed': info.get('seed'), 'n_params': info.get('n_params'),
      'n_params_nonembed': info.get('n_params_nonembed'),
      'n_params_embedding': info.get('n_params_embedding'),
      **{k: arch.get(k) for k in ('d_model', 'num_layers', 'num_heads', 'd_ff',
                                  'vocab_size')},
      'batch_size': info.get('batch_size'), 'seq_len': seq_len,
      'train_steps': info.get('train_steps'), 'flop_budget': point.get('flop_budget'),
      'token_budget': point.get('token_budget')}
  rows = []
  for m in evals:
    row = dict(base)
    row.update({k: m.get(k) for k in ('step', 'tokens', 'flops', 'train_loss', 'eval_loss',
                                      'eval_accuracy', 'learning_rate', 'eval_loss_se',
                                      'eval_sequences')})
    row.update({f'flops_{c}': m.get(f'flops_{c}') for c in FLOP_CONVENTIONS})
    row['final'] = m['step'] == metrics[-1]['step']
    rows.append(row)
  return rows


def _run_dirs(sweep_dir: str) -> Iterable[tuple[str, dict]]:
  """(run_dir, point) for every run of the sweep: from sweep.json, else every subdirectory
  with a run_info.json or checkpoints/ (a hand-assembled collection of runs)."""
  plan_path = os.path.join(sweep_dir, PLAN_FILE)
  if os.path.exists(plan_path):
    with open(plan_path) as f:
      for point in json.load(f)['points']:
        yield os.path.join(sweep_dir, point['run_id']), point
    return
  for path in runs_lib.find_runs(sweep_dir):
    yield path, {}


def _collect_rows(sweep_dir: str) -> tuple[list, list, dict]:
  rows, runs, excluded = [], [], {}
  for run_dir, point in _run_dirs(sweep_dir):
    run_id = os.path.basename(run_dir)
    if not os.path.isdir(run_dir):
      excluded[run_id] = 'never started'
      continue
    try:
      rows.extend(read_run(run_dir, point))
      runs.append(run_id)
    except runs_lib.RunDirError as e:
      excluded[run_id] = str(e)
  return rows, runs, excluded


def collect(sweep_dir: str) -> Report:
  rows, runs, excluded = _collect_rows(sweep_dir)
  return Report(rows, runs, excluded, paired_differences(sweep_dir, rows))


def _final_rows(rows) -> list[dict]:
  if hasattr(rows, 'to_dict'):  # a results DataFrame
    rows = rows.to_dict('records')
  return [r for r in rows if str(r.get('final')) in ('True', 'true', '1')]


def _budget(row: dict):
  for key in ('flop_budget', 'token_budget'):
    value = _finite(row.get(key))
    if value is not None:
      return key, value
  return None


def paired_differences(sweep_dir: str, rows=None) -> list[dict]:
  """At each budget (FLOP, else token), for each pair of adjacent sizes of one family,
  objective and seed: `difference` = final loss of the larger minus the smaller, over the
  same held-out sequences, and its standard error `se` (research/heldout.py).

  rows: the results table (row dicts or a DataFrame; only `final` rows are used), by
  default collected from `sweep_dir`, which holds the run directories. A pair either of
  whose runs has no per-sequence losses, or whose held-out sets differ, gets NaN and the
  reason in `note`."""
  if rows is None:
    rows = _collect_rows(sweep_dir)[0]
  groups: dict = {}
  for row in _final_rows(rows):
    budget = _budget(row)
    if budget is not None and _finite(row.get('n_params')) is not None:
      key = (*budget, row.get('family'), row.get('objective'), _finite(row.get('seed')))
      groups.setdefault(key, []).append(row)
  losses: dict = {}

  def per_sequence(run_id):
    if run_id not in losses:
      try:
        losses[run_id] = heldout.read_final(os.path.join(sweep_dir, run_id))
      except runs_lib.RunDirError as e:
        raise runs_lib.RunDirError(f'{run_id}: {e}') from e
    return losses[run_id]

  pairs = []
  for (budget_key, budget, family, objective, seed), group in sorted(
      groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
    group = sorted(group, key=lambda r: float(r['n_params']))
    for smaller, larger in zip(group, group[1:]):
      pair = {budget_key: budget, 'family': family, 'objective': objective, 'seed': seed,
              'smaller': smaller['run_id'], 'larger': larger['run_id'],
              'n_params_smaller': smaller['n_params'], 'n_params_larger': larger['n_params'],
              'difference': math.nan, 'se': math.nan, 'note': ''}
      try:
        pair['difference'], pair['se'] = heldout.paired_difference(
            per_sequence(larger['run_id']), per_sequence(smaller['run_id']))
      except (runs_lib.RunDirError, heldout.HeldOutMismatch) as e:
        pair['note'] = str(e)
      pairs.append(pair)
  return pairs


def uncertainty_lines(rows, pairs) -> list[str]:
  """The largest standard error of a run's final loss and of a paired difference (the
  numbers that say whether the sweep's losses can separate its sizes)."""
  out = []
  finals = [r for r in _final_rows(rows) if _finite(r.get('eval_loss_se')) is not None]
  if finals:
    worst = max(finals, key=lambda r: float(r['eval_loss_se']))
    out.append(f'held-out SE: largest final eval_loss_se {float(worst["eval_loss_se"]):.4f} '
               f'nats ({worst["run_id"]}, {worst.get("eval_sequences")} sequences)')
  paired = [p for p in pairs if _finite(p['se']) is not None]
  if paired:
    worst = max(paired, key=lambda p: p['se'])
    out.append(f'held-out SE: largest paired-difference SE {worst["se"]:.4f} nats '
               f'({worst["larger"]} - {worst["smaller"]}: {worst["difference"]:+.4f})')
  unpaired = [p for p in pairs if p['note']]
  if unpaired:
    out.append(f'held-out SE: {len(unpaired)} adjacent pair(s) not paired, e.g. '
               f'{unpaired[0]["larger"]} - {unpaired[0]["smaller"]}: {unpaired[0]["note"]}')
  return out


def write_csv_atomic(rows: list[dict], path: str, columns=COLUMNS) -> None:
  text = io.StringIO(newline='')
  writer = csv.DictWriter(text, fieldnames=list(columns), extrasaction='ignore')
  writer.writeheader()
  for row in rows:
    writer.writerow({k: ('' if row.get(k) is None else row.get(k)) for k in columns})
  runs_lib.write_text_atomic(path, text.getvalue())


def write_results(sweep_dir: str, path: Optional[str] = None) -> tuple[str, Report]:
  """Aggregates the sweep into `path` (default SWEEP_DIR/results.csv); returns it and why
  any run was left out."""
  report = collect(sweep_dir)
  path = path or os.path.join(sweep_dir, 'results.csv')
  write_csv_atomic(report.rows, path)
  return path, report


def load(path: str):
  """results.csv as a pandas DataFrame (what notebooks and the fits start from)."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  return pd.read_csv(path)


def load_results(sweep_dir_or_csv: str):
  """The results table as a pandas DataFrame, from a results.csv, or from a sweep directory:
  its results.csv if written, else collected from its run directories (finished runs only,
  columns COLUMNS)."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  if os.path.isdir(sweep_dir_or_csv):
    path = os.path.join(sweep_dir_or_csv, 'results.csv')
    if not os.path.exists(path):
      report = collect(sweep_dir_or_csv)
      return pd.DataFrame([{k: row.get(k) for k in COLUMNS} for row in report.rows],
                          columns=list(COLUMNS))
    return load(path)
  if not os.path.exists(sweep_dir_or_csv):
    raise runs_lib.RunDirError(f'no results table or sweep directory at {sweep_dir_or_csv}')
  return load(sweep_dir_or_csv)
