"""PEFT outside the modules: trainable-parameter counts, the frozen-base optimizer,
adapter-only checkpoints and LoRA merge/unmerge.

The modules (research/models/peft.py) add each method's parameters beside the base
ones; every function here tells them apart by name (`is_peft_path`), so a base
checkpoint, a PEFT tree and an adapter-only tree convert into one another.
"""
import json
import math
import os
import re
import tempfile
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from research.models import peft as model_peft
from research.models.config import TransformerConfig
from research.models.peft import PeftConfig, PeftError  # re-exported

PyTree = Any
# Names the modules give PEFT parameters (and only them).
_PEFT_NAME = re.compile(r'^(lora_a|lora_b|prompt_embedding|prefix_key|prefix_value|'
                        r'prefix_encoder|attn_adapter|mlp_adapter)$')


def is_peft_path(path) -> bool:
  """True for a parameter path (tuple of names) that belongs to a PEFT method."""
  return any(_PEFT_NAME.match(str(k)) for k in path)


def _flat(params):
  return traverse_util.flatten_dict(nn.meta.unbox(dict(params)))


def trainable_mask(params: PyTree) -> PyTree:
  """The params' tree with True on PEFT parameters (what the optimizer updates)."""
  flat = _flat(params)
  return traverse_util.unflatten_dict({k: is_peft_path(k) for k in flat})


def _labels(params: PyTree) -> PyTree:
  return jax.tree_util.tree_map_with_path(
      lambda path, _: 'train' if is_peft_path(tuple(
          getattr(k, 'key', getattr(k, 'name', k)) for k in path)) else 'frozen', params)


def freeze_base(tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """`tx` on the PEFT parameters only (optax.multi_transform, labels from the parameter
  names): the base gets zero updates, so it stays bit-identical, and no optimizer state.
  Global-norm clipping inside `tx` sees the PEFT gradients only."""
  return optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()}, _labels)


def count_trainable(params: PyTree) -> int:
  """Number of PEFT parameters in a params tree."""
  return int(sum(np.prod(v.shape) for k, v in _flat(params).items() if is_peft_path(k)))


def formula_count(config: TransformerConfig) -> int:
  """Trainable parameters from the published formulas, from the config alone:
    LoRA        r (d_in + d_out) per adapted matrix (Hu et al. 2021 sec. 4.2);
    prompt      n d (Lester et al. 2021);
    prefix      2 n d per self-attention layer (d = kv_heads * head_dim; Li & Liang 2021),
                with the reparameterization: n d + (d h + h) + (h * 2 L d + 2 L d) per stack;
    adapter     2 d m + d + m per adapter, two per block (Houlsby et al. 2019 sec. 3.6).
  Layers are every stack's (both stacks of an encoder-decoder)."""
  peft = config.peft
  method = config.peft_method
  depths = {'decoder': [config.num_layers], 'encoder': [config.num_layers],
            'encoder_decoder': [config.encoder_layers, config.decoder_layers]}[config.family]
  d = config.d_model
  q_out = config.num_heads * config.dims_per_head
  kv = config.kv_heads * config.dims_per_head
  if method == 'none':
    return 0
  if method == 'lora':
    shapes = {'query': (d, q_out), 'key': (d, kv), 'value': (d, kv), 'out': (q_out, d),
              'wi': (d, config.ff_hidden), 'wi_0': (d, config.ff_hidden),
              'wi_1': (d, config.ff_hidden), 'wo': (config.ff_hidden, d)}
    mlp = () if config.attention_only else (
        ('wi_0', 'wi_1') if config.gated else ('wi',)) + ('wo',)
    present = model_peft.ATTENTION_PROJECTIONS + mlp
    per_block = sum(peft.lora_rank * sum(shapes[n]) for n in peft.lora_modules
                    if n in present)
    cross = sum(peft.lora_rank * sum(shapes[n]) for n in peft.lora_modules
                if n in model_peft.ATTENTION_PROJECTIONS)
    total = per_block * sum(depths)
    if config.family == 'encoder_decoder':  # the decoder's cross-attention
      total += cross * config.decoder_layers
    return total
  if method == 'prompt':
    return peft.num_virtual_tokens * d
  if method in model_peft.PREFIX_METHODS:
    n = peft.prefix_length
    if not peft.uses_prefix_projection:
      return 2 * n * kv * sum(depths)
    h = peft.prefix_hidden
    return sum(n * d + d * h + h + h * 2 * layers * kv + 2 * layers * kv for layers in depths)
  if method == 'adapter':
    m = peft.adapter_size
    per_adapter = 2 * d * m + d + m
    per_block = 1 if config.attention_only else 2
    return per_adapter * per_block * sum(depths)
  raise PeftError(f'unknown PEFT method {method!r}')


