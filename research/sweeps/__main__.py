"""`python -m research.sweeps`: research/sweeps/main.py."""
from research.sweeps import main

main.run()
