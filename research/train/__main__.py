"""`python -m research.train`: research/train/main.py."""
from research.train import main

main.run()
