"""The cleaning command end to end: report numbers on a small corpus, the dataset the trainer
reads, determinism (same bytes twice, any worker count), resume after a kill, bad input."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from research.data import sources
from research.data.cleaning import cleaner as clean_lib
from research.data.cleaning import dedup
from research.data.cleaning import rules

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
FIXTURE = os.path.join(ROOT, 'tests', 'fixtures', 'cleaning')


def _prose(i: int, words: int = 120) -> str:
  """A distinct English-like document: made-up words of 3-8 letters with a stop word every
  sixth place (Gopher's stop-word rule) and no repeated n-gram; passes the default rules and
  shares no 5-gram with another index's document."""
  rng = np.random.default_rng(i)
  stop = sorted(rules.GOPHER_STOP_WORDS)
  out = []
  for j in range(words):
    if j % 6 == 5:
      out.append(stop[j % len(stop)])
    else:
      out.append(''.join(rng.choice(list('abcdefghijklmnopqrstuvwxyz'),
                                    size=int(rng.integers(3, 9)))))
  return ' '.join(out) + '.\n'


def _write(root, files):
  for rel, text in files.items():
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = 'wb' if isinstance(text, bytes) else 'w'
    with open(path, mode) as f:
      f.write(text)


def _corpus(root):
  """12 good documents, one exact and one near copy, one PII-bearing, one too short, one
  not UTF-8, one repetitive."""
  files = {f'docs/d{i:02d}.txt': _prose(i) for i in range(12)}
  files['copies/exact_of_d03.txt'] = files['docs/d03.txt']
  near = _prose(5).split()
  near[60] = 'changed'
  files['copies/near_of_d05.txt'] = ' '.join(near) + '\n'
  files['docs/pii.txt'] = _prose(20) + 'Write to ann@example.com or call 555-123-4567.\n'
  files['docs/short.txt'] = 'The end of the story.\n'
  files['docs/latin1.txt'] = 'caf\xe9 au lait '.encode('latin-1') * 30
  files['docs/repeat.txt'] = _prose(30, 60) + 'buy now and save\n' * 40
  _write(root, files)
  return files


def _tree_bytes(root):
  out = {}
  for dirpath, _, filenames in os.walk(root):
    for f in filenames:
      path = os.path.join(dirpath, f)
      with open(path, 'rb') as fh:
        out[os.path.relpath(path, root)] = fh.read()
  return out


@pytest.fixture(scope='module')
def cleaned(tmp_path_factory):
  base = tmp_path_factory.mktemp('clean')
  _corpus(str(base / 'corpus'))
  out = str(base / 'out')
  report = clean_lib.clean(str(base / 'corpus'), out, workers=1, log=lambda *a: None)
  return base, out, report


def test_the_report_counts_each_reason(cleaned):
  _, out, report = cleaned
  assert report['input_documents'] == 18
  assert report['kept']['documents'] == 13  # d00..d11 and pii.txt
  removed = {k: v['documents'] for k, v in report['removed_by'].items()}
  assert removed == {'not_utf8': 1, 'word_count': 1, 'duplicate_lines': 1,
                     'exact_duplicate': 1, 'near_duplicate': 1}
  assert report['removed_by']['word_count']['bytes'] == len('The end of the story.\n')
  assert report['removed_by']['not_utf8']['bytes'] == len('caf\xe9 au lait ') * 30
  assert report['exact_duplicate_clusters']['largest'] == [
      {'first': 'copies/exact_of_d03.txt', 'size': 2, 'examples': ['docs/d03.txt']}]
  assert report['near_duplicate_clusters']['largest'] == [
      {'first': 'copies/near_of_d05.txt', 'size': 2, 'examples': ['docs/d05.txt']}]
  assert report['pii'] == {'email': 1, 'phone': 1}
  assert report['near_dedup']['bands'] * report['near_dedup']['rows'] <= 256
  with open(os.path.join(out, 'report.json')) as f:
    assert json.load(f) == report
  with open(os.path.join(out, 'report.txt')) as f:
    text = f.read()
  assert 'kept             13 documents' in text
  assert 'PII replaced (by type): email 1, phone 1' in text


def test_kept_documents_are_scrubbed_and_the_trainer_reads_them(cleaned):
  _, out, report = cleaned
  with open(os.path.join(out, 'documents', 'docs', 'pii.txt')) as f:
    assert f.read().endswith('Write to <EMAIL> or call <PHONE_NUMBER>.\n')
  assert not os.path.exists(os.path.join(out, 'documents', 'docs', 'd03.txt'))
  name = 'prepared:' + clean_lib.dataset_dir(out)
  texts = []
  for split in ('train', 'validation'):
    source = sources.get_source(name, split)
    assert len(source) == report['splits'][split]
    texts += [source.document(i) for i in source.indices]
  assert len(texts) == 13 and any('<EMAIL>' in t for t in texts)


def test_same_bytes_twice_and_with_any_worker_count(cleaned, tmp_path):
  base, out, _ = cleaned
  again = str(tmp_path / 'again')
  clean_lib.clean(str(base / 'corpus'), again, workers=2, log=lambda *a: None)
  first, second = _tree_bytes(out), _tree_bytes(again)
  assert sorted(first) == sorted(second)
  assert any(p.endswith('.array_record-00000-of-00001') for p in first)
  assert first == second


def test_a_leftover_partial_output_is_replaced(cleaned, tmp_path):
  base, out, _ = cleaned
  target = str(tmp_path / 'resumed')
  _write(target + '.partial', {'documents/docs/d00.txt': 'half of a fi',
                               'dataset/junk.tmp': 'x'})
  clean_lib.clean(str(base / 'corpus'), target, workers=1, log=lambda *a: None)
  assert not os.path.exists(target + '.partial')
  assert _tree_bytes(target) == _tree_bytes(out)


def _command(*args):
  env = dict(os.environ, PYTHONPATH=ROOT)
  return [sys.executable, '-m', 'research.data.cleaning', *args], env


def test_a_killed_run_leaves_no_dataset_and_a_rerun_completes(cleaned, tmp_path):
  base, out, _ = cleaned
  target = str(tmp_path / 'killed')
  # Slow enough to be caught mid-way: 4096 permutations per document, one worker.
  args, env = _command(f'--input_dir={base / "corpus"}', f'--output_dir={target}',
                       '--workers=1', '--gin_bindings=near_dedup.num_perm=4096')
  proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 60
  while not os.path.exists(os.path.join(target + '.partial', 'documents', 'docs')):
    assert proc.poll() is None and time.time() < deadline, 'finished before it was killed'
    time.sleep(0.005)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(target) and os.path.exists(target + '.partial')
  args, env = _command(f'--input_dir={base / "corpus"}', f'--output_dir={target}',
                       '--workers=1')
  done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  assert not os.path.exists(target + '.partial')
  assert _tree_bytes(target) == _tree_bytes(out)


@pytest.mark.parametrize('binding, message', [
    ("quality_rules.rules=['word_count', 'wordcount']", "unknown quality rule 'wordcount'"),
    ("quality_rules.thresholds={'duplicate_lines': {'max': 2}}",
     "rule 'duplicate_lines': max=2 is out of range [0, 1]"),
])
def test_bad_rules_fail_at_start_up_with_one_line(cleaned, tmp_path, binding, message):
  base, _, _ = cleaned
  target = str(tmp_path / 'never')
  args, env = _command(f'--input_dir={base / "corpus"}', f'--output_dir={target}',
                       f'--gin_bindings={binding}')
  done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
  assert done.returncode == 2
  assert done.stderr.strip().startswith(f'research-clean: error: {message}')
  assert len(done.stderr.strip().splitlines()) == 1
  assert os.listdir(tmp_path) == []


def test_a_corpus_emptied_by_cleaning_fails_and_leaves_nothing(tmp_path):
  _write(str(tmp_path / 'corpus'), {'a.txt': 'too short\n', 'b.txt': 'also short\n'})
  target = str(tmp_path / 'out')
  args, env = _command(f'--input_dir={tmp_path / "corpus"}', f'--output_dir={target}')
  done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
  assert done.returncode == 1
  assert done.stderr.strip() == ("research-clean: error: empty corpus after cleaning: all 2 "
                                 f"documents of {str(tmp_path / 'corpus')!r} were removed "
                                 "(word_count: 2)")
  assert sorted(os.listdir(tmp_path)) == ['corpus']


def test_missing_input_and_existing_output_are_refused(tmp_path):
  with pytest.raises(clean_lib.CleaningError, match='does not exist'):
    clean_lib.clean(str(tmp_path / 'nowhere'), str(tmp_path / 'out'))
  os.makedirs(tmp_path / 'out')
  with pytest.raises(clean_lib.CleaningError, match='already exists'):
    clean_lib.clean(str(tmp_path), str(tmp_path / 'out'))
  assert sorted(os.listdir(tmp_path)) == ['out']


def test_the_code_thresholds_file_parses_and_keeps_its_rules():
  import gin  # pylint: disable=g-import-not-at-top
  with gin.unlock_config():
    gin.clear_config()
    gin.parse_config_file(os.path.join(ROOT, 'gin_configs', 'data', 'cleaning_code.gin'))
    try:
      chosen = rules.make_rules()
    finally:
      gin.clear_config()
  assert [r.name for r in chosen][:2] == ['word_count', 'mean_word_length']
  assert chosen[0].min == 20 and dedup.NearDedupConfig().num_perm == 256


def test_the_cleaned_gin_file_points_the_trainer_at_the_dataset():
  import gin  # pylint: disable=g-import-not-at-top
  # Registers pipeline_source, which the file binds.
  import research.train.sources  # pylint: disable=g-import-not-at-top,unused-import
  with gin.unlock_config():
    gin.clear_config()
    gin.add_config_file_search_path(os.path.join(ROOT, 'gin_configs'))
    try:
      gin.parse_config_files_and_bindings(
          [os.path.join(ROOT, 'gin_configs', 'data', 'cleaned.gin')],
          ["CLEANED = 'prepared:/data/x'", 'TASK_FEATURE_LENGTHS = {}', 'BATCH_SIZE = 1'])
      bound = [gin.query_parameter(f'{c}.dataset') for c in
               ('pipeline_source', 'make_pipeline', 'make_eval_batches')]
      macro = gin.query_parameter('%CLEANED')
    finally:
      gin.clear_config()
  # A macro reference (%CLEANED) is a gin.macro configurable reference.
  keys = [(b.selector, b.config_key) for b in bound]
  assert keys == [('gin.macro', ('CLEANED', 'gin.macro'))] * 3
  assert macro == 'prepared:/data/x'


def test_a_prepared_name_without_a_dataset_fails_with_one_line(tmp_path):
  with pytest.raises(ValueError) as e:
    sources.get_source(f'prepared:{tmp_path}', 'train')
  assert str(e.value) == (f"dataset 'prepared:{tmp_path}': no prepared TFDS dataset at "
                          f"'{tmp_path}' (no dataset_info.json)")
