"""notebooks/emergence.ipynb runs top to bottom on the fixture table."""
import os

import nbformat
import pytest
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_notebook_executes_on_the_fixture(monkeypatch):
  monkeypatch.setenv('EMERGENCE_CSV', os.path.join(REPO, 'tests', 'fixtures', 'emergence',
                                                   'emergence.csv'))
  nb = nbformat.read(os.path.join(REPO, 'notebooks', 'emergence.ipynb'), as_version=4)
  NotebookClient(nb, timeout=300, kernel_name='python3',
                 resources={'metadata': {'path': REPO}}).execute()
  outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])]
  assert not any(o.get('output_type') == 'error' for o in outputs)
  text = ''.join(o.get('text', '') for o in outputs)
  assert 'fitted per-token loss' in text
