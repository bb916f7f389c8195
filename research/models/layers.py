"""Building blocks: dense projections, norms, MLPs and position encodings.

Every parameter carries logical axis names (`axes.py`) through
`nn.with_logical_partitioning`; the rules that map them onto the mesh are
configuration (research/parallel), never hard-coded here.
"""
import functools
import math
from typing import Any, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.models import axes
from research.models.config import TransformerConfig
from research.models.kernels import cpu_matmul


def dtype(name: str):
  return jnp.dtype(name)


def normal_init(std: float, logical_axes: Sequence[str]):
  return nn.with_logical_partitioning(nn.initializers.normal(std), tuple(logical_axes))


class DenseGeneral(nn.Module):
  """x contracted over `axis` with a kernel [*in_shape, *features].

  Written here rather than using nn.DenseGeneral because that one initializes a
  flattened 2-D kernel and reshapes it, which breaks logical names with more
  than two axes when shape checks re-run under a mesh.
  """
  features: Tuple[int, ...]
  axis: Tuple[int, ...]
  kernel_axes: Tuple[str, ...]
  std: float
  use_bias: bool
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x, weights_only: bool = False):
    """x @ kernel (+ bias); with `weights_only`, (kernel, bias or None) in the compute
    dtype instead, for a caller that fuses several projections into one dot."""
    axis = tuple(a % x.ndim for a in self.axis)
    in_shape = tuple(x.shape[a] for a in axis)
    kernel = self.param('kernel', normal_init(self.std, self.kernel_axes),
                        in_shape + self.features, self.param_dtype)
    bias = None
    if self.use_bias:
      bias = jnp.asarray(self.param('bias', nn.with_logical_partitioning(
          nn.initializers.zeros_init(), self.kernel_axes[len(axis):]),
                                    self.features, self.param_dtype), self.dtype)
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    if weights_only:
      return kernel, bias
    y = cpu_matmul.matmul_trailing(x, kernel, len(axis)) if axis == tuple(
        range(x.ndim - len(axis), x.ndim)) else jax.lax.dot_general(
            x, kernel, ((axis, tuple(range(len(axis)))), ((), ())))
    return y if bias is None else y + bias


def dense(config: TransformerConfig, features, in_axes, out_axes, *, name,
          axis=-1, std=None, use_bias=None):
  """A DenseGeneral whose kernel is [*in_axes, *out_axes] in logical names."""
  features = tuple(features) if isinstance(features, (tuple, list)) else (features,)
  axis = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
  return DenseGeneral(
      features=features, axis=axis, kernel_axes=tuple(in_axes) + tuple(out_axes),
      std=config.init_std if std is None else std,
      use_bias=config.use_bias if use_bias is None else use_bias,
      dtype=dtype(config.dtype), param_dtype=dtype(config.param_dtype), name=name)


def _rmsnorm(config, name):
  # T5LayerNorm / LlamaRMSNorm: no mean subtraction, no bias; statistics in
  # fp32 whatever the compute dtype.
  return nn.RMSNorm(epsilon=config.norm_eps, dtype=dtype(config.dtype),
                    param_dtype=dtype(config.param_dtype),
                    scale_init=nn.with_logical_partitioning(
                        nn.initializers.ones_init(), (axes.EMBED,)),
                    name=name)


def _layernorm(config, name):
  return nn.LayerNorm(epsilon=config.norm_eps, dtype=dtype(config.dtype),
                      param_dtype=dtype(config.param_dtype),
                      scale_init=nn.with_logical_partitioning(
                          nn.initializers.ones_init(), (axes.EMBED,)),
                      bias_init=nn.with_logical_partitioning(
                          nn.initializers.zeros_init(), (axes.EMBED,)),
                      name=name)


NORMS = {'rmsnorm': _rmsnorm, 'layernorm': _layernorm}
# Parameters per norm layer, used by the analytic accounting.
NORM_PARAMS_PER_DIM = {'rmsnorm': 1, 'layernorm': 2}


