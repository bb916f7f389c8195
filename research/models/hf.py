"""Weight import from Hugging Face transformers (PyTorch) checkpoints.

`from_hf(hf_model) -> (config, params)` for `LlamaForCausalLM` and
`T5ForConditionalGeneration`. Like nanoGPT's `from_pretrained`, every converted
tensor is checked against the shape our module expects (`jax.eval_shape` of its
`init`), every expected parameter must be filled and every Hugging Face tensor
used, so a layout mistake fails loudly instead of loading garbage.

Only architectures our modules compute exactly are accepted; anything else
(RoPE scaling, projection biases, an activation we lack, ...) raises
`UnsupportedModelError` naming the field. torch and transformers are test-only
dependencies: this module is imported lazily by `research.models.from_hf`.

Layouts: torch Linear weights are [out, in]; our DenseGeneral kernels are
[*in_axes, *out_axes], e.g. query [embed, heads, head_dim] and out
[heads, head_dim, embed]. Hugging Face splits a projection's output features
head-major (`view(..., heads, head_dim)`), which is a plain reshape of W.T.
"""
from typing import Callable, Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from research.models.config import TransformerConfig
from research.models.transformer import build

Path = Tuple[str, ...]


class UnsupportedModelError(ValueError):
  """A Hugging Face model class or config that our modules cannot reproduce."""


def from_hf(hf_model) -> Tuple[TransformerConfig, dict]:
  """(config, params) such that `build(config).apply({'params': params}, ...)`
  computes the same logits as `hf_model` (fp32 parameters)."""
  name = type(hf_model).__name__
  if name not in CONVERTERS:
    raise UnsupportedModelError(
        f'from_hf: unsupported model class {name}; supported: '
        f'{", ".join(sorted(CONVERTERS))}')
  config, flat = CONVERTERS[name](hf_model)
  check_params(config, flat)
  params = traverse_util.unflatten_dict(
      {path: jnp.asarray(x, config.param_dtype) for path, x in flat.items()})
  return config, params


def expected_shapes(config: TransformerConfig) -> Dict[Path, Tuple[int, ...]]:
  """{parameter path: shape} of `build(config)`, computed without allocating."""
  tokens = jnp.zeros((1, 2), jnp.int32)
  features = {'decoder_input_tokens': tokens}
  if config.family == 'encoder_decoder':
    features['encoder_input_tokens'] = tokens
  if config.family == 'encoder':
    features = {'encoder_input_tokens': tokens}
  variables = jax.eval_shape(
      lambda: build(config).init(jax.random.key(0), **features))
  params = nn.unbox(variables)['params']
  return {path: tuple(x.shape)
          for path, x in traverse_util.flatten_dict(params).items()}


def check_params(config: TransformerConfig, flat: Dict[Path, np.ndarray]) -> None:
  """Raises ValueError unless `flat` has exactly the expected paths and shapes."""
  expected = expected_shapes(config)
  missing = sorted('/'.join(p) for p in expected.keys() - flat.keys())
  unexpected = sorted('/'.join(p) for p in flat.keys() - expected.keys())
  wrong = [f'{"/".join(p)}: got {tuple(np.shape(flat[p]))}, expected {expected[p]}'
           for p in sorted(expected.keys() & flat.keys())
           if tuple(np.shape(flat[p])) != expected[p]]
  problems = []
  if missing:
    problems.append(f'missing parameters: {", ".join(missing)}')
  if unexpected:
    problems.append(f'unexpected parameters: {", ".join(unexpected)}')
  if wrong:
    problems.append(f'shape mismatches: {"; ".join(wrong)}')
  if problems:
    raise ValueError('from_hf: converted parameters do not match the model: '
                     + ' | '.join(problems))


class _StateDict:
  """A torch state dict read once per key, so unused tensors can be reported."""

  def __init__(self, module):
    self._tensors = dict(module.state_dict())
    self._unused = set(self._tensors)

  def get(self, key: str) -> np.ndarray:
    if key not in self._tensors:
      raise ValueError(f'from_hf: the Hugging Face state dict has no {key!r}')
    self._unused.discard(key)
    return self._tensors[key].detach().to('cpu').float().numpy()

  def __contains__(self, key: str) -> bool:
    return key in self._tensors

  def ignore(self, key: str) -> None:
    self._unused.discard(key)

  def ignore_matching(self, suffix: str) -> None:
    self._unused = {k for k in self._unused if not k.endswith(suffix)}

  def check_all_used(self):
    if self._unused:
      raise UnsupportedModelError(
          'from_hf: Hugging Face tensors with no place in our model: '
          + ', '.join(sorted(self._unused)))


def _linear(w_oi: np.ndarray) -> np.ndarray:  # torch [out, in] -> kernel [in, out]
  return w_oi.T


def _to_heads(heads: int, head_dim: int) -> Callable[[np.ndarray], np.ndarray]:
  """[heads*head_dim, embed] -> [embed, heads, head_dim] (query / key / value)."""
  return lambda w: w.T.reshape(w.shape[1], heads, head_dim)


