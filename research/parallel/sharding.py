"""Shardings for parameters, optimizer state and batches, derived from logical names.

Parameters carry logical names (`nn.LogicallyPartitioned` boxes from the models); the rules
table (rules.py) maps them onto the mesh. Optimizer-state leaves that mirror a parameter
(Adam moments, ...) take that parameter's sharding; anything else (step counts, Adafactor's
factored row/column statistics) is replicated.
"""
import logging
import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from research.parallel import rules as rules_lib

PyTree = Any


def _is_box(x) -> bool:
  return isinstance(x, nn.Partitioned)


def _axis_size(mesh: Mesh, axes) -> int:
  if axes is None:
    return 1
  if isinstance(axes, str):
    axes = (axes,)
  return math.prod(mesh.shape[a] for a in axes)


def fit_spec(spec: P, shape: tuple[int, ...], mesh: Mesh, what: str = '') -> P:
  """Drops the mesh axes of any dimension they do not divide (that dimension is replicated).

  jit refuses uneven shardings of arguments; a 2-way tensor split of 1 KV head, say, is
  better replicated than an error. Logged, since it changes memory use.
  """
  entries = list(spec) + [None] * (len(shape) - len(spec))
  for i, (axes, dim) in enumerate(zip(entries, shape)):
    size = _axis_size(mesh, axes)
    if size > 1 and dim % size:
      logging.info('replicating dim %d (size %d) of %s: not divisible by %s=%d',
                   i, dim, what, axes, size)
      entries[i] = None
  return P(*entries)


def param_shardings(boxed_params: PyTree, mesh: Mesh, rules: rules_lib.Rules) -> PyTree:
  """NamedShardings for an (abstract) boxed parameter tree; returns the unboxed structure."""
  def one(leaf):
    if _is_box(leaf):
      value = leaf.value
      names = leaf.get_partition_spec()
      spec = nn.logical_to_mesh_axes(tuple(names), rules)
    else:  # an unannotated parameter: replicated
      value, spec = leaf, P()
    return NamedSharding(mesh, fit_spec(spec, value.shape, mesh, 'parameter'))
  return jax.tree.map(one, boxed_params, is_leaf=_is_box)


def _path_key(path) -> tuple:
  return tuple(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))))
               for k in path)


def shardings_like_params(tree: PyTree, params: PyTree, params_shardings: PyTree,
                          mesh: Mesh) -> PyTree:
  """Shardings for a tree (optimizer state) whose leaves mirror parameters by path suffix."""
  by_path: dict[tuple, tuple] = {}
  flat_params = jax.tree_util.tree_flatten_with_path(params)[0]
  flat_shardings = jax.tree.leaves(params_shardings)
  for (path, value), sharding in zip(flat_params, flat_shardings):
    by_path[_path_key(path)] = (tuple(value.shape), sharding)

  replicated = NamedSharding(mesh, P())

  def one(path, leaf):
    key = _path_key(path)
    for start in range(len(key)):
      match = by_path.get(key[start:])
      if match is not None and match[0] == tuple(np.shape(leaf)):
        return match[1]
    return replicated
  return jax.tree_util.tree_map_with_path(one, tree)


def batch_spec(rules: rules_lib.Rules) -> P:
  """PartitionSpec of a [batch, ...] array: the batch dim sharded as `batch` says."""
  return P(nn.logical_to_mesh_axes(('batch',), rules)[0])


def batch_shardings(batch: Mapping[str, Any], mesh: Mesh,
                    rules: rules_lib.Rules) -> dict[str, NamedSharding]:
  spec = batch_spec(rules)
  return {k: NamedSharding(mesh, spec) for k in batch}


def check_batch_divisible(batch_size: int, mesh: Mesh, rules: rules_lib.Rules) -> None:
  size = _axis_size(mesh, batch_spec(rules)[0])
  if batch_size % size:
    raise ValueError(f'batch size {batch_size} is not divisible by the {size} devices '
                     f'the batch is sharded over ({batch_spec(rules)})')


def host_batch_to_global(batch: Mapping[str, np.ndarray],
                         shardings: Mapping[str, NamedSharding]) -> dict[str, jax.Array]:
  """Assembles each host's slice of the batch into global arrays (multi-host safe).

  On one host this is a sharded device_put; across hosts every process passes the rows it
  loaded (the data pipeline shards by process index) and the global batch is their union.
  """
  return {k: jax.make_array_from_process_local_data(shardings[k], np.asarray(v))
          for k, v in batch.items()}


def describe_shardings(params_shardings: PyTree) -> dict[str, str]:
  """'path/to/kernel' -> 'PartitionSpec(...)', for logs and tests."""
  flat = jax.tree_util.tree_flatten_with_path(params_shardings)[0]
  return {'/'.join(_path_key(path)): str(s.spec) for path, s in flat}
