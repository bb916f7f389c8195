"""Analytic parameter counts and training FLOPs, the x-axes of every scaling fit.

Conventions:
- "embedding" parameters are the token embedding, an untied output projection
  and position parameters (learned tables, T5 relative-bias tables): Kaplan et
  al. (2020) exclude "vocabulary and positional embeddings" from N.
- FLOPs are for one training step (forward + backward = 3 x forward):
  '6N'          6 x total parameters per token (Hoffmann et al. 2022, C = 6ND),
  '6N_nonembed' 6 x non-embedding parameters (Kaplan et al. 2020, C = 6N),
  'kaplan'      Kaplan Table 1: 6N + 6 n_layer n_ctx d_attn per token,
  'chinchilla'  Hoffmann et al. 2022 Appendix F: embeddings, QKV/output
                projections, QK logits, softmax (3 per score), the value
                reduction, dense blocks and final logits; generalized here to
                grouped KV heads and gated MLPs.
"""
from typing import Dict

from research.models import layers
from research.models.config import TransformerConfig


def _attention_params(cfg: TransformerConfig) -> int:
  d, h, g, dh = cfg.d_model, cfg.num_heads, cfg.kv_heads, cfg.dims_per_head
  n = d * h * dh + 2 * d * g * dh + h * dh * d
  if cfg.use_bias:
    n += h * dh + 2 * g * dh + d
  return n


def _mlp_params(cfg: TransformerConfig) -> int:
  if cfg.attention_only:
    return 0
  d, f = cfg.d_model, cfg.ff_hidden
  n_in = 2 if cfg.gated else 1
  n = n_in * d * f + f * d
  if cfg.use_bias:
    n += n_in * f + d
  return n


def _norm_params(cfg: TransformerConfig) -> int:
  return layers.NORM_PARAMS_PER_DIM[cfg.norm] * cfg.d_model


def _stack_params(cfg: TransformerConfig, num_layers: int, causal: bool, cross: bool):
  """(non-embedding, position) parameters of one stack."""
  block = (_attention_params(cfg) + _mlp_params(cfg)
           + (1 if cfg.attention_only else 2) * _norm_params(cfg))
  if cross:
    block += _attention_params(cfg) + _norm_params(cfg)
  non_embed = num_layers * block + _norm_params(cfg)  # final or embedding norm
  position = 0
  if cfg.position == 'learned':
    position = cfg.max_length * cfg.d_model
  elif cfg.position == 't5_relative':
    position = cfg.relative_num_buckets * cfg.num_heads
  if cfg.block_positions:  # GLM's position-within-the-blank table
    position += cfg.max_length * cfg.d_model
  del causal
  return non_embed, position


def _stacks(cfg: TransformerConfig):
  """(name, num_layers, causal, has_cross) of each stack of the family."""
  return {
      'decoder': [('decoder', cfg.num_layers, True, False)],
      'encoder': [('encoder', cfg.num_layers, False, False)],
      'encoder_decoder': [('encoder', cfg.encoder_layers, False, False),
                          ('decoder', cfg.decoder_layers, True, True)],
  }[cfg.family]


def count_params(cfg: TransformerConfig) -> Dict[str, int]:
  """{'total', 'embedding', 'non_embedding'} plus per-stack non-embedding counts."""
  vocab = cfg.vocab_size * cfg.d_model * (1 if cfg.tie_embeddings else 2)
  counts = {'embedding': vocab, 'non_embedding': 0}
  for name, num_layers, causal, cross in _stacks(cfg):
    non_embed, position = _stack_params(cfg, num_layers, causal, cross)
    counts[f'{name}_non_embedding'] = non_embed
    counts['non_embedding'] += non_embed
    counts['embedding'] += position
  counts['total'] = counts['embedding'] + counts['non_embedding']
  return counts


def _attention_forward(cfg: TransformerConfig, q_len: int, kv_len: int) -> int:
  """Chinchilla App. F forward FLOPs of one attention layer (per sequence)."""
  d, h, g, dh = cfg.d_model, cfg.num_heads, cfg.kv_heads, cfg.dims_per_head
  projections = 2 * q_len * d * h * dh + 2 * kv_len * d * 2 * g * dh
  logits = 2 * q_len * kv_len * h * dh
  softmax = 3 * h * q_len * kv_len
  reduction = 2 * q_len * kv_len * h * dh
  output = 2 * q_len * h * dh * d
  return projections + logits + softmax + reduction + output


def _dense_forward(cfg: TransformerConfig, length: int) -> int:
  if cfg.attention_only:
    return 0
  return 2 * length * cfg.d_model * cfg.ff_hidden * ((2 if cfg.gated else 1) + 1)


def flops_per_example(cfg: TransformerConfig, inputs_length: int,
                      targets_length: int) -> Dict[str, float]:
  """Training FLOPs of one example by convention.

  Decoder-only / encoder-only models see one sequence of
  inputs_length + targets_length tokens; encoder-decoders run the encoder over
  the inputs and the decoder over the targets.
  """
  counts = count_params(cfg)
  d_attn = cfg.num_heads * cfg.dims_per_head
  vocab_matmul = 2 * cfg.vocab_size * cfg.d_model
  if cfg.family == 'encoder_decoder':
    s_e, s_d = inputs_length, targets_length
    n_enc, n_dec = counts['encoder_non_embedding'], counts['decoder_non_embedding']
    six_n_nonembed = 6 * (n_enc * s_e + n_dec * s_d)
    six_n = six_n_nonembed + 6 * counts['embedding'] * s_d
    kaplan = six_n_nonembed + 6 * d_attn * (cfg.encoder_layers * s_e * s_e
                                            + cfg.decoder_layers * (s_d * s_d + s_d * s_e))
    forward = vocab_matmul * (s_e + s_d)  # both sides embed (counted as a matmul)
    forward += cfg.encoder_layers * (_attention_forward(cfg, s_e, s_e)
                                     + _dense_forward(cfg, s_e))
    forward += cfg.decoder_layers * (_attention_forward(cfg, s_d, s_d)
                                     + _attention_forward(cfg, s_d, s_e)
                                     + _dense_forward(cfg, s_d))
    forward += vocab_matmul * s_d  # final logits
  else:
    s = inputs_length + targets_length
    six_n = 6 * counts['total'] * s
    six_n_nonembed = 6 * counts['non_embedding'] * s
    kaplan = six_n_nonembed + 6 * cfg.num_layers * s * s * d_attn
    forward = 2 * vocab_matmul * s + cfg.num_layers * (
        _attention_forward(cfg, s, s) + _dense_forward(cfg, s))
  return {'6N': float(six_n), '6N_nonembed': float(six_n_nonembed),
          'kaplan': float(kaplan), 'chinchilla': float(3 * forward)}


def flops_per_token(cfg: TransformerConfig, seq_len: int) -> Dict[str, float]:
  """Training FLOPs per token of a decoder-only or encoder-only model at context seq_len."""
  if cfg.family == 'encoder_decoder':
    raise ValueError('flops_per_token needs one sequence length; use '
                     'flops_per_example(cfg, inputs_length, targets_length) for '
                     'encoder-decoder models')
  return {k: v / seq_len for k, v in flops_per_example(cfg, 0, seq_len).items()}
