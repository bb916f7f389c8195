"""TFDS builders and dataset names; bad input fails with one clear error."""
import pytest

from research.data import builders, sources


def test_python_stdlib_builder(data_dir):
  b = sources.get_builder('python_stdlib', data_dir)
  assert b.info.metadata['python_version'].count('.') == 2
  assert b.info.splits['train'].num_examples > 1000
  assert b.info.splits['validation'].num_examples > 10
  src = sources.get_source('python_stdlib', 'validation', data_dir=data_dir)
  assert 'import' in ''.join(src.document(i) for i in src.indices)


def test_text_files_split_by_path_hash(tmp_path, data_dir):
  d = tmp_path / 'corpus'
  (d / 'sub').mkdir(parents=True)
  for i in range(40):
    (d / 'sub' / f'{i}.txt').write_text(f'document {i}\n')
  b = sources.get_builder(f'text_files:{d}', data_dir)
  rel = [f'sub/{i}.txt' for i in range(40)]
  train, validation = builders.split_files(rel, builders.VALIDATION_FRACTION)
  assert b.info.splits['train'].num_examples == len(train)
  assert b.info.splits['validation'].num_examples == len(validation) >= 1
  # The split is a function of each path alone.
  assert builders.split_files(list(reversed(rel)), 0.02) == (train, validation)
  src = sources.get_source(f'text_files:{d}/**/*.txt', 'train', data_dir=data_dir)
  assert len(src) == len(train)


def test_empty_corpus(tmp_path, data_dir):
  d = tmp_path / 'empty'
  d.mkdir()
  (d / 'a.txt').write_text('')
  (d / 'b.txt').write_text('   \n')
  with pytest.raises(ValueError, match='empty corpus'):
    sources.get_builder(f'text_files:{d}', data_dir)


def test_no_text_files(tmp_path, data_dir):
  with pytest.raises(ValueError, match='no text files found'):
    sources.get_builder(f'text_files:{tmp_path}', data_dir)
  with pytest.raises(ValueError, match='no text files found'):
    sources.get_builder(f'text_files:{tmp_path}/*.md', data_dir)


def test_undecodable_bytes(tmp_path, data_dir):
  d = tmp_path / 'bad'
  d.mkdir()
  (d / 'ok.txt').write_text('fine')
  (d / 'latin1.txt').write_bytes('caf\xe9'.encode('latin-1'))
  with pytest.raises(ValueError, match=r'latin1.txt is not UTF-8 text'):
    sources.get_builder(f'text_files:{d}', data_dir)


def test_unknown_dataset_name(data_dir):
  with pytest.raises(ValueError, match="unknown dataset name 'no_such_corpus'"):
    sources.get_builder('no_such_corpus', data_dir)


def test_registered_tfds_dataset_not_prepared(data_dir):
  with pytest.raises(ValueError, match="dataset 'lm1b' is not prepared"):
    sources.get_builder('lm1b', data_dir)


def test_bad_split_and_feature(data_dir):
  with pytest.raises(ValueError, match="no split 'test'"):
    sources.get_source('python_stdlib', 'test', data_dir=data_dir)
  with pytest.raises(ValueError, match="no feature 'content'"):
    sources.get_source('python_stdlib', 'train', data_dir=data_dir, feature_key='content')
