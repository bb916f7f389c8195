"""Scaling-law fits: Kaplan et al. (2020) and the three approaches of Hoffmann et al. (2022).

  from research import scaling
  from research.scaling import parametric, table
  results = scaling.load_results('SWEEP_DIR')  # or a results.csv: a pandas DataFrame
  tab = table.load_results(results)            # the arrays the fits take
  fit3 = parametric.fit(tab.finals.n, tab.finals.d, tab.finals.loss)
"""
from research.scaling.results import load_results  # noqa: F401
