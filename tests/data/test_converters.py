"""Feature converters and packing (t5x/seqio layout)."""
import numpy as np
import pytest

from research.data import converters, packing

EX1 = {'inputs': np.array([10, 11, 1]), 'targets': np.array([20, 21, 22, 1])}
EX2 = {'inputs': np.array([12, 1]), 'targets': np.array([23, 1])}


def test_encoder_decoder_packed():
  conv = converters.EncoderDecoder()
  b = packing.pack_examples([EX1, EX2], conv, conv.group_lengths({'inputs': 6, 'targets': 8}))
  assert b['encoder_input_tokens'].tolist() == [[10, 11, 1, 12, 1, 0]]
  assert b['encoder_segment_ids'].tolist() == [[1, 1, 1, 2, 2, 0]]
  assert b['encoder_positions'].tolist() == [[0, 1, 2, 0, 1, 0]]
  assert b['decoder_target_tokens'].tolist() == [[20, 21, 22, 1, 23, 1, 0, 0]]
  # Shifted right within each segment: each segment starts with 0 (BOS).
  assert b['decoder_input_tokens'].tolist() == [[0, 20, 21, 22, 0, 23, 0, 0]]
  assert b['decoder_loss_weights'].tolist() == [[1, 1, 1, 1, 1, 1, 0, 0]]
  assert b['decoder_segment_ids'].tolist() == [[1, 1, 1, 1, 2, 2, 0, 0]]
  assert b['decoder_positions'].tolist() == [[0, 1, 2, 3, 0, 1, 0, 0]]
  assert all(v.dtype == np.int32 for v in b.values())


def test_prefix_lm_layout():
  conv = converters.get_converter('prefix_decoder')
  b = packing.pack_examples([EX1, EX2], conv, conv.group_lengths({'targets': 12}))
  assert b['decoder_target_tokens'].tolist() == [[10, 11, 1, 20, 21, 22, 1, 12, 1, 23, 1, 0]]
  assert b['decoder_input_tokens'].tolist() == [[0, 10, 11, 1, 20, 21, 22, 0, 12, 1, 23, 0]]
  # Loss zero on every input position and one on every target.
  assert b['decoder_loss_weights'].tolist() == [[0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0]]
  # Bidirectional over the inputs plus the position reading the last input token.
  assert b['decoder_causal_attention'].tolist() == [[1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0]]
  assert b['decoder_segment_ids'].tolist() == [[1] * 7 + [2] * 4 + [0]]
  assert b['decoder_positions'].tolist() == [list(range(7)) + list(range(4)) + [0]]


def test_causal_lm_layouts():
  ex = {'inputs': np.zeros([0], np.int32), 'targets': np.array([5, 6, 7])}
  conv = converters.get_converter('decoder')
  b = packing.pack_examples([ex, ex], conv, conv.group_lengths({'targets': 8}))
  assert b['decoder_input_tokens'].tolist() == [[0, 5, 6, 0, 5, 6, 0, 0]]
  assert not b['decoder_causal_attention'].any()
  assert b['decoder_loss_weights'].tolist() == [[1, 1, 1, 1, 1, 1, 0, 0]]
  # Inputs in a causal layout: loss on targets only, or everything for a plain LM.
  b = packing.pack_examples([EX2], conv, conv.group_lengths({'targets': 4}))
  assert b['decoder_loss_weights'].tolist() == [[0, 0, 1, 1]]
  plain = converters.get_converter('plain_lm_decoder')
  b = packing.pack_examples([EX2], plain, plain.group_lengths({'targets': 4}))
  assert b['decoder_loss_weights'].tolist() == [[1, 1, 1, 1]]
  assert not b['decoder_causal_attention'].any()


def test_encoder_masked_lm():
  conv = converters.get_converter('encoder')
  ex = {'inputs': np.array([5, 262, 7]), 'targets': np.array([0, 6, 0])}
  b = packing.pack_examples([ex], conv, conv.group_lengths({'inputs': 4}))
  assert b['encoder_target_tokens'].tolist() == [[0, 6, 0, 0]]
  assert b['encoder_loss_weights'].tolist() == [[0, 1, 0, 0]]
  with pytest.raises(ValueError, match='aligned with inputs'):
    packing.pack_examples([EX1], conv, conv.group_lengths({'inputs': 8}))


def test_packer_first_fit_and_state_roundtrip():
  conv = converters.get_converter('decoder')
  ex = lambda n: {'inputs': np.zeros([0], np.int32), 'targets': np.arange(3, 3 + n)}
  packer = packing.Packer(conv, {'decoder': 10}, max_open_rows=2)
  for n in (6, 6, 3, 4):  # 6 -> row A; 6 -> row B; 3 -> A (9); 4 -> B (10, full)
    packer.add(ex(n))
  assert [[len(e['targets']) for e in r] for r in packer.ready] == [[6, 4]]
  state = packer.get_state()
  other = packing.Packer(conv, {'decoder': 10}, max_open_rows=2)
  other.set_state(state)
  for p in (packer, other):
    p.add(ex(1))  # fills row A exactly
  assert [[len(e['targets']) for e in r] for r in other.ready] == [[6, 4], [6, 3, 1]]
  with pytest.raises(ValueError, match='exceeds the configured'):
    packer.add(ex(11))


def test_unknown_converter_and_missing_length():
  with pytest.raises(ValueError, match='unknown feature converter'):
    converters.get_converter('rnn')
  with pytest.raises(ValueError, match="needs 'inputs'"):
    converters.EncoderDecoder().group_lengths({'targets': 8})
