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


def resolve_shape(config: MeshConfig, num_devices: int) -> tuple[int, int, int]:
  """Replaces a -1 axis and checks that the product equals `num_devices`."""
  shape = list(config.shape())
  described = ', '.join(f'{n}={s!r}' for n, s in zip(MESH_AXES, shape))
  if not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
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


def make_mesh(config: Optional[MeshConfig] = None,
              devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """Builds the mesh; raises MeshError with one clear line when it cannot."""
  config = config or MeshConfig()
  devices = list(jax.devices() if devices is None else devices)
  if not isinstance(config.num_devices, int):
    raise MeshError(f'MeshConfig.num_devices must be an integer, got {config.num_devices!r}')
  if config.num_devices != -1:
    if not 0 < config.num_devices <= len(devices):
      raise MeshError(f'MeshConfig.num_devices={config.num_devices} but '
                      f'{len(devices)} devices are available')
    devices = devices[:config.num_devices]
  shape = resolve_shape(config, len(devices))
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
