"""`python -m research.evaluation`: lm-evaluation-harness with `--model research`."""
from research.evaluation import main

main.run()
