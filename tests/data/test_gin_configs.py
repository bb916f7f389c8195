"""Every data / objective gin file parses and builds a working pipeline."""
import glob
import os

import gin
import numpy as np
import pytest

from research.data import pipeline

ROOT = os.path.join(os.path.dirname(__file__), '..', '..', 'gin_configs')


@pytest.mark.parametrize('objective_file', sorted(
    os.path.basename(p) for p in glob.glob(os.path.join(ROOT, 'objectives', '*.gin'))))
def test_objective_configs(objective_file, data_dir):
  gin.clear_config()
  gin.add_config_file_search_path(ROOT)
  encdec = objective_file == 'span_corruption.gin'
  lengths = "{'inputs': 512, 'targets': 114}" if encdec else "{'inputs': 512, 'targets': 512}"
  gin.parse_config_files_and_bindings(
      [os.path.join(ROOT, 'data', 'python_stdlib.gin'),
       os.path.join(ROOT, 'objectives', objective_file)],
      [f'TASK_FEATURE_LENGTHS = {lengths}', 'BATCH_SIZE = 2',
       f'make_pipeline.data_dir = {data_dir!r}'] +
      (["make_pipeline.family = 'encoder_decoder'"] if encdec else []))
  try:
    p = pipeline.make_pipeline(prefetch=0)
    batch = next(p)
  finally:
    gin.clear_config()
  assert all(v.dtype == np.int32 and v.shape[0] == 2 for v in batch.values())
