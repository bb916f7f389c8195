r"""Fits Kaplan's and Chinchilla's scaling laws to a results table; writes fits.json and
figures (research/scaling/main.py).

  python experiments/fit_scaling.py --results=SWEEP/results.csv --out=SWEEP/fits

The same as `python -m research.scaling` or, installed, `research-fit`.
"""
from research.scaling import main

if __name__ == '__main__':
  main.run()
