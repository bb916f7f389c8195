"""research.runs: the run directory's writers and readers."""
import dataclasses
import json
import os
import stat

import jax
import numpy as np
import pytest

from research import models
from research import runs
from research.scaling import report

TINY = models.TransformerConfig(family='decoder', vocab_size=32, d_model=16, num_layers=1,
                                num_heads=2, d_ff=32, max_length=16)


def _mode(path) -> int:
  return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writers_leave_whole_files_readable_by_all(tmp_path):
  old_umask = os.umask(0o022)
  try:
    runs.write_text_atomic(str(tmp_path / 'a' / 'config.gin'), 'x = 1\n')
    runs.write_json_atomic(str(tmp_path / 'info.json'), {'b': 1, 'a': np.float32(0.5)})
    report.write_json_atomic(str(tmp_path / 'fits.json'), {'b': np.float64(2.0), 'a': 1})
  finally:
    os.umask(old_umask)
  assert (tmp_path / 'a' / 'config.gin').read_text() == 'x = 1\n'
  assert (tmp_path / 'info.json').read_text() == '{\n  "a": "0.5",\n  "b": 1\n}\n'
  assert json.loads((tmp_path / 'fits.json').read_text()) == {'b': 2.0, 'a': 1}
  for name in ('a/config.gin', 'info.json', 'fits.json'):
    assert _mode(tmp_path / name) == 0o644, name
  assert sorted(os.listdir(tmp_path)) == ['a', 'fits.json', 'info.json']  # no temp files


def test_a_failed_write_keeps_the_old_file(tmp_path):
  path = tmp_path / 'out.txt'
  runs.write_text_atomic(str(path), 'old\n')

  with pytest.raises(TypeError):
    runs.write_text_atomic(str(path), 42)  # not text: fails inside the write
  assert path.read_text() == 'old\n' and os.listdir(tmp_path) == ['out.txt']


def test_completion_marker_and_finding_runs(tmp_path):
  for name in ('a', 'b', 'c', 'd'):
    (tmp_path / name).mkdir()
  (tmp_path / 'a' / runs.RUN_INFO).write_text('{}')
  (tmp_path / 'b' / runs.CHECKPOINTS).mkdir()  # started, killed before run_info.json
  (tmp_path / 'not_a_run.txt').write_text('')
  assert runs.find_runs(str(tmp_path)) == [str(tmp_path / 'a'), str(tmp_path / 'b')]
  assert not runs.is_complete(str(tmp_path / 'a'))
  runs.mark_complete(str(tmp_path / 'a'), {'step': 3})
  assert runs.is_complete(str(tmp_path / 'a'))
  assert json.loads((tmp_path / 'a' / runs.COMPLETION_MARKER).read_text()) == {'step': 3}
  with pytest.raises(runs.RunDirError, match='is not a directory'):
    runs.find_runs(str(tmp_path / 'missing'))
  with pytest.raises(runs.RunDirError, match='run_info.json unreadable'):
    runs.read_run_info(str(tmp_path / 'c'))


def test_load_metrics_is_one_row_per_logged_step(tmp_path):
  runs.append_jsonl(str(tmp_path / runs.METRICS), {'step': 10, 'train_loss': 3.0})
  runs.append_jsonl(str(tmp_path / runs.METRICS), {'step': 20, 'train_loss': 'nan',
                                                   'eval_loss': 2.5})
  frame = runs.load_metrics(str(tmp_path))
  assert list(frame['step']) == [10, 20]
  assert frame['train_loss'].iloc[0] == 3.0 and np.isnan(frame['train_loss'].iloc[1])
  assert np.isnan(frame['eval_loss'].iloc[0]) and frame['eval_loss'].iloc[1] == 2.5
  with open(tmp_path / runs.METRICS, 'a') as f:
    f.write('{"step": 30, "tra')
  with pytest.raises(runs.RunDirError, match='line 3 is torn'):
    runs.load_metrics(str(tmp_path))
  with pytest.raises(runs.RunDirError, match='no metrics.jsonl'):
    runs.load_metrics(str(tmp_path / 'elsewhere'))


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  directory = tmp_path_factory.mktemp('run')
  runs.write_json_atomic(str(directory / runs.RUN_INFO),
                         {'architecture': dataclasses.asdict(TINY)})
  params = jax.tree.map(lambda s: np.full(s.shape, 0.5, s.dtype), runs.abstract_params(TINY))
  checkpointer = ocp.StandardCheckpointer()
  for step in (0, 5):
    checkpointer.save(str(directory / runs.CHECKPOINTS / str(step) / 'state'),
                      {'step': np.int32(step), 'params': params})
  checkpointer.wait_until_finished()
  return str(directory), params


def test_params_of_the_latest_checkpoint_are_shape_checked(run_dir):
  directory, params = run_dir
  assert runs.checkpoint_steps(directory) == [0, 5]
  loaded, step = runs.load_params(directory)
  assert step == 5
  jax.tree.map(np.testing.assert_array_equal, loaded, params)
  assert runs.load_params(directory, 0)[1] == 0
  with pytest.raises(runs.RunDirError, match=r"parameter .*'mlp'.* has shape .* but the "
                                             r'model config gives'):
    runs.load_params(directory, config=TINY.replace(d_ff=48))
  with pytest.raises(runs.RunDirError, match='has no parameter'):
    runs.load_params(directory, config=TINY.replace(num_layers=2))
  with pytest.raises(runs.RunDirError, match=r'no checkpoint at step 7 .*\(steps: \[0, 5\]\)'):
    runs.restore_params(directory, 7)


def test_an_unreadable_checkpoint_is_one_line(run_dir, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  directory, _ = run_dir
  broken = tmp_path / 'broken'
  shutil.copytree(directory, broken)
  for dirpath, _, files in os.walk(broken / runs.CHECKPOINTS / '5'):
    for name in files:
      with open(os.path.join(dirpath, name), 'wb') as f:
        f.write(b'garbage')
  with pytest.raises(runs.CheckpointError, match='checkpoint 5 in .* cannot be read') as e:
    runs.load_params(str(broken))
  assert '\n' not in str(e.value)


def test_scaling_load_results_reads_a_csv_or_a_sweep(tmp_path):
  from research import scaling  # pylint: disable=g-import-not-at-top
  from tests.scaling import test_sweep  # pylint: disable=g-import-not-at-top
  test_sweep._fake_run(tmp_path, 'a')  # pylint: disable=protected-access
  test_sweep._fake_run(tmp_path, 'b', marker=False)  # pylint: disable=protected-access
  collected = scaling.load_results(str(tmp_path))
  assert set(collected['run_id']) == {'a'} and list(collected['step']) == [10, 20, 30]
  path, _ = scaling.results.write_results(str(tmp_path))
  from_csv = scaling.load_results(path)
  assert list(from_csv.columns) == list(scaling.results.COLUMNS)
  assert from_csv['eval_loss'].tolist() == collected['eval_loss'].tolist()
  (tmp_path / 'results.csv').write_text('run_id,step\nx,1\n')  # the sweep's own table wins
  assert scaling.load_results(str(tmp_path))['run_id'].tolist() == ['x']
  with pytest.raises(runs.RunDirError, match='no results table or sweep directory'):
    scaling.load_results(str(tmp_path / 'missing.csv'))
