"""One frozen, gin-configurable config for every Transformer family.

Each field is a choice a researcher would sweep; the module code reads the
choices through the registries in `layers.py` / `attention.py`, never through
if/elif chains spread across files.
"""
import dataclasses
import numbers
from typing import Optional

import gin
import numpy as np

from research.models import peft as peft_lib

FAMILIES = ('decoder', 'encoder_decoder', 'encoder')
NORMS = ('rmsnorm', 'layernorm')
NORM_POSITIONS = ('pre', 'post')
# Gated activations (GLU variants, Shazeer 2020) use two input projections.
ACTIVATIONS = ('relu', 'gelu', 'gelu_exact', 'silu', 'swiglu', 'geglu', 'reglu')
GATED_ACTIVATIONS = ('swiglu', 'geglu', 'reglu')
POSITIONS = ('learned', 'sinusoidal', 'rope', 'alibi', 't5_relative', 'none')
# RoPE context extension (layers.rope_scaling): position interpolation (Chen et al. 2023),
# "NTK-aware" base scaling and YaRN (Peng et al. 2023).
ROPE_SCALINGS = ('none', 'linear', 'ntk', 'yarn')
# 'auto' picks one per backend at trace time (attention.AUTO_ATTENTION_IMPLS).
ATTENTION_IMPLS = ('auto', 'einsum', 'dot_product', 'blocked', 'cudnn')
DTYPES = ('float32', 'bfloat16', 'float16')
# Per-block rematerialization (transformer.REMAT_POLICIES maps each to a jax.checkpoint
# policy): 'full' saves only each block's input, 'dots' also every matmul output,
# 'dots_no_batch' the matmuls without batch dimensions (the projections, not the
# [batch, heads, q, k] attention scores).
REMAT_POLICIES = ('none', 'full', 'dots', 'dots_no_batch')


class ConfigError(ValueError):
  """An inconsistent TransformerConfig; the message names the field."""


