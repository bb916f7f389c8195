r"""The fit command line: Kaplan's and Chinchilla's scaling laws fitted to a results table;
writes fits.json and figures.

  python -m research.scaling --results=SWEEP/results.csv --out=SWEEP/fits

(`research-fit` once installed.) --results is a sweep's results.csv (docs/design.md) or a
published table with columns n_params, tokens, loss (then only Approach 3 and Kaplan
L(N, D), L(N) are fitted). --baseline_json=ngram.json (the table of `python -m
research.baselines.ngram --out=ngram.json`) draws its best --baseline_orders orders as dashed
horizontal lines on the loss axes of kaplan_fig1, chinchilla_fig2 and chinchilla_fig3.
"""
from typing import Sequence

from absl import flags

from research import cli

PROG = 'research-fit'

FLAGS = flags.FLAGS
flags.DEFINE_string('results', None, 'results.csv of a sweep, or a (n_params, tokens, loss) CSV.')
flags.DEFINE_string('out', None, 'Directory for fits.json and the PNG figures.')
flags.DEFINE_string('loss_column', 'eval_loss', 'Loss column of results.csv.')
flags.DEFINE_string('flops_column', 'flops', 'FLOP convention column (flops_6N, ...).')
flags.DEFINE_string('params_column', 'n_params', 'N for the Chinchilla fits (total params).')
flags.DEFINE_string('kaplan_params_column', 'n_params_nonembed',
                    'N for the Kaplan fits (non-embedding, as Kaplan et al.).')
flags.DEFINE_string('family', None, 'Only rows of this family.')
flags.DEFINE_string('objective', None, 'Only rows of this objective.')
flags.DEFINE_integer('bootstrap', 400, 'Bootstrap replicates of every fit.')
flags.DEFINE_integer('seed', 0, 'Seed of the bootstrap.')
flags.DEFINE_list('budgets', [], 'Extra FLOP budgets at which to report N_opt, D_opt, D/N.')
flags.DEFINE_float('corpus_tokens', None, 'Tokens in the training corpus: runs that repeat it '
                   'more than --max_epochs times are left out of the final points, named.')
flags.DEFINE_float('max_epochs', 4.0, 'Epochs past which repeated data is named and left out '
                   '(Muennighoff et al. 2023: up to ~4 epochs cost almost nothing).')
flags.DEFINE_string('baseline_json', None, 'An n-gram table (research.baselines.ngram --out) '
                    'in the loss column\'s units: its best orders become dashed lines.')
flags.DEFINE_integer('baseline_orders', 3, 'How many of the best n-gram orders to draw.')
flags.mark_flags_as_required(['results', 'out'])


def main(argv: Sequence[str], prog: str = PROG) -> None:
  del argv  # cli.run refuses extra arguments
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  # pylint: disable=g-import-not-at-top
  from research.scaling import plots
  from research.scaling import report
  from research.scaling import summary
  from research.scaling import table as table_lib
  # pylint: enable=g-import-not-at-top
  baselines = ()
  if FLAGS.baseline_json:
    try:
      baselines = plots.read_baselines(FLAGS.baseline_json, FLAGS.baseline_orders)
    except ValueError as e:
      cli.usage_error(prog, f'--baseline_json: {e}')
  cols = table_lib.Columns(loss=FLAGS.loss_column, flops=FLAGS.flops_column,
                           params=FLAGS.params_column, kaplan_params=FLAGS.kaplan_params_column)
  try:
    cfg = report.ReportConfig(n_bootstrap=FLAGS.bootstrap, seed=FLAGS.seed,
                              budgets=tuple(float(b) for b in FLAGS.budgets),
                              corpus_tokens=FLAGS.corpus_tokens, max_epochs=FLAGS.max_epochs)
    tab = table_lib.load_results(FLAGS.results, cols, FLAGS.family, FLAGS.objective)
    fits = report.fit_all(tab, cfg)
  except ValueError as e:  # ScalingDataError, ScalingFitError, a bad --budgets value
    cli.fail(prog, e)
  out = report.to_json(tab, fits, cfg, FLAGS.results)
  report.write_json_atomic(f'{FLAGS.out}/fits.json', out)
  for note in tab.notes:
    print(f'note: {note}')
  for name, why in fits.skipped.items():
    print(f'skipped {name}: {why}')
  if fits.approach3 is not None:
    e = fits.approach3.estimates()
    print('approach3: ' + ' '.join(f'{k}={v.value:.4g} [{v.lo:.4g}, {v.hi:.4g}]'
                                   for k, v in e.items()))
  for name in ('approach1', 'approach2'):
    fr = getattr(fits, name)
    if fr is not None:
      print(f'{name}: ' + ' '.join(f'{k}={v.value:.4g} [{v.lo:.4g}, {v.hi:.4g}]'
                                   for k, v in fr.estimates().items()))
  for label, loss in baselines:
    print(f'baseline {label}: {loss:.4f}')
  for path in plots.save_all(tab, fits, FLAGS.out, project_to=cfg.budgets,
                             baselines=baselines):
    print(f'wrote {path}')
  print(f'wrote {FLAGS.out}/fits.json')
  print(summary.summary_text(out))


def run(prog: str = '') -> None:
  """The `research-fit` console script (and `python -m research.scaling`)."""
  prog = prog or cli.prog_name(PROG)
  cli.run(lambda argv: main(argv, prog), prog)