def make_norm(config: TransformerConfig, name: str) -> nn.Module:
  return NORMS[config.norm](config, name)


# gelu is the tanh approximation (GPT-2, and HF T5's "gelu_new" in gated-gelu);
# gelu_exact is BERT's erf form.
ACTIVATION_FNS = {
    'relu': nn.relu,
    'gelu': functools.partial(nn.gelu, approximate=True),
    'gelu_exact': functools.partial(nn.gelu, approximate=False),
    'silu': nn.silu,
    'swiglu': nn.silu,
    'geglu': functools.partial(nn.gelu, approximate=True),
    'reglu': nn.relu,
}


class MLP(nn.Module):
  """Position-wise feed-forward; gated (GLU) variants use wi_0 (activated) * wi_1."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, x_bld):
    cfg = self.config
    act = ACTIVATION_FNS[cfg.activation]
    hidden = cfg.ff_hidden
    if cfg.gated:
      h_blf = act(dense(cfg, hidden, [axes.EMBED], [axes.MLP], name='wi_0')(x_bld))
      h_blf = h_blf * dense(cfg, hidden, [axes.EMBED], [axes.MLP], name='wi_1')(x_bld)
    else:
      h_blf = act(dense(cfg, hidden, [axes.EMBED], [axes.MLP], name='wi')(x_bld))
    h_blf = nn.with_logical_constraint(h_blf, axes.ACT_BLF)
    return dense(cfg, cfg.d_model, [axes.MLP], [axes.EMBED], name='wo',
                 std=output_std(cfg))(h_blf)


def output_std(config: TransformerConfig) -> float:
  # GPT-2: residual-branch output projections scaled by 1/sqrt(2 * n_layer).
  depth = max(config.num_layers, config.encoder_layers, config.decoder_layers)
  return config.init_std / math.sqrt(2 * depth)


def token_embedding(config: TransformerConfig, name='token_embed') -> nn.Embed:
  return nn.Embed(num_embeddings=config.vocab_size, features=config.d_model,
                  dtype=dtype(config.dtype), param_dtype=dtype(config.param_dtype),
                  embedding_init=normal_init(config.init_std, (axes.VOCAB, axes.EMBED)),
                  name=name)


def sinusoidal_embedding(positions_bl, d_model: int, max_timescale=1.0e4):
  """Vaswani et al. 2017: sin on the first half of the channels, cos on the second."""
  half = d_model // 2
  inv_freq = jnp.exp(-math.log(max_timescale) * jnp.arange(half) / max(half - 1, 1))
  angles = positions_bl[..., None].astype(jnp.float32) * inv_freq
  emb = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
  return jnp.pad(emb, [(0, 0)] * (emb.ndim - 1) + [(0, d_model - 2 * half)])


class AbsolutePositions(nn.Module):
  """Additive position embeddings: learned (GPT-2, BERT, BART) or sinusoidal."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, positions_bl):
    cfg = self.config
    if cfg.position == 'learned':
      table = nn.Embed(num_embeddings=cfg.max_length, features=cfg.d_model,
                       dtype=dtype(cfg.dtype), param_dtype=dtype(cfg.param_dtype),
                       embedding_init=normal_init(cfg.init_std, (axes.LENGTH, axes.EMBED)),
                       name='embedding_table')
      return table(positions_bl)
    return sinusoidal_embedding(positions_bl, cfg.d_model).astype(dtype(cfg.dtype))


ADDITIVE_POSITIONS = ('learned', 'sinusoidal')


