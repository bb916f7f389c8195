"""Who may import the trainer: readers of run directories go through research.runs.

research.runs, research.emergence and research.decoding read runs the trainer wrote; they
must work without importing research.train (its optimizer, step and checkpoint manager).
Checked on the source (every import statement, at any depth), so a lazy import inside a
function counts too.
"""
import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
READERS = ('research/runs.py', 'research/emergence', 'research/decoding')


def _files(path):
  full = os.path.join(REPO, path)
  if os.path.isfile(full):
    return [full]
  return sorted(os.path.join(full, name) for name in os.listdir(full) if name.endswith('.py'))


def imported_modules(path: str) -> set:
  """Every module an import statement in `path` names (`from a import b` names a and a.b)."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
      names.update(f'{node.module}.{alias.name}' for alias in node.names)
  return names


def _is_train(name: str) -> bool:
  return name == 'research.train' or name.startswith('research.train.')


@pytest.mark.parametrize('path', [f for p in READERS for f in _files(p)],
                         ids=lambda f: os.path.relpath(f, REPO))
def test_readers_do_not_import_the_trainer(path):
  assert not sorted(filter(_is_train, imported_modules(path)))


def test_the_rule_sees_every_form_of_import(tmp_path):
  source = tmp_path / 'm.py'
  source.write_text('import os\n'
                    'def f():\n'
                    '  from research import train\n'
                    '  from research.train.checkpoints import Checkpointer\n'
                    '  import research.train.metrics as m\n')
  found = sorted(filter(_is_train, imported_modules(str(source))))
  assert found == ['research.train', 'research.train.checkpoints',
                   'research.train.checkpoints.Checkpointer', 'research.train.metrics']
