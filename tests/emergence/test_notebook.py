"""notebooks/emergence.ipynb runs top to bottom on the fixture table and a sweep's runs."""
import json
import os

import nbformat
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_notebook_executes_on_the_fixture(monkeypatch, tmp_path):
  monkeypatch.setenv('EMERGENCE_CSV', os.path.join(REPO, 'tests', 'fixtures', 'emergence',
                                                   'emergence.csv'))
  # Two runs' histories: one whole, one torn mid-line (a run killed while logging).
  for name, tail in (('n1000_s0', ''), ('n3000_s0', '{"step": 30, "tra')):
    (tmp_path / name).mkdir()
    (tmp_path / name / 'run_info.json').write_text('{}')
    rows = [{'step': s, 'tokens': 256 * s, 'train_loss': 3.0 / s} for s in (10, 20)]
    (tmp_path / name / 'metrics.jsonl').write_text(
        ''.join(json.dumps(r) + '\n' for r in rows) + tail)
  monkeypatch.setenv('EMERGENCE_SWEEP', str(tmp_path))
  nb = nbformat.read(os.path.join(REPO, 'notebooks', 'emergence.ipynb'), as_version=4)
  NotebookClient(nb, timeout=300, kernel_name='python3',
                 resources={'metadata': {'path': REPO}}).execute()
  outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])]
  assert not any(o.get('output_type') == 'error' for o in outputs)
  text = ''.join(o.get('text', '') for o in outputs)
  assert 'fitted per-token loss' in text
  assert '1 training curves' in text and 'n3000_s0: metrics.jsonl line 3 is torn' in text
