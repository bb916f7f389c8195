"""Reading results tables: the two formats, column choices and one clear error per bad input."""
import numpy as np
import pandas as pd
import pytest

from research.scaling import table
from research.scaling.table import ScalingDataError

FIXTURE = 'tests/fixtures/scaling/results_small.csv'


def test_sweep_table_finals_and_derived_budgets():
  t = table.load_results(FIXTURE)
  assert t.kind == 'sweep' and len(t.finals) == 20 and len(t.curves) == 120
  # No flop_budget column: the 4 budgets come from the final FLOPs (1e19 ... 1e22).
  np.testing.assert_allclose(np.sort(t.finals.budget.unique()), [1e19, 1e20, 1e21, 1e22], rtol=0.01)
  np.testing.assert_allclose(t.finals.n_km / t.finals.n, 0.9, rtol=1e-6)   # non-embedding
  total = table.load_results(FIXTURE, table.Columns(kaplan_params='n_params'))
  assert (total.finals.n_km == total.finals.n).all()


def test_published_table():
  t = table.load_results('tests/fixtures/scaling/published_small.csv')
  assert t.kind == 'points' and t.curves is None and len(t.finals) == 30
  assert any('skipped' in n for n in t.notes)


def _write(tmp_path, df):
  path = tmp_path / 'r.csv'
  df.to_csv(path, index=False)
  return str(path)


@pytest.mark.parametrize('mutate, message', [
    (lambda df: df.drop(columns=['flops']), 'missing column(s) flops'),
    (lambda df: df.assign(eval_loss=np.where(df.index == 3, -1.0, df.eval_loss)),
     'column eval_loss has 1 non-positive'),
    (lambda df: df.assign(n_params=df.n_params.iloc[0], n_params_nonembed=1),
     'a single model size'),
    (lambda df: df.assign(family=np.where(df.index < 10, 'encoder_decoder', 'decoder')),
     'several families/objectives'),
])
def test_bad_tables_fail_with_one_clear_error(tmp_path, mutate, message):
  path = _write(tmp_path, mutate(pd.read_csv(FIXTURE)))
  with pytest.raises(ScalingDataError, match=message.replace('(', r'\(').replace(')', r'\)')):
    table.load_results(path)


def test_unreadable_and_missing_files(tmp_path):
  with pytest.raises(ScalingDataError, match='no such file'):
    table.load_results(str(tmp_path / 'nope.csv'))
  bad = tmp_path / 'bad.csv'
  bad.write_bytes(b'\xff\xfe\x00garbage\x00\n\x01')
  with pytest.raises(ScalingDataError, match='not a readable CSV|missing column'):
    table.load_results(str(bad))
  empty = tmp_path / 'empty.csv'
  empty.write_text('')
  with pytest.raises(ScalingDataError, match='not a readable CSV'):
    table.load_results(str(empty))


def test_family_filter(tmp_path):
  df = pd.read_csv(FIXTURE)
  df = pd.concat([df, df.assign(family='encoder_decoder', run_id=df.run_id + 'x')])
  t = table.load_results(_write(tmp_path, df), family='decoder')
  assert len(t.finals) == 20
