"""The Transformer families: decoder-only (causal and prefix), encoder-decoder,
encoder-only. They share one block and one stack; they differ in their masks.

Features follow docs/design.md. Only the token features are required; segment ids
default to one unpacked example, positions restart in each segment, and
`decoder_causal_attention` (1 on the bidirectional prefix) defaults to a plain
causal LM. Target and loss-weight features are accepted and ignored, so a whole
batch can be passed with `**batch`.
"""
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.models import axes
from research.models import layers
from research.models.attention import Attention, SeqInfo
from research.models.config import ConfigError, TransformerConfig

# The scanned stack's one block (scan_layers); unrolled blocks are layers_0, layers_1, ...
LAYERS_NAME = 'layers'

# The jax.checkpoint policy of each TransformerConfig.remat_policy but 'none'.
REMAT_POLICIES = {
    'full': jax.checkpoint_policies.nothing_saveable,
    'dots': jax.checkpoint_policies.checkpoint_dots,
    'dots_no_batch': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def seq_info(tokens_bl, segment_ids=None, positions=None, prefix=None,
             block_positions=None) -> SeqInfo:
  if segment_ids is None:
    segment_ids = jnp.ones(tokens_bl.shape, jnp.int32)
  if positions is None:
    positions = layers.positions_from_segments(segment_ids)
  if prefix is not None:
    prefix = prefix.astype(jnp.bool_)
  if block_positions is not None:
    block_positions = jnp.asarray(block_positions, jnp.int32)
  return SeqInfo(jnp.asarray(segment_ids, jnp.int32), jnp.asarray(positions, jnp.int32),
                 prefix, block_positions)


class Block(nn.Module):
  """Self-attention, optional cross-attention, MLP; pre- or post-norm residuals."""
  config: TransformerConfig
  causal: bool
  has_cross: bool = False
  bias_module: Optional[nn.Module] = None

  @nn.compact
  def __call__(self, x_bld, info, encoded=None, encoded_info=None,
               deterministic=True, decode=False, position_bias=None, prefix_kv=None):
    """`position_bias` [b, h, q, k], when given, replaces `bias_module`: the stack computed
    it once for all its layers (scan_layers). `prefix_kv`: this layer's prefix keys and
    values from the stack's prefix-tuning MLP (research/models/peft.py)."""
    cfg = self.config
    drop = nn.Dropout(cfg.dropout_rate)
    bias_module = self.bias_module
    if position_bias is not None:
      bias_module = lambda q_positions, k_positions: position_bias
    sublayers = [('attn', lambda y: Attention(
        cfg, causal=self.causal, bias_module=bias_module, name='attn')(
            y, info, decode=decode, deterministic=deterministic, prefix_kv=prefix_kv))]
    if self.has_cross:
      sublayers.append(('cross_attn', lambda y: Attention(
          cfg, is_cross=True, name='cross_attn')(
              y, info, encoded, encoded_info, decode=decode,
              deterministic=deterministic)))
    if not cfg.attention_only:
      sublayers.append(('mlp', lambda y: layers.MLP(cfg, name='mlp')(
          y, deterministic=deterministic)))
    for name, sublayer in sublayers:
      if cfg.peft_method == 'adapter' and name != 'cross_attn':
        # Houlsby et al. 2019 (fig. 2): the adapter acts on the sublayer's output, before
        # the residual sum; after self-attention and after the MLP.
        sublayer = lambda y, f=sublayer, name=name: layers.BottleneckAdapter(
            cfg, name=f'{name}_adapter')(f(y))
      norm = layers.make_norm(cfg, f'{name}_norm')
      if cfg.norm_position == 'pre':
        x_bld = x_bld + drop(sublayer(norm(x_bld)), deterministic=deterministic)
      else:
        x_bld = norm(x_bld + drop(sublayer(x_bld), deterministic=deterministic))
      x_bld = nn.with_logical_constraint(x_bld, axes.ACT_BLD)
    return x_bld


def block_class(config: TransformerConfig):
  """Block, or Block under nn.remat with the config's policy: the backward pass recomputes
  each block's forward from its input, so only block inputs (and whatever the policy
  saves) stay live between the passes."""
  if config.remat_policy == 'none':
    return Block
  # Arguments after self: x, info, encoded, encoded_info, deterministic (5), decode (6),
  # position_bias; the flags are Python bools. Under scan, the loop already keeps XLA
  # from merging the recomputation into the forward, so CSE prevention is not needed.
  return nn.remat(Block, policy=REMAT_POLICIES[config.remat_policy],
                  static_argnums=(5, 6), prevent_cse=not config.scan_layers)


class Stack(nn.Module):
  """Embedding -> blocks -> final norm. `embed` is shared with the caller."""
  config: TransformerConfig
  num_layers: int
  causal: bool
  embed: nn.Module
  has_cross: bool = False

  @nn.compact
  def __call__(self, tokens_bl, info: SeqInfo, encoded=None, encoded_info=None,
               deterministic=True, decode=False, keep_virtual=False):
    """With prompt tuning, the stack that reads the input (not an encoder-decoder's
    decoder) prepends the virtual tokens and drops their outputs again unless
    `keep_virtual` (an encoder whose output the decoder cross-attends, virtual tokens
    included, as in Lester et al. 2021)."""
    cfg = self.config
    x = self.embed(tokens_bl)
    n_virtual = self.virtual_tokens()
    if n_virtual:
      info = shift_positions(info, n_virtual)
      if self._prepends_now(decode):
        prompt = self._prompt_embedding(n_virtual)
        x = jnp.concatenate([jnp.broadcast_to(prompt.astype(x.dtype)[None],
                                              (x.shape[0],) + prompt.shape), x], axis=1)
        info = with_virtual_tokens(info, n_virtual, shifted=True)
        tokens_bl = jnp.zeros(x.shape[:2], tokens_bl.dtype)
      else:
        n_virtual = 0
    if cfg.position in layers.ADDITIVE_POSITIONS:
      x = x + layers.AbsolutePositions(cfg, name='pos_embed')(info.positions)
    if cfg.block_positions:
      # GLM 2D positions (Du et al. 2022 sec. 2.2): the position within the blank gets its
      # own learned table, added like GLM's second position embedding; 0 (Part A, or no
      # feature: plain text and cached decoding) is a row of the table like any other.
      block = info.block_positions
      if block is None:
        block = jnp.zeros(tokens_bl.shape, jnp.int32)
      table = nn.Embed(num_embeddings=cfg.max_length, features=cfg.d_model,
                       dtype=layers.dtype(cfg.dtype), param_dtype=layers.dtype(cfg.param_dtype),
                       embedding_init=layers.normal_init(cfg.init_std,
                                                         (axes.LENGTH, axes.EMBED)),
                       name='block_pos_embed')
      x = x + table(block)
    if cfg.norm_position == 'post':  # BERT normalizes the embeddings
      x = layers.make_norm(cfg, 'embed_norm')(x)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
    x = nn.with_logical_constraint(x, axes.ACT_BLD)
    bias = None
    if cfg.position in layers.POSITION_BIASES:
      bias = layers.POSITION_BIASES[cfg.position](
          cfg, bidirectional=not self.causal, name='position_bias')
    block = block_class(cfg)
    prefixes = None
    if cfg.peft_method == 'prefix' and cfg.peft.uses_prefix_projection:
      prefixes = PrefixEncoder(cfg, self.num_layers, name='prefix_encoder')()
    if cfg.scan_layers:
      x = self._scan(block, x, info, bias, encoded, encoded_info, deterministic, decode)
    else:
      for i in range(self.num_layers):
        x = block(cfg, causal=self.causal, has_cross=self.has_cross, bias_module=bias,
                  name=f'layers_{i}')(x, info, encoded, encoded_info, deterministic,
                                      decode, None,
                                      None if prefixes is None else prefixes[i])
    if cfg.norm_position == 'pre':
      x = layers.make_norm(cfg, 'final_norm')(x)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
    if n_virtual and not keep_virtual:
      x = x[:, n_virtual:]
    return x

  def virtual_tokens(self) -> int:
    """Virtual tokens this stack prepends (prompt tuning; the input stack only)."""
    cfg = self.config
    if cfg.peft_method != 'prompt' or self.has_cross:
      return 0
    return cfg.peft.virtual_tokens

  def _prepends_now(self, decode: bool) -> bool:
    """Always, except in cached decoding after the prefill: the first call that fills the
    cache writes the virtual tokens' keys and values, the steps after it find them there.
    A 'prompt_written' cache entry, created by that first call, tells them apart."""
    if not decode or self.is_initializing():
      return True
    if self.has_variable('cache', 'prompt_written'):
      return False
    self.put_variable('cache', 'prompt_written', jnp.ones((), jnp.bool_))
    return True

  def _prompt_embedding(self, n: int):
    """The [n, d_model] virtual-token embeddings: rows of the vocabulary embedding at
    random ids ('vocab', Lester et al. 2021 sec. 3: "sampled vocabulary") or N(0, init_std)."""
    cfg = self.config
    if cfg.peft.prompt_init == 'vocab':
      table = self.embed.embedding

      def init(key, shape, dtype):
        ids = jax.random.randint(key, (shape[0],), 0, cfg.vocab_size)
        return jnp.asarray(table, dtype)[ids]
    else:
      init = nn.initializers.normal(cfg.init_std)
    return self.param('prompt_embedding',
                      nn.with_logical_partitioning(init, (None, axes.EMBED)),
                      (n, cfg.d_model), layers.dtype(cfg.param_dtype))

  def _scan(self, block, x, info, bias, encoded, encoded_info, deterministic, decode):
    """The blocks as one nn.scan: parameters [layers, ...] under the logical axis 'layers',
    each layer its own dropout key."""
    if decode:
      raise ConfigError('TransformerConfig.scan_layers does not support cached decoding '
                        '(decode=True): decode with scan_layers=False, converting the '
                        'parameters with transformer.unstack_layers')
    # The position bias depends on positions only: computed once, outside the loop, so
    # the shared T5 table stays one parameter of the stack rather than one per layer.
    position_bias = None if bias is None else bias(info.positions, info.positions)

    def body(module, carry, info, encoded, encoded_info, position_bias):
      return module(carry, info, encoded, encoded_info, deterministic, False,
                    position_bias), None
    scan = nn.scan(body, variable_axes={'params': 0, 'intermediates': 0},
                   split_rngs={'params': True, 'dropout': True},
                   in_axes=(nn.broadcast,) * 4, length=self.num_layers,
                   metadata_params={nn.PARTITION_NAME: axes.LAYERS})
    layer = block(self.config, causal=self.causal, has_cross=self.has_cross,
                  name=LAYERS_NAME)
    x, _ = scan(layer, x, info, encoded, encoded_info, position_bias)
    return x


class PrefixEncoder(nn.Module):
  """Li & Liang 2021 (sec. 4.3, "reparametrization"): every layer's prefix keys and values
  as MLP(P), P a [n, d_model] table, MLP = Linear(d_model, h) -> tanh -> Linear(h, layers *
  2 * kv_heads * head_dim), the form HF peft's PrefixEncoder uses. After training the
  output can be stored instead of the MLP (it no longer depends on anything)."""
  config: TransformerConfig
  num_layers: int

  @nn.compact
  def __call__(self):
    cfg = self.config
    n, g, d = cfg.peft.prefix_length, cfg.kv_heads, cfg.dims_per_head
    table = self.param('prefix_embedding', layers.normal_init(cfg.init_std, (None, axes.EMBED)),
                       (n, cfg.d_model), layers.dtype(cfg.param_dtype))
    h = layers.dense(cfg, cfg.peft.prefix_hidden, [axes.EMBED], [axes.MLP], name='hidden',
                     use_bias=True)(table)
    out = layers.dense(cfg, self.num_layers * 2 * g * d, [axes.MLP], [None], name='output',
                       use_bias=True)(jnp.tanh(h))
    out = out.reshape(n, self.num_layers, 2, g, d)
    return [(out[:, i, 0], out[:, i, 1]) for i in range(self.num_layers)]


def shift_positions(info: SeqInfo, n: int) -> SeqInfo:
  """Real tokens' positions after n virtual tokens (prompt tuning)."""
  return info._replace(positions=info.positions + n)


def with_virtual_tokens(info: SeqInfo, n: int, shifted: bool = False) -> SeqInfo:
  """`info` with n virtual tokens in front: they join the row's (last) segment at
  positions 0..n-1, and the bidirectional prefix when there is one. Prompt tuning
  assumes one example per row (packed rows would share the virtual tokens with their
  last segment only)."""
  if not shifted:
    info = shift_positions(info, n)
  b = info.segment_ids.shape[0]
  seg = jnp.broadcast_to(jnp.max(info.segment_ids, axis=1, keepdims=True), (b, n))
  pos = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[None], (b, n))
  prefix = info.prefix
  if prefix is not None:
    prefix = jnp.concatenate([jnp.ones((b, n), jnp.bool_), prefix], axis=1)
  block = info.block_positions
  if block is not None:
    block = jnp.concatenate([jnp.zeros((b, n), jnp.int32), block], axis=1)
  return SeqInfo(jnp.concatenate([seg.astype(jnp.int32), info.segment_ids], axis=1),
                 jnp.concatenate([pos, info.positions], axis=1), prefix, block)


