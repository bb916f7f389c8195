"""`python -m research.emergence`: the probe's command line (research/emergence/main.py)."""
from research.emergence import main

main.run()
