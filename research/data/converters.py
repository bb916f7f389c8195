"""Feature converters: {'inputs', 'targets'} -> the model family's batch features, with
seqio's semantics (seqio/feature_converters.py: EncDecFeatureConverter, DecoderFeatureConverter,
PrefixLMFeatureConverter) and the names in docs/design.md.

A converter never knows the objective. It knows (a) how long an example is in each of its
length groups ('encoder', 'decoder'), (b) what "fits" means for a set of task lengths, and
(c) the unpadded per-example features. Packing (packing.py) lays examples side by side and adds
`<group>_segment_ids` / `<group>_positions`.

Task lengths are TASK_FEATURE_LENGTHS-style dicts {'inputs': I, 'targets': T}:
  encoder_decoder: encoder length I, decoder length T.
  decoder, prefix_decoder: decoder length I + T (inputs may be absent), as seqio's PrefixLM.
  encoder: encoder length I (or T when there is no 'inputs').
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from research.objectives import base


def shift_right(x: np.ndarray) -> np.ndarray:
  """[a, b, c] -> [0, a, b]: teacher forcing input within one segment (0 is BOS, as seqio)."""
  out = np.zeros_like(x)
  out[1:] = x[:-1]
  return out


@dataclasses.dataclass(frozen=True)
class Fit:
  """Hashable "does this example fit" test (hashable so chunk lengths can be cached)."""
  inputs: int | None = None
  targets: int | None = None
  total: int | None = None
  sentinels: int | None = None  # the tokenizer's supply; set by the pipeline

  def __call__(self, lengths: base.Lengths) -> bool:
    return ((self.inputs is None or lengths.inputs <= self.inputs) and
            (self.targets is None or lengths.targets <= self.targets) and
            (self.total is None or lengths.total <= self.total) and
            (self.sentinels is None or lengths.sentinels <= self.sentinels))


def _length(task_lengths: Mapping[str, int], key: str) -> int:
  if key not in task_lengths:
    raise ValueError(f'TASK_FEATURE_LENGTHS needs {key!r}, got {dict(task_lengths)}')
  value = int(task_lengths[key])
  if value <= 0:
    raise ValueError(f'TASK_FEATURE_LENGTHS[{key!r}] must be > 0, got {value}')
  return value


@dataclasses.dataclass(frozen=True)
class EncoderDecoder:
  """Encoder reads inputs; decoder reads targets shifted right; loss on every target."""
  name = 'encoder_decoder'

  def group_lengths(self, task_lengths):
    return {'encoder': _length(task_lengths, 'inputs'),
            'decoder': _length(task_lengths, 'targets')}

  def fit(self, task_lengths) -> Fit:
    g = self.group_lengths(task_lengths)
    return Fit(inputs=g['encoder'], targets=g['decoder'])

  def example_lengths(self, ex):
    return {'encoder': len(ex['inputs']), 'decoder': len(ex['targets'])}

  def example_features(self, ex):
    targets = np.asarray(ex['targets'], np.int32)
    return {
        'encoder_input_tokens': np.asarray(ex['inputs'], np.int32),
        'decoder_target_tokens': targets,
        'decoder_input_tokens': shift_right(targets),
        'decoder_loss_weights': np.ones_like(targets),
    }


@dataclasses.dataclass(frozen=True)
class Decoder:
  """Decoder-only: sequence = inputs ++ targets, read shifted right.

  prefix=False (causal LM layout): `decoder_causal_attention` all zeros; loss on targets, or
    on every token when loss_on_inputs (plain LM).
  prefix=True (prefix LM layout, seqio PrefixLMFeatureConverter): `decoder_causal_attention`
    is 1 on the inputs plus the position that reads the last input token (the first target is
    predicted from the full bidirectional prefix); loss on targets only.
  """
  prefix: bool = False
  loss_on_inputs: bool = False

  @property
  def name(self):
    return 'prefix_decoder' if self.prefix else 'decoder'

  def group_lengths(self, task_lengths):
    inputs = int(task_lengths.get('inputs', 0) or 0)
    return {'decoder': inputs + _length(task_lengths, 'targets')}

  def fit(self, task_lengths) -> Fit:
    return Fit(total=self.group_lengths(task_lengths)['decoder'])

  def example_lengths(self, ex):
    return {'decoder': len(ex['inputs']) + len(ex['targets'])}

  def example_features(self, ex):
    inputs = np.asarray(ex['inputs'], np.int32)
    targets = np.asarray(ex['targets'], np.int32)
    seq = np.concatenate([inputs, targets])
    n_in = len(inputs)
    is_target = np.arange(len(seq)) >= n_in
    weights = np.ones_like(seq) if self.loss_on_inputs and not self.prefix else is_target
    causal_attention = np.zeros_like(seq)
    if self.prefix and n_in:
      causal_attention[:n_in + 1] = 1
    out = {
        'decoder_target_tokens': seq,
        'decoder_input_tokens': shift_right(seq),
        'decoder_loss_weights': weights.astype(np.int32),
        'decoder_causal_attention': causal_attention,
    }
    if 'positions' in ex:
      # Objectives with their own position scheme (GLM's 2D positions) give one pair per
      # token of inputs ++ targets; shifted like the tokens, they describe the token read.
      out['decoder_positions'] = shift_right(np.asarray(ex['positions'], np.int32))
      out['decoder_block_positions'] = shift_right(np.asarray(ex['block_positions'], np.int32))
    return out


@dataclasses.dataclass(frozen=True)
class Encoder:
  """Encoder-only (BERT masked LM): targets align with inputs; loss where targets != pad."""
  name = 'encoder'

  def group_lengths(self, task_lengths):
    key = 'inputs' if 'inputs' in task_lengths else 'targets'
    return {'encoder': _length(task_lengths, key)}

  def fit(self, task_lengths) -> Fit:
    n = self.group_lengths(task_lengths)['encoder']
    return Fit(inputs=n, targets=n)

  def example_lengths(self, ex):
    return {'encoder': len(ex['inputs'])}

  def example_features(self, ex):
    inputs = np.asarray(ex['inputs'], np.int32)
    targets = np.asarray(ex['targets'], np.int32)
    if targets.shape != inputs.shape:
      raise ValueError(
          f'the encoder family needs targets aligned with inputs (masked_lm); got inputs of '
          f'length {len(inputs)} and targets of length {len(targets)}')
    return {'encoder_input_tokens': inputs, 'encoder_target_tokens': targets,
            'encoder_loss_weights': (targets != 0).astype(np.int32)}


# Registry: converter name -> factory; and each model family's default converter.
CONVERTERS = {
    'encoder_decoder': EncoderDecoder,
    'decoder': Decoder,
    'prefix_decoder': lambda: Decoder(prefix=True),
    'plain_lm_decoder': lambda: Decoder(loss_on_inputs=True),
    'encoder': Encoder,
}
FAMILY_DEFAULT = {'decoder': 'decoder', 'encoder_decoder': 'encoder_decoder',
                  'encoder': 'encoder'}


def get_converter(name: str):
  if name not in CONVERTERS:
    raise ValueError(f'unknown feature converter {name!r}; known: {sorted(CONVERTERS)}')
  return CONVERTERS[name]()
