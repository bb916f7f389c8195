"""Device mesh over the (`data`, `fsdp`, `tensor`) axes, sized from gin.

One axis may be -1, meaning "all devices the other axes leave". A mesh that cannot be
built from the devices at hand raises `MeshError` with a one-line message, so entry points
can fail at start-up before any work.
"""
import dataclasses
import math
from typing import Optional, Sequence

import gin
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh

MESH_AXES = ('data', 'fsdp', 'tensor')


class MeshError(ValueError):
  """A mesh shape that does not fit the available devices."""


@gin.configurable
@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Mesh shape. Exactly one axis may be -1 (= the remaining devices)."""
  data: int = -1     # pure data parallelism: replicas that each see a slice of the batch
  fsdp: int = 1      # ZeRO-3 style: batch sharded and parameters sharded over `embed`
  tensor: int = 1    # Megatron style: heads / mlp / vocab split across devices
  num_devices: int = -1  # use the first this many devices; -1 = all of them

  def shape(self) -> tuple[int, int, int]:
    return (self.data, self.fsdp, self.tensor)


def _is_int(x) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def fits_any_device_count(config: MeshConfig) -> bool:
  """True for the default mesh (data = -1, nothing else fixed), which any device count fits."""
  values = (*config.shape(), config.num_devices)
  return all(_is_int(v) for v in values) and values == (-1, 1, 1, -1)


def resolve_shape(config: MeshConfig, num_devices: int) -> tuple[int, int, int]:
  """Replaces a -1 axis and checks that the product equals `num_devices`."""
  shape = list(config.shape())
  described = ', '.join(f'{n}={s!r}' for n, s in zip(MESH_AXES, shape))
  if not all(_is_int(s) for s in shape):
    raise MeshError(f'mesh ({described}): axis sizes must be integers')
  if any(s == 0 or s < -1 for s in shape):
    raise MeshError(f'mesh ({described}): axis sizes must be positive or -1')
  free = [i for i, s in enumerate(shape) if s == -1]
  if len(free) > 1:
    raise MeshError(f'mesh ({described}): at most one axis may be -1')
  fixed = math.prod(s for s in shape if s != -1)
  if free:
    if num_devices % fixed:
      raise MeshError(
          f'mesh ({described}) does not fit {num_devices} devices: '
          f'{num_devices} is not divisible by {fixed}')
    shape[free[0]] = num_devices // fixed
  elif fixed != num_devices:
    raise MeshError(
        f'mesh ({described}) needs {fixed} devices but {num_devices} are available')
  return tuple(shape)


def shape_on(config: MeshConfig, available: int) -> tuple[int, int, int]:
  """The mesh shape on the first `config.num_devices` (-1: all) of `available` devices."""
  if not _is_int(config.num_devices):
    raise MeshError(f'MeshConfig.num_devices must be an integer, got {config.num_devices!r}')
  num_devices = available
  if config.num_devices != -1:
    if not 0 < config.num_devices <= available:
      raise MeshError(f'MeshConfig.num_devices={config.num_devices} but '
                      f'{available} devices are available')
    num_devices = config.num_devices
  return resolve_shape(config, num_devices)


def make_mesh(config: Optional[MeshConfig] = None,
              devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """Builds the mesh; raises MeshError with one clear line when it cannot."""
  config = config or MeshConfig()
  devices = list(jax.devices() if devices is None else devices)
  shape = shape_on(config, len(devices))
  devices = devices[:math.prod(shape)]
  try:
    # Physical layout for TPU/GPU slices (neighbours on the fast axes); on CPU it is
    # just a reshape.
    device_array = mesh_utils.create_device_mesh(shape, devices=devices)
  except (ValueError, AssertionError, NotImplementedError):
    device_array = np.asarray(devices).reshape(shape)
  # Auto axes: shardings come from jit in/out shardings and logical constraints.
  return Mesh(device_array, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def describe(mesh: Mesh) -> str:
  return ', '.join(f'{name}={size}' for name, size in mesh.shape.items())
