r"""Accuracy against the number of in-context demonstrations k, per model size, by every
metric of the emergence probe (research/emergence/kshot.py): a CSV and a figure.

  python experiments/kshot_curve.py --run_dirs=/tmp/kshot_runs/L1d16,/tmp/kshot_runs/L2d32 \
      --out=/tmp/kshot --lengths=1,2,3 --ks=0,1,2,4,8,16 --n_per_length=50
"""
import os

from absl import flags

from research import cli

_RUN_DIRS = flags.DEFINE_list('run_dirs', None, 'Arithmetic decoder run directories.')
_OUT = flags.DEFINE_string('out', None, 'Output directory: kshot.csv and kshot.png.')
_KS = flags.DEFINE_list('ks', [str(k) for k in range(17)], 'Numbers of demonstrations.')
_LENGTHS = flags.DEFINE_list('lengths', ['1', '2', '3'], 'Addition lengths L scored.')
_N = flags.DEFINE_integer('n_per_length', 50, 'Eval items per L.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the demonstrations.')


def main(prog):
  cli.require(prog, run_dirs=_RUN_DIRS.value, out=_OUT.value)
  cli.require_positive(prog, n_per_length=_N.value)
  try:
    ks = [int(k) for k in _KS.value]
    lengths = [int(n) for n in _LENGTHS.value]
  except ValueError as e:
    cli.usage_error(prog, f'--ks and --lengths are integers: {e}')
  if min(ks) < 0:
    cli.usage_error(prog, f'--ks must be >= 0, got {min(ks)}')
  for run_dir in _RUN_DIRS.value:
    if not os.path.isdir(run_dir):
      cli.usage_error(prog, f'--run_dirs {run_dir!r} is not a directory')
  from research import runs  # pylint: disable=g-import-not-at-top
  from research.data import arithmetic  # pylint: disable=g-import-not-at-top
  from research.emergence import kshot  # pylint: disable=g-import-not-at-top
  try:
    items = arithmetic.eval_items(_N.value, lengths=lengths, include_mul=False)
    table = kshot.run_curves(_RUN_DIRS.value, items, ks, _SEED.value)
  except (ValueError, runs.RunDirError) as e:
    cli.fail(prog, e)
  os.makedirs(_OUT.value, exist_ok=True)
  csv = os.path.join(_OUT.value, 'kshot.csv')
  runs.write_text_atomic(csv, table.to_csv(index=False))
  figure = kshot.k_shot_figure(table, os.path.join(_OUT.value, 'kshot.png'))
  cols = ['run_id', 'n_params', 'k', 'length', 'exact_match', 'per_token_accuracy',
          'answer_logp']
  print(table[cols].round(3).to_string(index=False))
  print(f'wrote {csv} and {figure}')


if __name__ == '__main__':
  cli.run(lambda argv: main(os.path.basename(__file__)), os.path.basename(__file__))
