"""1 device vs a (data=2, fsdp=2, tensor=2) mesh, in a child process with 8 CPU devices."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def results():
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=8',
         'JAX_PLATFORMS': 'cpu'}
  proc = subprocess.run([sys.executable, '-m', 'tests.parallel.sharded_checks'], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  line = [l for l in proc.stdout.splitlines() if l.startswith('RESULTS ')][-1]
  return json.loads(line[len('RESULTS '):])


def test_child_sees_eight_devices(results):
  assert results['device_count'] == 8


@pytest.mark.parametrize('family', ['decoder', 'encoder_decoder'])
def test_ten_steps_on_one_device_equal_the_sharded_mesh(results, family):
  one, cube = results[family]['one'], results[family]['cube']
  assert len(one) == len(cube) == 10
  np.testing.assert_allclose(cube, one, atol=1e-4, rtol=0)
  assert one[-1] < one[0]  # it trained, so the comparison is not of constants


def test_parameters_are_sharded_as_the_rules_say(results):
  specs = results['specs']['fsdp_tensor']
  # embed -> fsdp, mlp/heads/vocab -> tensor; head_dim unsharded.
  assert specs['mlp_wi']['spec'] == ['fsdp', 'tensor']
  assert specs['mlp_wi']['shard_shape'] == [16, 32]  # [32, 64] split 2 x 2
  assert specs['mlp_wo']['spec'] == ['tensor', 'fsdp']
  assert specs['query']['spec'] == ['fsdp', 'tensor', None]
  assert specs['query']['shard_shape'] == [16, 2, 8]
  assert specs['out']['spec'] == ['tensor', None, 'fsdp']
  assert specs['embedding']['spec'] == ['tensor', 'fsdp']
  assert specs['norm']['spec'] == ['fsdp']
  # Optimizer moments follow their parameters (ZeRO-3).
  assert specs['mu_mlp_wi'] == specs['mlp_wi']


def test_data_parallel_preset_replicates_parameters(results):
  for name, spec in results['specs']['data_parallel'].items():
    assert spec['shard_shape'] == spec['shape'], name


def test_num_devices_takes_the_first_devices(results):
  subset = results['subset']
  assert subset['shape'] == {'data': 2, 'fsdp': 2, 'tensor': 1}
  assert subset['ids'] == subset['first_ids'] and len(subset['ids']) == 4


def test_a_mesh_that_does_not_fit_is_one_clear_line(results):
  message = results['bad_mesh']
  assert message == 'mesh (data=3, fsdp=2, tensor=2) needs 12 devices but 8 are available'