class LogitsHead(nn.Module):
  config: TransformerConfig

  @nn.compact
  def __call__(self, x_bld, embed: nn.Embed):
    cfg = self.config
    if cfg.tie_embeddings:
      if cfg.scale_tied_logits:
        x_bld = x_bld * cfg.d_model ** -0.5
      logits = embed.attend(x_bld)
    else:
      logits = layers.dense(cfg, cfg.vocab_size, [axes.EMBED], [axes.VOCAB],
                            name='lm_head', use_bias=False)(x_bld)
    return nn.with_logical_constraint(logits.astype(jnp.float32), axes.ACT_BLV)


def _one_stack(cfg: TransformerConfig, causal: bool):
  """(token embedding, stack, head) of a one-stack model, built inside its setup."""
  embed = layers.token_embedding(cfg)
  return embed, Stack(cfg, cfg.num_layers, causal=causal, embed=embed), LogitsHead(cfg)


class DecoderOnly(nn.Module):
  """Causal decoder (GPT, LLaMA) and prefix decoder (GLM, U-PaLM) in one module."""
  config: TransformerConfig

  def setup(self):
    self.token_embed, self.decoder, self.head = _one_stack(self.config, causal=True)

  def __call__(self, decoder_input_tokens, decoder_segment_ids=None,
               decoder_positions=None, decoder_causal_attention=None,
               decoder_target_tokens=None, decoder_loss_weights=None,
               deterministic=True, decode=False, decoder_block_positions=None):
    """`decoder_block_positions` (GLM's position within a blank) is read when
    config.block_positions is set, and ignored otherwise."""
    del decoder_target_tokens, decoder_loss_weights  # used by the loss only
    if not self.config.block_positions:
      decoder_block_positions = None
    info = seq_info(decoder_input_tokens, decoder_segment_ids, decoder_positions,
                    decoder_causal_attention, decoder_block_positions)
    x = self.decoder(decoder_input_tokens, info, deterministic=deterministic,
                     decode=decode)
    return self.head(x, self.token_embed)


