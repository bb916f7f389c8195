"""Equivalence with Hugging Face transformers: tiny randomly initialized HF
models, converted by `models.from_hf`, give the HF PyTorch logits (fp32).

Everything is built in-process from tiny configs; nothing is downloaded.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
# Plain imports: the test extra installs torch and transformers, so a broken install fails
# here instead of skipping every equivalence test.
import torch
import transformers
from flax import traverse_util

from research import models
from research.models import hf as hf_convert
from research.models import transformer

TOL = 1e-4
VOCAB = 64


def _perturb_norms(hf_model, seed):
  """HF initializes norm scales to 1, which would hide a swapped norm."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in hf_model.named_parameters():
      if 'norm' in name:
        p.add_(0.3 * torch.randn(p.shape, generator=gen))
  return hf_model.eval()


def _tokens(batch, length, seed):
  rng = np.random.default_rng(seed)
  return rng.integers(1, VOCAB, (batch, length)).astype(np.int64)


def _max_diff(ours, theirs):
  ours = np.asarray(ours)
  assert ours.shape == theirs.shape
  scale = np.abs(theirs).max()
  assert scale > 0.5, f'reference logits too small to test anything ({scale})'
  return float(np.abs(ours - theirs).max())


# ----------------------------------------------------------------------------
# Llama


def _llama(seed=0, **overrides):
  kwargs = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=80,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=64, rms_norm_eps=1e-5, initializer_range=0.2,
                attn_implementation='eager')
  kwargs.update(overrides)
  torch.manual_seed(seed)
  config = transformers.LlamaConfig(**kwargs)
  return _perturb_norms(transformers.LlamaForCausalLM(config), seed)


LLAMA_CASES = {
    # GQA (2 kv heads for 4), non-default theta, untied head, head_dim decoupled.
    'gqa_untied': dict(rope_parameters={'rope_type': 'default', 'rope_theta': 500.0},
                       head_dim=16),
    # MQA with a tied head.
    'mqa_tied': dict(num_key_value_heads=1, tie_word_embeddings=True),
}


@pytest.mark.parametrize('case', sorted(LLAMA_CASES))
def test_llama_logits_match(case):
  hf_model = _llama(**LLAMA_CASES[case])
  config, params = models.from_hf(hf_model)
  tied = case == 'mqa_tied'
  assert config.tie_embeddings == tied
  assert ('lm_head' in params.get('head', {})) != tied
  assert config.kv_heads == hf_model.config.num_key_value_heads

  tokens = _tokens(2, 12, seed=1)
  with torch.no_grad():
    expected = hf_model(input_ids=torch.from_numpy(tokens)).logits.numpy()
  got = models.build(config).apply({'params': params},
                                   decoder_input_tokens=jnp.asarray(tokens, jnp.int32))
  assert _max_diff(got, expected) < TOL


def test_llama_right_padding_matches_attention_mask():
  hf_model = _llama(seed=3)
  config, params = models.from_hf(hf_model)
  tokens = _tokens(2, 10, seed=2)
  mask = np.ones_like(tokens)
  mask[0, 6:] = 0  # first row: 6 real tokens, then padding
  with torch.no_grad():
    expected = hf_model(input_ids=torch.from_numpy(tokens),
                        attention_mask=torch.from_numpy(mask)).logits.numpy()
  got = np.asarray(models.build(config).apply(
      {'params': params}, decoder_input_tokens=jnp.asarray(tokens, jnp.int32),
      decoder_segment_ids=jnp.asarray(mask, jnp.int32)))
  real = mask.astype(bool)  # padded positions' logits are meaningless in both
  assert _max_diff(got[real], expected[real]) < TOL


# ----------------------------------------------------------------------------
# T5


def _t5(seed=0, untie_head=False, **overrides):
  kwargs = dict(vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=64, num_layers=2,
                num_heads=4, relative_attention_num_buckets=8,
                relative_attention_max_distance=20, dropout_rate=0.0,
                attn_implementation='eager')
  kwargs.update(overrides)
  torch.manual_seed(seed)
  model = transformers.T5ForConditionalGeneration(transformers.T5Config(**kwargs))
  if untie_head:
    # transformers 5 ties lm_head to `shared` even for v1.1 configs; give it
    # its own weights as in the released v1.1 checkpoints.
    model.lm_head.weight = torch.nn.Parameter(torch.randn(VOCAB, kwargs['d_model']))
  return _perturb_norms(model, seed)


