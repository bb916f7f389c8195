"""`python -m research.data.cleaning`: the cleaning command (research/data/cleaning/main.py)."""
from research.data.cleaning import main

main.run()