def split(params: PyTree) -> tuple[PyTree, PyTree]:
  """(PEFT parameters, base parameters): two disjoint trees whose union is `params`."""
  flat = _flat(params)
  peft = {k: v for k, v in flat.items() if is_peft_path(k)}
  base = {k: v for k, v in flat.items() if not is_peft_path(k)}
  return traverse_util.unflatten_dict(peft), traverse_util.unflatten_dict(base)


def combine(base: PyTree, peft: PyTree) -> PyTree:
  """The inverse of `split`: a base checkpoint's parameters plus the PEFT ones."""
  flat = _flat(base)
  extra = _flat(peft)
  clash = set(flat) & set(extra)
  if clash:
    raise PeftError(f'PEFT parameter {"/".join(map(str, sorted(clash)[0]))} is also in the base')
  flat.update(extra)
  return traverse_util.unflatten_dict(flat)


def save_adapter(path: str, params: PyTree, peft: PeftConfig, base_run: str) -> None:
  """Writes only the PEFT parameters (`path`.npz) and a JSON beside them naming the
  base run and the PeftConfig; temp files renamed into place, so nothing half-written."""
  adapter, _ = split(params)
  flat = {'/'.join(map(str, k)): np.asarray(v) for k, v in _flat(adapter).items()}
  meta = {'base_run': base_run, 'peft': {k: (list(v) if isinstance(v, tuple) else v)
                                         for k, v in peft.__dict__.items()}}
  directory = os.path.dirname(os.path.abspath(path))
  for suffix, write in (('.npz', lambda f: np.savez(f, **flat)),
                        ('.json', lambda f: f.write(json.dumps(meta, indent=1).encode()))):
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=suffix)
    with os.fdopen(fd, 'wb') as f:
      write(f)
    os.replace(tmp, path + suffix)


def load_adapter(path: str) -> tuple[PyTree, PeftConfig, str]:
  """(PEFT parameters, PeftConfig, base run) written by `save_adapter`."""
  for suffix in ('.npz', '.json'):
    if not os.path.exists(path + suffix):
      raise PeftError(f'adapter file {path + suffix} does not exist')
  with np.load(path + '.npz') as data:
    flat = {tuple(k.split('/')): jnp.asarray(data[k]) for k in data.files}
  with open(path + '.json') as f:
    meta = json.load(f)
  return traverse_util.unflatten_dict(flat), PeftConfig(**meta['peft']), meta['base_run']


def _lora_delta(module: dict, scale: float):
  a, b = module['lora_a'], module['lora_b']
  return scale * jnp.tensordot(a, b, axes=1).astype(module['kernel'].dtype)


def merge_lora(params: PyTree, config: TransformerConfig):
  """(base-layout params with W + (alpha / r) A B in every adapted kernel, the config
  without PEFT): the merged model costs nothing extra at inference (Hu et al. sec. 4.1)."""
  if config.peft_method != 'lora':
    raise PeftError(f'merge_lora needs a LoRA config, got method {config.peft_method!r}')
  scale = config.peft.lora_scale

  def walk(tree):
    if not isinstance(tree, dict):
      return tree
    if 'lora_a' in tree:
      out = {k: v for k, v in tree.items() if k not in ('lora_a', 'lora_b')}
      out['kernel'] = tree['kernel'] + _lora_delta(tree, scale)
      return out
    return {k: walk(v) for k, v in tree.items()}
  return walk(nn.meta.unbox(dict(params))), config.replace(peft=None)