def apply_rope(x_blhd, positions_bl, theta: float):
  """Rotary embedding (Su et al. 2021) in the rotate-half layout of HF Llama."""
  d = x_blhd.shape[-1]
  inv_freq = 1.0 / (theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
  angles_bld = positions_bl[..., None].astype(jnp.float32) * inv_freq
  angles_bld = jnp.concatenate([angles_bld, angles_bld], axis=-1)
  cos = jnp.cos(angles_bld)[:, :, None, :]
  sin = jnp.sin(angles_bld)[:, :, None, :]
  x = x_blhd.astype(jnp.float32)
  x1, x2 = jnp.split(x, 2, axis=-1)
  rotated = jnp.concatenate([-x2, x1], axis=-1)
  return (x * cos + rotated * sin).astype(x_blhd.dtype)


def alibi_slopes(num_heads: int):
  """Press et al. 2022: geometric slopes 2^(-8i/n); for n not a power of two,
  the slopes of the closest power of two plus every other slope of twice it."""
  def power_of_two(n):
    start = 2.0 ** (-8.0 / n)
    return [start ** (i + 1) for i in range(n)]
  closest = 2 ** math.floor(math.log2(num_heads))
  slopes = power_of_two(closest)
  if closest < num_heads:
    slopes += power_of_two(2 * closest)[0::2][:num_heads - closest]
  return jnp.asarray(slopes, jnp.float32)


class AlibiBias(nn.Module):
  """-slope_h * |i - j|: equal to ALiBi's -slope * (i - j) under a causal mask,
  and its symmetric form for bidirectional (prefix, encoder) attention."""
  config: TransformerConfig
  bidirectional: bool = False

  def __call__(self, q_pos_bq, k_pos_bk):
    distance = jnp.abs(q_pos_bq[:, :, None] - k_pos_bk[:, None, :]).astype(jnp.float32)
    slopes = alibi_slopes(self.config.num_heads)
    return -slopes[None, :, None, None] * distance[:, None]


def t5_relative_bucket(relative_position, bidirectional: bool, num_buckets: int,
                       max_distance: int):
  """Bucket of (key - query) as in T5 (Raffel et al. 2020, mesh_tensorflow's
  _relative_position_bucket): exact for small distances, log-spaced up to
  max_distance, and the sign in a separate half when bidirectional."""
  bucket = jnp.zeros_like(relative_position)
  if bidirectional:
    num_buckets //= 2
    bucket += (relative_position > 0).astype(relative_position.dtype) * num_buckets
    distance = jnp.abs(relative_position)
  else:
    distance = -jnp.minimum(relative_position, 0)
  max_exact = num_buckets // 2
  is_small = distance < max_exact
  safe = jnp.maximum(distance, 1).astype(jnp.float32)
  large = max_exact + (jnp.log(safe / max_exact) / math.log(max_distance / max_exact)
                       * (num_buckets - max_exact)).astype(relative_position.dtype)
  large = jnp.minimum(large, num_buckets - 1)
  return bucket + jnp.where(is_small, distance, large)


class RelativePositionBias(nn.Module):
  """T5's bucketed relative attention bias, one table per stack shared by its layers."""
  config: TransformerConfig
  bidirectional: bool = True

  @nn.compact
  def __call__(self, q_pos_bq, k_pos_bk):
    cfg = self.config
    table = self.param(
        'rel_embedding',
        nn.with_logical_partitioning(nn.initializers.normal(cfg.init_std),
                                     (None, axes.HEADS)),
        (cfg.relative_num_buckets, cfg.num_heads), dtype(cfg.param_dtype))
    relative = k_pos_bk[:, None, :] - q_pos_bq[:, :, None]
    buckets_bqk = t5_relative_bucket(relative, self.bidirectional,
                                     cfg.relative_num_buckets, cfg.relative_max_distance)
    bias_bqkh = jnp.asarray(table, jnp.float32)[buckets_bqk]
    return jnp.transpose(bias_bqkh, (0, 3, 1, 2))


# Position schemes that act as an additive attention bias.
POSITION_BIASES = {'alibi': AlibiBias, 't5_relative': RelativePositionBias}


def positions_from_segments(segment_ids_bl):
  """Positions that restart at 0 at the start of every packed segment."""
  length = segment_ids_bl.shape[-1]
  index = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), segment_ids_bl.shape)
  previous = jnp.pad(segment_ids_bl[:, :-1], [(0, 0), (1, 0)], constant_values=-1)
  starts = jnp.where(segment_ids_bl != previous, index, 0)
  return index - jax.lax.cummax(starts, axis=1)
