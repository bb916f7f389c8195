r"""Where each attention head of an arithmetic sweep's runs looks when it writes an answer digit.

  python experiments/attention_offsets.py --sweep_dir=/tmp/heads4 [--runs=L1d12h8f8] \
      [--steps=final|all] [--length=8] [--n_items=64] [--out=/tmp/heads4/offsets.csv]

For every run (and checkpoint), the per-digit accuracy and, per head, the mean attention weight
on the tokens 0..18 positions back from the positions that predict the answer digits
(research/emergence/heads.py): a model that adds has heads on a's digit (16 back) and b's
digit (7 back). Unfinished or corrupt runs are listed and skipped, as in probe_emergence.py.
"""
import os
import sys

from absl import flags

from research import cli

PROG = 'attention_offsets.py'

_SWEEP_DIR = flags.DEFINE_string('sweep_dir', None, 'Directory of run directories.')
_RUNS = flags.DEFINE_string('runs', '', 'Only runs whose id contains this string.')
_STEPS = flags.DEFINE_enum('steps', 'final', ['final', 'all'],
                           'The final checkpoint of each run, or every one (step 0 too).')
_LENGTH = flags.DEFINE_integer('length', 8, 'Answer length L of the addition items.')
_N_ITEMS = flags.DEFINE_integer('n_items', 64, 'Eval items to average over.')
_OUT = flags.DEFINE_string('out', '', 'If set: write every weight to this CSV.')


def main(argv):
  del argv  # cli.run refuses extra arguments
  cli.require(PROG, sweep_dir=_SWEEP_DIR.value)
  if not 1 <= _LENGTH.value <= 8 or _N_ITEMS.value < 1:
    cli.usage_error(PROG, f'need 1 <= --length <= 8 and --n_items >= 1, got {_LENGTH.value}, '
                          f'{_N_ITEMS.value}')
  cli.show_own_info()  # orbax's INFO line for every restore stays hidden
  from research.parallel import host
  host.tune_allocator()
  import numpy as np
  from research.emergence import heads
  from research.emergence import scoring
  from research.scaling import results
  try:
    runs, skipped = scoring.find_runs(_SWEEP_DIR.value)
  except ValueError as e:
    cli.fail(PROG, e)
  for run_id, why in skipped:
    print(f'attention_offsets.py: skipped {run_id}: {why}', file=sys.stderr)
  runs = [r for r in runs if _RUNS.value in r.run_id]
  if not runs:
    cli.fail(PROG, f'no usable run in {_SWEEP_DIR.value} matches --runs={_RUNS.value!r}')
  rows = []
  for run in runs:
    ckpt_dir = os.path.join(run.path, 'checkpoints')
    steps = run.steps[-1:] if _STEPS.value == 'final' else sorted(
        int(d) for d in os.listdir(ckpt_dir) if d.isdigit())
    for step in steps:
      try:
        params = scoring.load_params(run, step)
      except Exception as e:  # pylint: disable=broad-except  # orbax raises many types
        print(f'attention_offsets.py: {run.run_id}: checkpoint {step} unreadable '
              f'({type(e).__name__}); skipped', file=sys.stderr)
        continue
      weights, accuracy = heads.attention_by_offset(
          scoring.model_config(run), params, length=_LENGTH.value, n_items=_N_ITEMS.value)
      print(f'{run.run_id} step {step}: per-digit accuracy at L={_LENGTH.value} '
            f'{accuracy.mean():.2f}')
      for line in heads.describe_heads(weights):
        print('  ' + line)
      for (layer, head, offset), w in np.ndenumerate(weights):
        rows.append(dict(run_id=run.run_id, seed=run.info.get('seed'),
                         n_params=run.info.get('n_params'), step=step, layer=layer,
                         head=head, offset=offset, weight=float(w),
                         accuracy=float(accuracy.mean())))
  if not rows:
    cli.fail(PROG, 'no checkpoint of the selected runs could be read')
  if _OUT.value:
    results.write_csv_atomic(rows, _OUT.value, columns=list(rows[0]))
    print(f'attention_offsets.py: wrote {len(rows)} rows to {_OUT.value}', file=sys.stderr)


if __name__ == '__main__':
  cli.run(main, PROG)