T5_CASES = {
    # v1.0: relu MLP, tied embeddings, decoder output scaled by d_model**-0.5.
    'v1_0': dict(feed_forward_proj='relu'),
    # v1.1: gated-gelu, untied lm_head, no rescale; a deeper decoder and the
    # default bucket table.
    'v1_1': dict(feed_forward_proj='gated-gelu', tie_word_embeddings=False,
                 untie_head=True, num_decoder_layers=3,
                 relative_attention_num_buckets=32, relative_attention_max_distance=128),
}


def _t5_logits(hf_model, config, params, enc, dec, enc_mask=None):
  with torch.no_grad():
    expected = hf_model(
        input_ids=torch.from_numpy(enc), decoder_input_ids=torch.from_numpy(dec),
        attention_mask=None if enc_mask is None else torch.from_numpy(enc_mask)
    ).logits.numpy()
  features = dict(encoder_input_tokens=jnp.asarray(enc, jnp.int32),
                  decoder_input_tokens=jnp.asarray(dec, jnp.int32))
  if enc_mask is not None:
    features['encoder_segment_ids'] = jnp.asarray(enc_mask, jnp.int32)
  got = models.build(config).apply({'params': params}, **features)
  return got, expected


@pytest.mark.parametrize('case', sorted(T5_CASES))
def test_t5_logits_match(case):
  hf_model = _t5(**T5_CASES[case])
  config, params = models.from_hf(hf_model)
  if case == 'v1_0':
    assert config.activation == 'relu'
    assert config.tie_embeddings and config.scale_tied_logits
  else:
    assert config.activation == 'geglu'
    assert not config.tie_embeddings and 'lm_head' in params['head']
  assert not config.scale_queries

  # Encoder long enough that distances reach the log-spaced buckets.
  enc, dec = _tokens(2, 14, seed=4), _tokens(2, 11, seed=5)
  got, expected = _t5_logits(hf_model, config, params, enc, dec)
  assert _max_diff(got, expected) < TOL

  # Padding: encoder_segment_ids 0 plays HF's attention_mask 0.
  mask = np.ones_like(enc)
  mask[0, 9:] = 0
  mask[1, 12:] = 0
  got, expected = _t5_logits(hf_model, config, params, enc, dec, enc_mask=mask)
  assert _max_diff(got, expected) < TOL


def test_t5_weights_run_under_scan_layers():
  """Imported weights are unrolled; stacked, the scanned model (with remat) computes the
  same logits. Cached decoding refuses scan_layers in one line."""
  hf_model = _t5(**T5_CASES['v1_1'])
  config, params = models.from_hf(hf_model)
  scan_config = config.replace(scan_layers=True, remat_policy='full')
  stacked = transformer.stack_layers(params, config)
  enc, dec = _tokens(2, 14, seed=4), _tokens(2, 11, seed=5)
  got, expected = _t5_logits(hf_model, scan_config, stacked, enc, dec)
  assert _max_diff(got, expected) < TOL
  with pytest.raises(models.ConfigError, match='scan_layers does not support cached'):
    models.build(scan_config).init(jax.random.key(0), jnp.asarray(enc, jnp.int32),
                                   jnp.asarray(dec, jnp.int32), decode=True)


# ----------------------------------------------------------------------------
# Refusals and the shape check


def test_unsupported_model_class():
  with pytest.raises(hf_convert.UnsupportedModelError, match='Linear'):
    models.from_hf(torch.nn.Linear(2, 2))


@pytest.mark.parametrize('overrides, field', [
    (dict(rope_parameters={'rope_type': 'linear', 'factor': 2.0, 'rope_theta': 1e4}),
     'rope'),
    (dict(attention_bias=True), 'attention_bias'),
    (dict(mlp_bias=True), 'mlp_bias'),
    (dict(hidden_act='gelu'), 'hidden_act'),
])
def test_unsupported_llama_config(overrides, field):
  with pytest.raises(hf_convert.UnsupportedModelError, match=field):
    models.from_hf(_llama(**overrides))


def test_unsupported_t5_activation():
  with pytest.raises(hf_convert.UnsupportedModelError, match='feed_forward_proj'):
    models.from_hf(_t5(feed_forward_proj='gated-gelu_fast'))


def test_shape_check_names_the_parameter():
  config, params = models.from_hf(_llama())
  flat = traverse_util.flatten_dict(params)
  hf_convert.check_params(config, flat)  # the real conversion passes
  bad = dict(flat)
  bad[('decoder', 'layers_1', 'attn', 'key', 'kernel')] = np.zeros((32, 4, 16))
  with pytest.raises(ValueError, match='layers_1/attn/key/kernel'):
    hf_convert.check_params(config, bad)
  del bad[('decoder', 'final_norm', 'scale')]
  with pytest.raises(ValueError, match='missing parameters: decoder/final_norm/scale'):
    hf_convert.check_params(config, bad)