class EncoderOnly(nn.Module):
  """Bidirectional encoder with a token head (BERT-style masked LM)."""
  config: TransformerConfig

  def setup(self):
    self.token_embed, self.encoder, self.head = _one_stack(self.config, causal=False)

  def __call__(self, encoder_input_tokens, encoder_segment_ids=None,
               encoder_positions=None, encoder_target_tokens=None,
               encoder_loss_weights=None, deterministic=True):
    del encoder_target_tokens, encoder_loss_weights
    info = seq_info(encoder_input_tokens, encoder_segment_ids, encoder_positions)
    x = self.encoder(encoder_input_tokens, info, deterministic=deterministic)
    return self.head(x, self.token_embed)


class EncoderDecoder(nn.Module):
  """T5 / BART: bidirectional encoder, causal decoder with cross-attention.

  `encode` and `decode` are separate methods so decoding runs the encoder once:
  `decode(encoded, ...)` with `decode=True` fills the cross-attention cache on
  its first call; later calls pass `encoded=None`.
  """
  config: TransformerConfig

  def setup(self):
    cfg = self.config
    self.token_embed = layers.token_embedding(cfg)
    self.encoder = Stack(cfg, cfg.encoder_layers, causal=False, embed=self.token_embed)
    self.decoder = Stack(cfg, cfg.decoder_layers, causal=True, embed=self.token_embed,
                         has_cross=True)
    self.head = LogitsHead(cfg)

  def encode(self, encoder_input_tokens, encoder_segment_ids=None,
             encoder_positions=None, deterministic=True):
    """(encoder output, its SeqInfo); with prompt tuning both include the virtual tokens."""
    info = seq_info(encoder_input_tokens, encoder_segment_ids, encoder_positions)
    encoded = self.encoder(encoder_input_tokens, info, deterministic=deterministic,
                           keep_virtual=True)
    n_virtual = self.encoder.virtual_tokens()
    if n_virtual:
      info = with_virtual_tokens(info, n_virtual)
    return encoded, info

  def decode(self, encoded, encoded_info, decoder_input_tokens, decoder_segment_ids=None,
             decoder_positions=None, deterministic=True, decode=False):
    info = seq_info(decoder_input_tokens, decoder_segment_ids, decoder_positions)
    x = self.decoder(decoder_input_tokens, info, encoded, encoded_info,
                     deterministic=deterministic, decode=decode)
    return self.head(x, self.token_embed)

  def __call__(self, encoder_input_tokens, decoder_input_tokens,
               encoder_segment_ids=None, encoder_positions=None,
               decoder_segment_ids=None, decoder_positions=None,
               decoder_target_tokens=None, decoder_loss_weights=None,
               deterministic=True, decode=False):
    del decoder_target_tokens, decoder_loss_weights
    encoded, encoded_info = self.encode(encoder_input_tokens, encoder_segment_ids,
                                        encoder_positions, deterministic)
    return self.decode(encoded, encoded_info, decoder_input_tokens, decoder_segment_ids,
                       decoder_positions, deterministic=deterministic, decode=decode)