def _from_heads(heads: int, head_dim: int) -> Callable[[np.ndarray], np.ndarray]:
  """[embed, heads*head_dim] -> [heads, head_dim, embed] (attention output)."""
  return lambda w: w.T.reshape(heads, head_dim, w.shape[0])


def _shares_storage(a, b) -> bool:
  return a.data_ptr() == b.data_ptr() and a.shape == b.shape


def _require(condition: bool, message: str):
  if not condition:
    raise UnsupportedModelError(f'from_hf: {message}')


def _pre_rmsnorm_config(c, tied: bool, **fields) -> TransformerConfig:
  """What Llama and T5 share: RMSNorm before each sublayer, no biases, and the sizes read
  under the names every transformers config answers to (T5Config's attribute_map points
  hidden_size, num_hidden_layers and num_attention_heads at d_model, num_layers and
  num_heads). `fields` are the rest of the model."""
  return TransformerConfig(
      vocab_size=c.vocab_size, d_model=c.hidden_size, num_layers=c.num_hidden_layers,
      num_heads=c.num_attention_heads, norm='rmsnorm', norm_position='pre', use_bias=False,
      tie_embeddings=tied, **fields)


# ----------------------------------------------------------------------------
# Llama


def _llama_rope_theta(c) -> float:
  """rope_theta from a transformers 5 `rope_parameters` or a 4.x config; only
  unscaled ('default') RoPE matches `layers.apply_rope`."""
  params = dict(getattr(c, 'rope_parameters', None) or {})
  scaling = getattr(c, 'rope_scaling', None)  # 4.x; an alias of the above in 5.x
  for d in (params, scaling or {}):
    rope_type = d.get('rope_type', d.get('type', 'default'))
    _require(rope_type == 'default',
             f'LlamaConfig.rope_scaling / rope_parameters type {rope_type!r} is '
             'not supported (only unscaled RoPE)')
    extra = set(d) - {'rope_type', 'type', 'rope_theta'}
    _require(not extra, f'LlamaConfig.rope_parameters has unsupported entries {sorted(extra)}')
  theta = params.get('rope_theta', getattr(c, 'rope_theta', None))
  _require(theta is not None, 'LlamaConfig has no rope_theta')
  return float(theta)


def _llama(hf_model):
  c = hf_model.config
  _require(c.hidden_act == 'silu',
           f'LlamaConfig.hidden_act={c.hidden_act!r} is not supported (only silu)')
  _require(not getattr(c, 'attention_bias', False),
           'LlamaConfig.attention_bias=True is not supported')
  _require(not getattr(c, 'mlp_bias', False), 'LlamaConfig.mlp_bias=True is not supported')
  heads = c.num_attention_heads
  kv_heads = c.num_key_value_heads or heads
  head_dim = getattr(c, 'head_dim', None) or c.hidden_size // heads
  tied = _shares_storage(hf_model.lm_head.weight, hf_model.model.embed_tokens.weight)
  config = _pre_rmsnorm_config(
      c, tied,
      family='decoder',
      num_kv_heads=kv_heads,
      head_dim=head_dim,
      d_ff=c.intermediate_size,
      activation='swiglu',
      norm_eps=float(c.rms_norm_eps),
      position='rope',
      max_length=c.max_position_embeddings,
      rope_theta=_llama_rope_theta(c),
      scale_queries=True,
      dropout_rate=0.0,  # Llama has no residual dropout
  )

  sd = _StateDict(hf_model)
  flat = {('token_embed', 'embedding'): sd.get('model.embed_tokens.weight'),
          ('decoder', 'final_norm', 'scale'): sd.get('model.norm.weight')}
  if tied:
    sd.ignore('lm_head.weight')
  else:
    flat[('head', 'lm_head', 'kernel')] = _linear(sd.get('lm_head.weight'))
  layer_map = [
      ('self_attn.q_proj', ('attn', 'query'), _to_heads(heads, head_dim)),
      ('self_attn.k_proj', ('attn', 'key'), _to_heads(kv_heads, head_dim)),
      ('self_attn.v_proj', ('attn', 'value'), _to_heads(kv_heads, head_dim)),
      ('self_attn.o_proj', ('attn', 'out'), _from_heads(heads, head_dim)),
      ('mlp.gate_proj', ('mlp', 'wi_0'), _linear),
      ('mlp.up_proj', ('mlp', 'wi_1'), _linear),
      ('mlp.down_proj', ('mlp', 'wo'), _linear),
  ]
  for i in range(c.num_hidden_layers):
    hf, ours = f'model.layers.{i}', ('decoder', f'layers_{i}')
    for name, path, fn in layer_map:
      flat[ours + path + ('kernel',)] = fn(sd.get(f'{hf}.{name}.weight'))
    flat[ours + ('attn_norm', 'scale')] = sd.get(f'{hf}.input_layernorm.weight')
    flat[ours + ('mlp_norm', 'scale')] = sd.get(f'{hf}.post_attention_layernorm.weight')
  sd.ignore_matching('rotary_emb.inv_freq')  # a saved buffer in older versions
  sd.check_all_used()
  return config, flat


# ----------------------------------------------------------------------------
# T5

