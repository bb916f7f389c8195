"""A reference run shared by the trainer tests (compiling is most of a tiny run's cost)."""
import pytest

from research.train import trainer
from tests.train import helpers

# Changing only what does not change the numbers (eval, logging) keeps every test that
# compares against this run exact.
CLEAN_STEPS = 10


@pytest.fixture(scope='session')
def clean_run(tmp_path_factory):
  """An uninterrupted 10-step decoder run with the helpers.TINY config."""
  workdir = tmp_path_factory.mktemp('clean')
  helpers.configure('decoder', steps=CLEAN_STEPS, extra='trainer.train.eval_every = 5')
  summary = trainer.train(str(workdir))
  return workdir, summary