@gin.configurable
@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Architecture of one model. Every field is selectable from gin."""
  # 'decoder' covers the causal and the prefix decoder: the prefix is a
  # property of the batch (`decoder_causal_attention`), not of the weights.
  family: str = 'decoder'
  vocab_size: int = 384  # the byte tokenizer's padded vocabulary
  d_model: int = 128
  num_layers: int = 2  # decoder-only / encoder-only depth
  # Encoder-decoder depths; None means num_layers.
  num_encoder_layers: Optional[int] = None
  num_decoder_layers: Optional[int] = None
  num_heads: int = 4
  num_kv_heads: Optional[int] = None  # None: multi-head; 1: multi-query; else GQA
  head_dim: Optional[int] = None  # None: d_model // num_heads
  d_ff: int = 512
  # No MLP sublayers: the attention-only models of Elhage et al. (2021) and Olsson et al.
  # (2022), whose circuits (induction heads) can be read off the weights.
  attention_only: bool = False
  activation: str = 'gelu'
  # LLaMA convention: hidden = multiple_of * ceil((2/3 * d_ff) / multiple_of),
  # which keeps a gated MLP's parameter count equal to an ungated one's.
  ff_two_thirds: bool = False
  ff_multiple_of: int = 8
  norm: str = 'rmsnorm'
  norm_position: str = 'pre'
  norm_eps: float = 1e-6
  use_bias: bool = False  # biases in attention / MLP projections (GPT-2, BERT)
  position: str = 'rope'
  max_length: int = 512  # table size for learned positions; context for checks
  rope_theta: float = 10000.0
  # Using a RoPE model at `rope_scaling_factor` times the context it was trained at
  # (`rope_original_length`, None: max_length); layers.rope_scaling has the formulas.
  rope_scaling: str = 'none'
  rope_scaling_factor: float = 1.0
  rope_original_length: Optional[int] = None
  # YaRN's ramp (Peng et al. 2023 sec. 3.2, their alpha = beta_slow and beta = beta_fast):
  # dimensions turning more than beta_fast times in the original context are not
  # interpolated, fewer than beta_slow times fully.
  yarn_beta_fast: float = 32.0
  yarn_beta_slow: float = 1.0
  # Sliding-window (local) self-attention (Beltagy et al. 2020; Mistral 7B): each query
  # sees the last `attention_window` keys, itself included (|i - j| < W when bidirectional).
  attention_window: Optional[int] = None
  # GLM's 2D positions (Du et al. 2022 sec. 2.2): a learned embedding of the position
  # within the blank (`decoder_block_positions`) is added to the token embeddings, the
  # position within the text is the `position` scheme's. gin_configs/objectives/glm.gin
  # turns it on.
  block_positions: bool = False
  relative_num_buckets: int = 32  # T5 relative attention bias
  relative_max_distance: int = 128
  tie_embeddings: bool = True
  # T5 with tied embeddings rescales the decoder output by d_model**-0.5
  # before the (shared) output projection (HF T5ForConditionalGeneration).
  scale_tied_logits: bool = False
  # T5 folds 1/sqrt(head_dim) into its query initialisation instead.
  scale_queries: bool = True
  dropout_rate: float = 0.0
  dtype: str = 'float32'  # compute dtype
  param_dtype: str = 'float32'
  z_loss: float = 0.0  # PaLM's auxiliary loss z_loss * log(Z)^2; read by the loss
  attention_impl: str = 'auto'
  init_std: float = 0.02
  # Memory and compile time; neither changes the function the model computes.
  remat_policy: str = 'none'  # recompute each block's forward in the backward pass
  # One nn.scan over the blocks of a stack: parameters get a leading 'layers' axis and the
  # step compiles one block instead of num_layers. Not for cached decoding (decode=True).
  scan_layers: bool = False
  # Parameter-efficient fine-tuning (research/models/peft.py); None: the base model.
  # Its parameters are added beside the base ones, so base checkpoints still load.
  peft: Optional[peft_lib.PeftConfig] = None

  def __post_init__(self):
    object.__setattr__(self, 'peft', peft_lib.from_value(self.peft))
    _check_types(self)
    _check_choice(self, 'family', FAMILIES)
    _check_choice(self, 'norm', NORMS)
    _check_choice(self, 'norm_position', NORM_POSITIONS)
    _check_choice(self, 'activation', ACTIVATIONS)
    _check_choice(self, 'position', POSITIONS)
    _check_choice(self, 'attention_impl', ATTENTION_IMPLS)
    _check_choice(self, 'rope_scaling', ROPE_SCALINGS)
    _check_choice(self, 'dtype', DTYPES)
    _check_choice(self, 'param_dtype', DTYPES)
    _check_choice(self, 'remat_policy', REMAT_POLICIES)
    for name in ('vocab_size', 'd_model', 'num_layers', 'num_heads', 'd_ff',
                 'max_length', 'ff_multiple_of'):
      if getattr(self, name) <= 0:
        raise ConfigError(f'TransformerConfig.{name} must be positive, got '
                          f'{getattr(self, name)}')
    for name in ('num_encoder_layers', 'num_decoder_layers', 'num_kv_heads',
                 'head_dim'):
      value = getattr(self, name)
      if value is not None and value <= 0:
        raise ConfigError(f'TransformerConfig.{name} must be positive or None, '
                          f'got {value}')
    if self.head_dim is None and self.d_model % self.num_heads:
      raise ConfigError(
          f'TransformerConfig.num_heads={self.num_heads} does not divide '
          f'd_model={self.d_model} (set head_dim to decouple them)')
    if self.num_heads % self.kv_heads:
      raise ConfigError(
          f'TransformerConfig.num_heads={self.num_heads} is not a multiple of '
          f'num_kv_heads={self.kv_heads}')
    if self.position == 'rope' and self.dims_per_head % 2:
      raise ConfigError(f'TransformerConfig.head_dim={self.dims_per_head} must '
                        'be even for rope')
    if not self.rope_scaling_factor > 0:
      raise ConfigError('TransformerConfig.rope_scaling_factor must be > 0, got '
                        f'{self.rope_scaling_factor}')
    if self.rope_scaling != 'none' and self.position != 'rope':
      raise ConfigError(f'TransformerConfig.rope_scaling={self.rope_scaling!r} needs '
                        f"position='rope', got position={self.position!r}")
    for name in ('rope_original_length', 'attention_window'):
      value = getattr(self, name)
      if value is not None and value <= 0:
        raise ConfigError(f'TransformerConfig.{name} must be positive or None, got {value}')
    if not 0 < self.yarn_beta_slow < self.yarn_beta_fast:
      raise ConfigError('TransformerConfig.yarn_beta_slow and yarn_beta_fast must satisfy '
                        f'0 < beta_slow < beta_fast, got {self.yarn_beta_slow} and '
                        f'{self.yarn_beta_fast}')
    if self.attention_window is not None and self.attention_window > self.max_length:
      raise ConfigError(f'TransformerConfig.attention_window={self.attention_window} is '
                        f'larger than the context max_length={self.max_length}')
    if self.block_positions and self.family != 'decoder':
      raise ConfigError('TransformerConfig.block_positions (GLM 2D positions) needs '
                        f"family='decoder', got {self.family!r}")
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ConfigError('TransformerConfig.dropout_rate must be in [0, 1), got '
                        f'{self.dropout_rate}')
    if self.z_loss < 0:
      raise ConfigError(f'TransformerConfig.z_loss must be >= 0, got {self.z_loss}')
    if self.peft is not None:
      peft_lib.check_against_model(
          self.peft, gated=self.gated, attention_only=self.attention_only,
          d_model=self.d_model, q_features=self.num_heads * self.dims_per_head,
          kv_features=self.kv_heads * self.dims_per_head, ff_hidden=self.ff_hidden,
          scan_layers=self.scan_layers)
      if self.peft.virtual_tokens >= self.max_length:
        raise ConfigError(f'PeftConfig.num_virtual_tokens={self.peft.virtual_tokens} leaves '
                          f'no room in the context max_length={self.max_length}')

  @property
  def peft_method(self) -> str:
    """The PEFT method in force ('none' without a PeftConfig)."""
    return 'none' if self.peft is None else self.peft.method

  # Derived sizes, in one place so the modules and the accounting agree.
  @property
  def kv_heads(self) -> int:
    return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

  @property
  def dims_per_head(self) -> int:
    return self.head_dim or self.d_model // self.num_heads

  @property
  def ff_hidden(self) -> int:
    if not self.ff_two_thirds:
      return self.d_ff
    m = self.ff_multiple_of
    return m * -(-int(2 * self.d_ff / 3) // m)

  @property
  def gated(self) -> bool:
    return self.activation in GATED_ACTIVATIONS

  @property
  def encoder_layers(self) -> int:
    return self.num_encoder_layers or self.num_layers

  @property
  def decoder_layers(self) -> int:
    return self.num_decoder_layers or self.num_layers

  def replace(self, **changes) -> 'TransformerConfig':
    return dataclasses.replace(self, **changes)


_BOOLS = (bool, np.bool_)
_TYPES = {int: (numbers.Integral,), float: (numbers.Real,), bool: _BOOLS, str: (str,)}


def _check_types(config) -> None:
  """A gin binding of the wrong type ('d_model = "abc"') named here, not as a TypeError
  deep inside the model. bool is an int to Python, so int fields refuse it explicitly."""
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    kind = field.type
    optional = getattr(kind, '__origin__', None) is not None and type(None) in kind.__args__
    if optional:
      if value is None:
        continue
      kind = next(a for a in kind.__args__ if a is not type(None))
    allowed = _TYPES.get(kind)
    if allowed is None:
      continue
    if not isinstance(value, allowed) or (kind is not bool and isinstance(value, _BOOLS)):
      raise ConfigError(f'TransformerConfig.{field.name} must be {kind.__name__}'
                        f'{" or None" if optional else ""}, got {value!r}')


def _check_choice(config, field, choices):
  value = getattr(config, field)
  if value not in choices:
    raise ConfigError(f'TransformerConfig.{field}={value!r} is not one of '
                      f'{", ".join(choices)}')
