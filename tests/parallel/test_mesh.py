"""Mesh shapes, rules tables and spec fitting, on the test process's one device."""
import jax
import pytest
from jax.sharding import PartitionSpec as P

from research import parallel
from research.parallel import mesh as mesh_lib


@pytest.mark.parametrize('config,devices,want', [
    (parallel.MeshConfig(), 8, (8, 1, 1)),
    (parallel.MeshConfig(data=2, fsdp=-1, tensor=2), 8, (2, 2, 2)),
    (parallel.MeshConfig(data=1, fsdp=4, tensor=-1), 8, (1, 4, 2)),
    (parallel.MeshConfig(data=2, fsdp=2, tensor=2), 8, (2, 2, 2)),
])
def test_resolve_shape(config, devices, want):
  assert mesh_lib.resolve_shape(config, devices) == want


@pytest.mark.parametrize('config,devices,message', [
    (parallel.MeshConfig(data=2, fsdp=2, tensor=2), 1,
     'mesh (data=2, fsdp=2, tensor=2) needs 8 devices but 1 are available'),
    (parallel.MeshConfig(data=-1, fsdp=3), 8,
     'mesh (data=-1, fsdp=3, tensor=1) does not fit 8 devices: 8 is not divisible by 3'),
    (parallel.MeshConfig(data=-1, fsdp=-1), 8,
     'mesh (data=-1, fsdp=-1, tensor=1): at most one axis may be -1'),
    (parallel.MeshConfig(data=0), 8,
     'mesh (data=0, fsdp=1, tensor=1): axis sizes must be positive or -1'),
    (parallel.MeshConfig(data='2'), 8,
     "mesh (data='2', fsdp=1, tensor=1): axis sizes must be integers"),
])
def test_bad_meshes_fail_with_one_line(config, devices, message):
  with pytest.raises(parallel.MeshError) as info:
    mesh_lib.resolve_shape(config, devices)
  assert str(info.value) == message and '\n' not in message


def test_shape_on_takes_the_first_num_devices_and_checks_types():
  assert mesh_lib.shape_on(parallel.MeshConfig(), 8) == (8, 1, 1)
  assert mesh_lib.shape_on(parallel.MeshConfig(fsdp=2, num_devices=4), 8) == (2, 2, 1)
  for config, message in (
      (parallel.MeshConfig(num_devices=9), 'MeshConfig.num_devices=9 but 8 devices are available'),
      (parallel.MeshConfig(num_devices='4'), "MeshConfig.num_devices must be an integer, got '4'"),
      (parallel.MeshConfig(num_devices=True), 'MeshConfig.num_devices must be an integer'),
      (parallel.MeshConfig(fsdp=True), 'axis sizes must be integers')):
    with pytest.raises(parallel.MeshError, match=message):
      mesh_lib.shape_on(config, 8)
  assert mesh_lib.fits_any_device_count(parallel.MeshConfig())
  for config in (parallel.MeshConfig(fsdp=2), parallel.MeshConfig(num_devices=1),
                 parallel.MeshConfig(fsdp=1.0), parallel.MeshConfig(fsdp=True),
                 parallel.MeshConfig(data=-1.0)):
    assert not mesh_lib.fits_any_device_count(config), config


def test_make_mesh_on_this_host():
  mesh = parallel.make_mesh(parallel.MeshConfig())
  assert mesh.axis_names == ('data', 'fsdp', 'tensor')
  assert mesh.shape['data'] == jax.device_count()
  with pytest.raises(parallel.MeshError, match='needs'):
    parallel.make_mesh(parallel.MeshConfig(data=jax.device_count() + 1))


def test_rule_presets_map_logical_axes():
  import flax.linen as nn
  tp = parallel.logical_axis_rules('fsdp_tensor')
  assert nn.logical_to_mesh_axes(('embed', 'mlp'), tp) == P('fsdp', 'tensor')
  assert nn.logical_to_mesh_axes(('vocab', 'embed'), tp) == P('tensor', 'fsdp')
  # On activations the batch takes fsdp first, so embed stays unsharded.
  assert nn.logical_to_mesh_axes(('batch', 'length', 'embed'), tp) == P(
      ('data', 'fsdp'), None, None)
  dp = parallel.logical_axis_rules('data_parallel')
  assert nn.logical_to_mesh_axes(('embed', 'mlp'), dp) == P(None, None)
  fsdp = parallel.logical_axis_rules('fsdp', overrides=[('mlp', 'tensor')])
  assert nn.logical_to_mesh_axes(('embed', 'mlp'), fsdp) == P('fsdp', 'tensor')
  with pytest.raises(ValueError, match='unknown logical_axis_rules preset'):
    parallel.logical_axis_rules('zero4')
  with pytest.raises(ValueError, match='unknown logical axis'):
    parallel.logical_axis_rules(overrides=[('channels', 'tensor')])


def test_every_logical_axis_has_a_rule():
  for preset in parallel.RULE_PRESETS:
    named = {name for name, _ in parallel.logical_axis_rules(preset)}
    assert named >= set(parallel.LOGICAL_AXES)


def test_fit_spec_keeps_size_one_axes():
  mesh = parallel.make_mesh(parallel.MeshConfig(num_devices=1))
  assert parallel.fit_spec(P('fsdp', 'tensor'), (3, 5), mesh) == P('fsdp', 'tensor')


def test_fit_spec_on_an_abstract_8_device_mesh():
  # fit_spec only reads mesh.shape, so a stand-in with 2x2x2 axes checks the arithmetic.
  class Shape:
    shape = {'data': 2, 'fsdp': 2, 'tensor': 2}
  assert parallel.fit_spec(P('fsdp', 'tensor'), (4, 6), Shape) == P('fsdp', 'tensor')
  assert parallel.fit_spec(P('fsdp', 'tensor'), (4, 1), Shape) == P('fsdp', None)
  assert parallel.fit_spec(P(('data', 'fsdp')), (6,), Shape) == P(None)
