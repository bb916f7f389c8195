"""`python -m research.scaling`: research/scaling/main.py."""
from research.scaling import main

main.run()
