"""Building blocks: dense projections, norms, MLPs and position encodings.

Every parameter carries logical axis names (`axes.py`) through
`nn.with_logical_partitioning`; the rules that map them onto the mesh are
configuration (research/parallel), never hard-coded here.
"""
import functools
import math
from typing import Any, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research.models import axes
from research.models import config as config_lib
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

  With `lora_rank` > 0 (PEFT, research/models/peft.py) it also holds LoRA's
  `lora_a` [*in_shape, r] and `lora_b` [r, *features] (Hu et al. 2021) and adds
  lora_scale * dropout(x) A B to the output; B starts at 0, so the output starts equal
  to the base projection's bit for bit.
  """
  features: Tuple[int, ...]
  axis: Tuple[int, ...]
  kernel_axes: Tuple[str, ...]
  std: float
  use_bias: bool
  dtype: Any
  param_dtype: Any
  lora_rank: int = 0
  lora_scale: float = 1.0
  lora_dropout: float = 0.0
  lora_init: str = 'kaiming'

  @nn.compact
  def __call__(self, x, weights_only: bool = False, deterministic: bool = True):
    """x @ kernel (+ bias); with `weights_only`, (kernel, bias or None) in the compute
    dtype instead, for a caller that fuses several projections into one dot (a LoRA
    projection returns its merged kernel W + scale A B then, without dropout)."""
    axis = tuple(a % x.ndim for a in self.axis)
    in_shape = tuple(x.shape[a] for a in axis)
    kernel = self.param('kernel', normal_init(self.std, self.kernel_axes),
                        in_shape + self.features, self.param_dtype)
    bias = None
    if self.use_bias:
      bias = jnp.asarray(self.param('bias', nn.with_logical_partitioning(
          nn.initializers.zeros_init(), self.kernel_axes[len(axis):]),
                                    self.features, self.param_dtype), self.dtype)
    lora = self._lora_params(in_shape) if self.lora_rank else None
    if weights_only:
      if lora is not None:
        kernel = kernel + self.lora_scale * jnp.tensordot(lora[0], lora[1], axes=1)
      x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
      return kernel, bias
    x_in = x
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    y = self._contract(x, kernel, axis)
    if lora is not None:
      h = x_in
      if self.lora_dropout:
        h = nn.Dropout(self.lora_dropout)(h, deterministic=deterministic)
      h, a, b = nn.dtypes.promote_dtype(h, *lora, dtype=self.dtype)
      y = y + self.lora_scale * jnp.tensordot(self._contract(h, a, axis), b, axes=1)
    return y if bias is None else y + bias

  def _contract(self, x, kernel, axis):
    return cpu_matmul.matmul_trailing(x, kernel, len(axis)) if axis == tuple(
        range(x.ndim - len(axis), x.ndim)) else jax.lax.dot_general(
            x, kernel, ((axis, tuple(range(len(axis)))), ((), ())))

  def _lora_params(self, in_shape):
    """(A [*in_shape, r], B [r, *features]). A: HF peft's default Kaiming-uniform with
    a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), or N(0, 1/r) ('normal', peft's
    'gaussian'); B: zeros (Hu et al. 2021 sec. 4.1)."""
    n_in = len(in_shape)
    fan_in = int(np.prod(in_shape))
    if self.lora_init == 'kaiming':
      bound = 1.0 / math.sqrt(fan_in)
      a_init = lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound)
    else:
      a_init = nn.initializers.normal(1.0 / self.lora_rank)
    a = self.param('lora_a', nn.with_logical_partitioning(
        a_init, self.kernel_axes[:n_in] + (None,)), in_shape + (self.lora_rank,),
                   self.param_dtype)
    b = self.param('lora_b', nn.with_logical_partitioning(
        nn.initializers.zeros_init(), (None,) + self.kernel_axes[n_in:]),
                   (self.lora_rank,) + self.features, self.param_dtype)
    return a, b


def dense(config: TransformerConfig, features, in_axes, out_axes, *, name,
          axis=-1, std=None, use_bias=None):
  """A DenseGeneral whose kernel is [*in_axes, *out_axes] in logical names; with LoRA
  on (config.peft), the projections it targets by name also get their A and B."""
  features = tuple(features) if isinstance(features, (tuple, list)) else (features,)
  axis = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
  lora = {}
  if config.peft_method == 'lora' and name in config.peft.lora_modules:
    lora = dict(lora_rank=config.peft.lora_rank, lora_scale=config.peft.lora_scale,
                lora_dropout=config.peft.lora_dropout, lora_init=config.peft.lora_init)
  return DenseGeneral(
      features=features, axis=axis, kernel_axes=tuple(in_axes) + tuple(out_axes),
      std=config.init_std if std is None else std,
      use_bias=config.use_bias if use_bias is None else use_bias,
      dtype=dtype(config.dtype), param_dtype=dtype(config.param_dtype), name=name, **lora)


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
  def __call__(self, x_bld, deterministic: bool = True):
    cfg = self.config
    act = ACTIVATION_FNS[cfg.activation]
    hidden = cfg.ff_hidden
    kw = dict(deterministic=deterministic)
    if cfg.gated:
      h_blf = act(dense(cfg, hidden, [axes.EMBED], [axes.MLP], name='wi_0')(x_bld, **kw))
      h_blf = h_blf * dense(cfg, hidden, [axes.EMBED], [axes.MLP], name='wi_1')(x_bld, **kw)
    else:
      h_blf = act(dense(cfg, hidden, [axes.EMBED], [axes.MLP], name='wi')(x_bld, **kw))
    h_blf = nn.with_logical_constraint(h_blf, axes.ACT_BLF)
    return dense(cfg, cfg.d_model, [axes.MLP], [axes.EMBED], name='wo',
                 std=output_std(cfg))(h_blf, **kw)


class BottleneckAdapter(nn.Module):
  """Houlsby et al. 2019 (sec. 2.1): x + up(act(down(x))), down [d_model, m] and up
  [m, d_model] with biases; `up` starts at zero so the adapter starts as the identity."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, x_bld):
    cfg = self.config
    size = cfg.peft.adapter_size
    act = {'relu': nn.relu, 'gelu': ACTIVATION_FNS['gelu'], 'silu': nn.silu,
           'tanh': jnp.tanh}[cfg.peft.adapter_activation]
    h = dense(cfg, size, [axes.EMBED], [axes.MLP], name='down', use_bias=True)(x_bld)
    up = DenseGeneral(features=(cfg.d_model,), axis=(-1,), kernel_axes=(axes.MLP, axes.EMBED),
                      std=0.0, use_bias=True, dtype=dtype(cfg.dtype),
                      param_dtype=dtype(cfg.param_dtype), name='up')
    return x_bld + up(act(h))


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


