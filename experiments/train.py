r"""Trains one model: gin config in, run directory out (research/train/main.py).

  python experiments/train.py --gin_file=gin_configs/runs/tiny.gin --workdir=/tmp/tiny \
      [--gin_bindings="TRAIN_STEPS = 20"]

The same as `python -m research.train` or, installed, `research-train`.
"""
from research.train import main

if __name__ == '__main__':
  main.run()
