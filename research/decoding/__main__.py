"""`python -m research.decoding`: the generate command line (research/decoding/main.py)."""
from research.decoding import main

main.run()