# (HF dense_act_fn, is_gated_act) -> our activation. HF "gelu" is the exact
# erf form; "gelu_new" (what "gated-gelu" means) is the tanh approximation.
T5_ACTIVATIONS = {
    ('relu', False): 'relu',
    ('relu', True): 'reglu',
    ('gelu_new', False): 'gelu',
    ('gelu_new', True): 'geglu',
    ('gelu', False): 'gelu_exact',
    ('silu', False): 'silu',
    ('silu', True): 'swiglu',
}


def _t5(hf_model):
  c = hf_model.config
  act_key = (c.dense_act_fn, bool(c.is_gated_act))
  _require(act_key in T5_ACTIVATIONS,
           f'T5Config.feed_forward_proj={c.feed_forward_proj!r} is not supported '
           f'(supported: relu, gated-relu, gelu_new, gated-gelu, gelu, silu, gated-silu)')
  # transformers 5 keeps the "scale the decoder output" switch apart from the
  # tie (it ties lm_head always unless untied by hand); 4.x used the tie flag.
  scale = bool(getattr(c, 'scale_decoder_outputs', c.tie_word_embeddings))
  tied = _shares_storage(hf_model.lm_head.weight, hf_model.shared.weight)
  heads, head_dim = c.num_heads, c.d_kv
  num_decoder_layers = c.num_decoder_layers or c.num_layers
  config = _pre_rmsnorm_config(
      c, tied,
      family='encoder_decoder',
      num_encoder_layers=c.num_layers,
      num_decoder_layers=num_decoder_layers,
      num_kv_heads=None,
      head_dim=head_dim,
      d_ff=c.d_ff,
      activation=T5_ACTIVATIONS[act_key],
      norm_eps=float(c.layer_norm_epsilon),
      position='t5_relative',
      relative_num_buckets=c.relative_attention_num_buckets,
      relative_max_distance=c.relative_attention_max_distance,
      scale_tied_logits=tied and scale,
      scale_queries=False,  # T5 folds 1/sqrt(d_kv) into its initialisation
      # Training-time only; ours drops sublayer outputs and embeddings, HF T5
      # additionally drops attention probabilities and the MLP hidden layer.
      dropout_rate=float(c.dropout_rate),
  )

  sd = _StateDict(hf_model)
  shared = sd.get('shared.weight')
  for key in ('encoder.embed_tokens.weight', 'decoder.embed_tokens.weight'):
    if key in sd:
      _require(np.array_equal(sd.get(key), shared),
               f'{key} differs from shared.weight; our encoder-decoder shares one '
               'token embedding')
  flat = {('token_embed', 'embedding'): shared}
  if tied:
    sd.ignore('lm_head.weight')
  else:
    kernel = _linear(sd.get('lm_head.weight'))
    # An untied head with scaling on (not a standard checkpoint) is still
    # exact: fold d_model**-0.5 into the kernel.
    flat[('head', 'lm_head', 'kernel')] = kernel * c.d_model ** -0.5 if scale else kernel

  mlp = ('wi_0', 'wi_1', 'wo') if c.is_gated_act else ('wi', 'wo')

  def attention(hf, ours):
    flat[ours + ('query', 'kernel')] = _to_heads(heads, head_dim)(sd.get(f'{hf}.q.weight'))
    flat[ours + ('key', 'kernel')] = _to_heads(heads, head_dim)(sd.get(f'{hf}.k.weight'))
    flat[ours + ('value', 'kernel')] = _to_heads(heads, head_dim)(sd.get(f'{hf}.v.weight'))
    flat[ours + ('out', 'kernel')] = _from_heads(heads, head_dim)(sd.get(f'{hf}.o.weight'))

  for stack, depth in (('encoder', c.num_layers), ('decoder', num_decoder_layers)):
    # HF keeps the stack's one relative-bias table in block 0.
    flat[(stack, 'position_bias', 'rel_embedding')] = sd.get(
        f'{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight')
    flat[(stack, 'final_norm', 'scale')] = sd.get(f'{stack}.final_layer_norm.weight')
    for i in range(depth):
      hf, ours = f'{stack}.block.{i}.layer', (stack, f'layers_{i}')
      attention(f'{hf}.0.SelfAttention', ours + ('attn',))
      flat[ours + ('attn_norm', 'scale')] = sd.get(f'{hf}.0.layer_norm.weight')
      ff = 1
      if stack == 'decoder':
        attention(f'{hf}.1.EncDecAttention', ours + ('cross_attn',))
        flat[ours + ('cross_attn_norm', 'scale')] = sd.get(f'{hf}.1.layer_norm.weight')
        ff = 2
      for name in mlp:
        flat[ours + ('mlp', name, 'kernel')] = _linear(
            sd.get(f'{hf}.{ff}.DenseReluDense.{name}.weight'))
      flat[ours + ('mlp_norm', 'scale')] = sd.get(f'{hf}.{ff}.layer_norm.weight')
  sd.check_all_used()
  return config, flat


# Model class name -> converter returning (config, {path: array}).
CONVERTERS = {
    'LlamaForCausalLM': _llama,
    'T5ForConditionalGeneration': _t5,
}
