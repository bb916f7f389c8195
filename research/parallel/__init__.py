"""Mesh, logical-axis rules, shardings and multi-host start-up."""
from research.parallel.distributed import (DistributedError, HostShard, any_process,
                                           check_same_config, first_differing_process,
                                           host_shard, initialize)
from research.parallel.mesh import MESH_AXES, MeshConfig, MeshError, describe, make_mesh
from research.parallel.rules import LOGICAL_AXES, RULE_PRESETS, logical_axis_rules
from research.parallel.sharding import (batch_shardings, batch_spec, check_batch_divisible,
                                        describe_shardings, fit_spec, host_batch_to_global,
                                        param_shardings, shardings_like_params)