def unmerge_lora(merged: PyTree, lora: PyTree, config: TransformerConfig) -> PyTree:
  """The PEFT tree again: W = merged - (alpha / r) A B, with A and B from `lora` (the
  `split` of the LoRA tree); `config` is the LoRA config."""
  scale = config.peft.lora_scale

  def walk(tree, extra):
    if not isinstance(extra, dict):
      return tree
    if 'lora_a' in extra:
      out = dict(tree)
      out.update(extra)
      out['kernel'] = tree['kernel'] - _lora_delta({**extra, 'kernel': tree['kernel']}, scale)
      return out
    return {k: walk(v, extra.get(k)) for k, v in tree.items()}
  return walk(nn.meta.unbox(dict(merged)), nn.meta.unbox(dict(lora)))


def check_lengths(config: TransformerConfig, prompt_length: int) -> None:
  """Virtual tokens or prefix plus the longest prompt must fit the context."""
  method = config.peft_method
  n = {'prompt': config.peft.num_virtual_tokens if config.peft else 0}.get(method, 0)
  if method in model_peft.PREFIX_METHODS:
    n = config.peft.prefix_length
  if n + prompt_length > config.max_length:
    raise PeftError(f'PEFT {method} length {n} + prompt {prompt_length} = '
                    f'{n + prompt_length} exceeds the context max_length={config.max_length}')


# Hugging Face Llama module names -> ours, for LoRA weights trained with HF peft.
_HF_LLAMA_LORA = {'self_attn.q_proj': ('attn', 'query'), 'self_attn.k_proj': ('attn', 'key'),
                  'self_attn.v_proj': ('attn', 'value'), 'self_attn.o_proj': ('attn', 'out'),
                  'mlp.gate_proj': ('mlp', 'wi_0'), 'mlp.up_proj': ('mlp', 'wi_1'),
                  'mlp.down_proj': ('mlp', 'wo')}
_HF_LORA_KEY = re.compile(r'layers\.(\d+)\.(\w+\.\w+)\.lora_([AB])(?:\.\w+)?\.weight$')


def lora_from_hf_peft(state_dict: dict, config: TransformerConfig) -> PyTree:
  """Our LoRA tree from HF peft's LoRA weights on a Llama (`{name: array}`, e.g.
  `get_peft_model_state_dict` as numpy). peft's lora_A.weight is [r, d_in] and lora_B
  [d_out, r] (torch Linear layout); ours are A [*in, r], B [r, *out] with heads split
  as research.models.hf splits the kernels."""
  h, g, d = config.num_heads, config.kv_heads, config.dims_per_head
  out_heads = {'query': h, 'key': g, 'value': g}
  flat = {}
  for name, value in state_dict.items():
    match = _HF_LORA_KEY.search(name)
    if not match:
      continue
    layer, module, which = match.groups()
    if module not in _HF_LLAMA_LORA:
      raise PeftError(f'LoRA weight {name} adapts {module!r}, which has no counterpart')
    path = ('decoder', f'layers_{layer}') + _HF_LLAMA_LORA[module]
    w = np.asarray(value, np.float32).T  # A: [d_in, r]; B: [r, d_out]
    leaf = path[-1]
    if which == 'A':
      if leaf == 'out':
        w = w.reshape(h, d, -1)
      flat[path + ('lora_a',)] = jnp.asarray(w)
    else:
      if leaf in out_heads:
        w = w.reshape(w.shape[0], out_heads[leaf], d)
      flat[path + ('lora_b',)] = jnp.asarray(w)
  if not flat:
    raise PeftError('no LoRA weights (names with lora_A / lora_B) in the state dict')
  return traverse_util.unflatten_dict(flat)
