"""notebooks/scaling_laws.ipynb runs top to bottom on the small fixture (nbclient, a real kernel)."""
import os

# Plain imports: the test extra installs both, so a broken install fails instead of skipping.
import nbclient
import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_notebook_runs_on_fixture(monkeypatch):
  monkeypatch.setenv('SCALING_RESULTS', 'tests/fixtures/scaling/results_small.csv')
  monkeypatch.setenv('SCALING_BOOTSTRAP', '30')
  nb = nbformat.read(os.path.join(ROOT, 'notebooks', 'scaling_laws.ipynb'), as_version=4)
  nbclient.NotebookClient(nb, timeout=300, kernel_name='python3',
                          resources={'metadata': {'path': ROOT}}).execute()
  outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]
  assert not [o for o in outputs if o.output_type == 'error']
  figures = [o for o in outputs if 'image/png' in o.get('data', {})]
  assert len(figures) == 4    # Fig. 1 (Kaplan), Figs. 2, 3, 4 (Chinchilla)
  text = ''.join(o.get('text', '') for o in outputs)
  assert 'published (Hoffmann et al.)' in text
