import pytest


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """One TFDS data_dir for the session; python_stdlib builds into it in about a second."""
  return str(tmp_path_factory.mktemp('tfds'))
