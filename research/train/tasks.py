"""Which batch features each model family consumes, and how its loss is read from them.

The network (research.models) consumes the input-side features; the loss reads the
target-side ones. One table, so adding a family is one entry.
"""
import dataclasses

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class FamilyFeatures:
  tokens: tuple[str, ...]   # token inputs (required)
  inputs: tuple[str, ...]   # every input-side feature the module accepts
  targets: str
  weights: str


FAMILY_FEATURES = {
    'decoder': FamilyFeatures(
        tokens=('decoder_input_tokens',),
        inputs=('decoder_input_tokens', 'decoder_segment_ids', 'decoder_positions',
                'decoder_causal_attention', 'decoder_block_positions'),
        targets='decoder_target_tokens', weights='decoder_loss_weights'),
    'encoder_decoder': FamilyFeatures(
        tokens=('encoder_input_tokens', 'decoder_input_tokens'),
        inputs=('encoder_input_tokens', 'encoder_segment_ids', 'encoder_positions',
                'decoder_input_tokens', 'decoder_segment_ids', 'decoder_positions'),
        targets='decoder_target_tokens', weights='decoder_loss_weights'),
    'encoder': FamilyFeatures(
        tokens=('encoder_input_tokens',),
        inputs=('encoder_input_tokens', 'encoder_segment_ids', 'encoder_positions'),
        targets='encoder_target_tokens', weights='encoder_loss_weights'),
}


def model_inputs(family: str, batch) -> dict:
  names = FAMILY_FEATURES[family].inputs
  return {k: batch[k] for k in names if k in batch}


def without_empty_prefix(batch: dict, never_prefix: bool = False) -> dict:
  """`batch` without its `decoder_causal_attention` if that is all zeros.

  docs/design.md's decoder batches always carry the feature, all zeros for a causal LM. Given
  an array, the model must check at run time whether any prefix lets attention look above
  the diagonal (a `lax.cond` per layer in blocked attention, 10-15% of the attention's
  forward + backward at the CPU benchmark's shape); without it, it knows at trace time
  (`lower_triangular`). Called on the host before every train and eval step: a batch with
  a prefix keeps it, so a run whose batches only sometimes have one compiles a second step
  when the first such batch comes (that window's tokens/s and MFU include the compile).
  In a multi-process run every process must compile the same program, so the feature
  stays (each host sees only its own rows) unless the batch source declares that it never
  has a prefix (`never_prefix`: a source's `may_have_prefix` is False, the same on every
  process); then it is dropped in every batch, and a batch that has one is an error."""
  prefix = batch.get('decoder_causal_attention')
  if prefix is None:
    return batch
  if never_prefix:
    if np.any(prefix):
      raise ValueError('a batch has a decoder_causal_attention prefix, but its source '
                       'declared may_have_prefix = False')
  elif np.any(prefix) or jax.process_count() > 1:
    return batch
  return {k: v for k, v in batch.items() if k != 'decoder_causal_attention'}


def tokens_per_batch(family: str, batch) -> int:
  """Target positions in a batch (rows x target length): the `tokens` of the fits."""
  return int(np.prod(np.shape(batch[FAMILY_FEATURES[family].targets])))


def flops_per_batch(model_config, batch) -> dict[str, float]:
  """Training FLOPs of one batch by each convention of research.models.accounting."""
  from research import models  # models never imports train; the reverse is fine
  family = model_config.family
  if family == 'encoder_decoder':
    rows, enc_len = np.shape(batch['encoder_input_tokens'])
    dec_len = np.shape(batch['decoder_input_tokens'])[1]
    per_example = models.flops_per_example(model_config, enc_len, dec_len)
    return {k: v * rows for k, v in per_example.items()}
  rows, length = np.shape(batch[FAMILY_FEATURES[family].tokens[0]])
  return {k: v * rows * length for k, v in models.flops_per_token(model_config,
                                                                   length).items()}