class RopeScaling(NamedTuple):
  """How RoPE's angles are computed: angle(position, i) = (position / position_divisor) *
  theta^(-2i/d) * freq_multiplier[i], and cos / sin times attention_factor."""
  theta: float
  freq_multiplier: Optional[tuple] = None  # [d / 2] floats; None: all 1
  position_divisor: float = 1.0
  attention_factor: float = 1.0

  def inv_freq(self, d: int):
    """The [d / 2] float32 frequencies (computed exactly as plain RoPE's when unscaled)."""
    inv_freq = 1.0 / (self.theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
    if self.freq_multiplier is not None:
      inv_freq = inv_freq * jnp.asarray(self.freq_multiplier, jnp.float32)
    return inv_freq


ROPE_SCALINGS = config_lib.ROPE_SCALINGS


def _yarn_correction_dim(rotations, d, theta, original_length):
  """The dimension 2i whose wavelength fits `rotations` times in the original context
  (Peng et al. 2023, eq. 17; HF transformers' `find_correction_dim`)."""
  return d * math.log(original_length / (rotations * 2 * math.pi)) / (2 * math.log(theta))


def rope_scaling(d: int, theta: float, kind: str = 'none', factor: float = 1.0,
                 original_length: int = 0, beta_fast: float = 32.0,
                 beta_slow: float = 1.0) -> RopeScaling:
  """RoPE over `d` dimensions with one of the context-extension rules, for a model trained
  at `original_length` and used at up to `factor` times it:
    'none'   inv_freq_i = theta^(-2i/d) (Su et al. 2021);
    'linear' position interpolation: positions / factor (Chen et al. 2023);
    'ntk'    "NTK-aware": the base becomes theta * factor^(d/(d-2)) (bloc97 2023, as
             Peng et al. 2023 sec. 3.1 write it): the lowest frequency is interpolated by
             `factor`, the highest left alone;
    'yarn'   NTK-by-parts (Peng et al. 2023 sec. 3.2-3.4): a dimension whose wavelength
             turns more than beta_fast times in the original context keeps its frequency,
             one turning fewer than beta_slow times is interpolated by `factor`, a linear
             ramp in between; plus the attention temperature sqrt(1/t) = 0.1 ln(factor) + 1
             on cos and sin (so 1/t on the logits). HF transformers' `_compute_yarn_parameters`
             with truncate=True computes the same numbers.
  At factor 1 every rule is plain RoPE, computed the same way (so equal bit for bit)."""
  if kind not in ROPE_SCALINGS:
    raise ValueError(f'unknown rope scaling {kind!r}: choose one of {", ".join(ROPE_SCALINGS)}')
  if kind == 'none' or factor == 1.0:
    return RopeScaling(theta)
  if kind == 'linear':
    return RopeScaling(theta, position_divisor=float(factor))
  if kind == 'ntk':
    return RopeScaling(theta * factor ** (d / (d - 2)))
  low = max(math.floor(_yarn_correction_dim(beta_fast, d, theta, original_length)), 0)
  high = min(math.ceil(_yarn_correction_dim(beta_slow, d, theta, original_length)), d - 1)
  if low == high:
    high += 0.001  # HF's guard against a zero-width ramp
  ramp = np.clip((np.arange(d // 2, dtype=np.float64) - low) / (high - low), 0, 1)
  keep = 1.0 - ramp  # 1: extrapolate (high frequencies), 0: interpolate (low ones)
  multiplier = (1.0 - keep) / factor + keep
  temperature = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0
  return RopeScaling(theta, tuple(float(m) for m in multiplier),
                     attention_factor=temperature)


def config_rope_scaling(config: TransformerConfig) -> RopeScaling:
  """`rope_scaling` with the config's fields; the original context defaults to max_length."""
  return rope_scaling(config.dims_per_head, config.rope_theta, config.rope_scaling,
                      config.rope_scaling_factor,
                      config.rope_original_length or config.max_length,
                      config.yarn_beta_fast, config.yarn_beta_slow)


def apply_rope(x_blhd, positions_bl, theta: float, scaling: Optional[RopeScaling] = None):
  """Rotary embedding (Su et al. 2021) in the rotate-half layout of HF Llama; `scaling`
  (`rope_scaling`) applies a context-extension rule (its theta replaces `theta`)."""
  d = x_blhd.shape[-1]
  scaling = scaling or RopeScaling(theta)
  positions = positions_bl.astype(jnp.float32)
  if scaling.position_divisor != 1.0:
    positions = positions / scaling.position_divisor
  angles_bld = positions[..., None] * scaling.inv_freq(d)
  angles_bld = jnp.concatenate([angles_bld, angles_bld], axis=-1)
  cos = jnp.cos(angles_bld)[:, :, None, :]
  sin = jnp.sin(angles_bld)[:, :, None, :]
  if scaling.attention_factor != 1.0:
    cos, sin = cos * scaling.attention_factor, sin * scaling.attention_factor
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