def stack_depths(config: TransformerConfig) -> dict:
  """{stack name in the parameter tree: its number of blocks} of config.family."""
  return {
      'decoder': {'decoder': config.num_layers},
      'encoder': {'encoder': config.num_layers},
      'encoder_decoder': {'encoder': config.encoder_layers,
                          'decoder': config.decoder_layers},
  }[config.family]


def stack_layers(params, config: TransformerConfig) -> dict:
  """Unrolled parameters (`layers_0`, `layers_1`, ...) in the scan_layers layout: one
  `layers` subtree whose arrays have a leading [num_layers] axis. `config` is either
  model's (only the family and depths are read)."""
  params = dict(params)
  for name, depth in stack_depths(config).items():
    stack = dict(params[name])
    blocks = [stack.pop(f'layers_{i}') for i in range(depth)]
    stack[LAYERS_NAME] = jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)
    params[name] = stack
  return params


def unstack_layers(params, config: TransformerConfig) -> dict:
  """The inverse of stack_layers: scan_layers parameters in the unrolled layout (what
  cached decoding and Hugging Face-style per-layer names need)."""
  params = dict(params)
  for name, depth in stack_depths(config).items():
    stack = dict(params[name])
    blocks = stack.pop(LAYERS_NAME)
    for i in range(depth):
      stack[f'layers_{i}'] = jax.tree.map(lambda x, i=i: x[i], blocks)
    params[name] = stack
  return params


FAMILY_MODULES = {
    'decoder': DecoderOnly,
    'encoder_decoder': EncoderDecoder,
    'encoder': EncoderOnly,
}


def build(config: TransformerConfig) -> nn.Module:
  """The linen module of `config.family`."""
  return FAMILY_MODULES[config.family](config)
