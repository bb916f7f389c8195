"""`python -m research.data.cleaning`: the cleaning command line (research/data/cleaning/main.py)."""
from research.data.cleaning import main

main.run()
