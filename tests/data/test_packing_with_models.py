"""Packed segments never mix in attention: logits of a packed row equal those of each example
run alone, for the decoder (prefix layout) and encoder-decoder families."""
import jax
import numpy as np
import pytest

from research import models
from research.data import converters, packing

EXAMPLES = [
    {'inputs': np.array([10, 11, 12, 1]), 'targets': np.array([20, 21, 22, 1])},
    {'inputs': np.array([13, 14, 1]), 'targets': np.array([23, 24, 25, 26, 1])},
    {'inputs': np.array([15, 1]), 'targets': np.array([27, 1])},
]


@pytest.mark.parametrize('family,converter_name,lengths', [
    ('decoder', 'prefix_decoder', {'targets': 24}),
    ('encoder_decoder', 'encoder_decoder', {'inputs': 12, 'targets': 14}),
])
def test_packed_equals_alone(family, converter_name, lengths):
  conv = converters.get_converter(converter_name)
  groups = conv.group_lengths(lengths)
  packed = packing.pack_examples(EXAMPLES, conv, groups)
  assert packed['decoder_segment_ids'].shape[0] == 1  # all three share one row
  cfg = models.TransformerConfig(family=family, vocab_size=384, d_model=32, num_layers=2,
                                 num_heads=2, d_ff=64, max_length=32)
  model = models.build(cfg)
  params = model.init(jax.random.PRNGKey(0), **packed)
  logits = np.asarray(model.apply(params, **packed))
  seg = packed['decoder_segment_ids'][0]
  for s, ex in enumerate(EXAMPLES, start=1):
    alone = packing.pack_examples([ex], conv, groups)
    alone_logits = np.asarray(model.apply(params, **alone))
    idx = np.flatnonzero(seg == s)
    np.testing.assert_allclose(logits[0, idx], alone_logits[0, :len(idx)], atol=2e-5,
                               rtol=2e-5)
