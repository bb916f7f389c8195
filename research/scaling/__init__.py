"""Scaling-law fits: Kaplan et al. (2020) and the three approaches of Hoffmann et al. (2022).

  from research import scaling
  table = scaling.load_results('results.csv')
  fit3 = scaling.parametric.fit(table.finals.n, table.finals.d, table.finals.loss)
"""
