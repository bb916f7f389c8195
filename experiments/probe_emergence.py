r"""Scores every run of an arithmetic sweep: research/emergence/main.py's command line (also
`research-probe` and `python -m research.emergence`).

  python experiments/probe_emergence.py --sweep_dir=/tmp/emergence_cpu --out=/tmp/probe
"""
from research.emergence import main

if __name__ == '__main__':
  main.run()
