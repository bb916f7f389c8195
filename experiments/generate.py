r"""Continuations from the latest checkpoint of a run: research/decoding/main.py's command
line (also `research-generate` and `python -m research.decoding`).

  python experiments/generate.py --workdir=RUN_DIR --prompt='The cat' --strategy=beam
"""
from research.decoding import main

if __name__ == '__main__':
  main.run()
