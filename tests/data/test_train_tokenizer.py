"""Smoke test of the real entry point: experiments/train_tokenizer.py."""
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')


def _run(*args):
  env = dict(os.environ, PYTHONPATH=os.path.abspath(ROOT))
  return subprocess.run([sys.executable, os.path.join(ROOT, 'experiments', 'train_tokenizer.py'),
                         *args], capture_output=True, text=True, env=env, timeout=300)


def test_train_tokenizer_on_text_files(tmp_path):
  corpus = tmp_path / 'corpus'
  corpus.mkdir()
  for i in range(30):
    (corpus / f'{i}.py').write_text(f'def f{i}(x):\n    return x * {i} + len("abc")\n' * 20)
  out = _run(f'--dataset=text_files:{corpus}', f'--data_dir={tmp_path / "tfds"}',
             '--vocab_size=320', f'--output={tmp_path / "spm"}')
  assert out.returncode == 0, out.stderr[-2000:]
  assert os.path.exists(tmp_path / 'spm.model') and 'vocab_size' in out.stdout


def test_bad_dataset_is_one_line(tmp_path):
  for dataset, message in (('no_such_corpus', "unknown dataset name 'no_such_corpus'"),
                           (f'text_files:{tmp_path / "nodir"}', 'no text files found')):
    out = _run(f'--dataset={dataset}', f'--data_dir={tmp_path / "tfds"}',
               f'--output={tmp_path / "x"}')
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0 and len(lines) == 1, out.stderr[-2000:]
    assert lines[0].startswith('train_tokenizer.py: error: ') and message in lines[0]
  assert not os.path.exists(tmp_path / 'tfds')  # nothing built for a corpus that is not there
