import pytest

from tests.emergence import helpers


@pytest.fixture(scope='session')
def tiny_model():
  """(config, params after 250 steps, {40, 120, 250: params}): trained once per session."""
  return helpers.train_tiny(steps=250, snapshots=(40, 120, 250))
