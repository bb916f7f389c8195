r"""Launches a sweep: a gin grid of model sizes x budgets x families x objectives x seeds
(research/sweeps/main.py).

  python experiments/sweep.py --gin_file=gin_configs/sweeps/quickstart.gin \
      --sweep_dir=/tmp/quickstart --parallel=2 --fit

The same as `python -m research.sweeps` or, installed, `research-sweep`.
"""
from research.sweeps import main

if __name__ == '__main__':
  main.run()
