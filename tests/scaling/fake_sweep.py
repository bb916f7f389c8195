"""`python -m research.sweeps` whose runs start tests/scaling/fake_trainer.py instead of the
real trainer (same flags): the sweep tests of job bookkeeping need no training."""
import sys

import research.sweeps  # noqa: F401  (loads research.sweeps.plan)

# The module, not the `plan` function that research.sweeps exports under the same name.
sys.modules['research.sweeps.plan'].TRAIN_MODULE = 'tests.scaling.fake_trainer'

from research.sweeps import main  # noqa: E402  (after the module swap)

if __name__ == '__main__':
  main.run('research-sweep')
