"""PEFT methods (research/models/peft.py, research/adapt/peft.py): the adapted model starts
as the base, LoRA merges exactly, cached decoding equals the full forward, the counts equal
the published formulas, and training moves the adapters and nothing else."""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research import decoding
from research import models
from research.adapt import peft
from research.models.peft import PeftConfig, PeftError
from tests.decoding import helpers

BASE = dict(vocab_size=64, d_model=32, num_layers=2, num_heads=4, d_ff=64, max_length=48,
            init_std=0.1)
FEATURES = {'decoder': ['decoder_input_tokens'], 'encoder': ['encoder_input_tokens'],
            'encoder_decoder': ['encoder_input_tokens', 'decoder_input_tokens']}


def _batch(family, seed=0, b=2, length=6):
  rng = np.random.default_rng(seed)
  return {name: jnp.asarray(rng.integers(1, 64, (b, length)), jnp.int32)
          for name in FEATURES[family]}


def _init(config, seed=0):
  module = models.build(config)
  dummy = {name: jnp.ones((1, 4), jnp.int32) for name in FEATURES[config.family]}
  return nn.meta.unbox(jax.jit(module.init)(jax.random.PRNGKey(seed), **dummy)['params'])


def _adapted(family, peft_config, base_seed=0, perturb=False, **overrides):
  """(base config, base params, PEFT config, PEFT params on the same base weights)."""
  base_config = models.TransformerConfig(family=family, **{**BASE, **overrides})
  base_params = _init(base_config, base_seed)
  config = base_config.replace(peft=peft_config)
  extra, _ = peft.split(_init(config, seed=7))
  if perturb:  # move B, the up-projections, the prefixes off their starting values
    leaves, tree = jax.tree.flatten(extra)
    keys = jax.random.split(jax.random.PRNGKey(11), len(leaves))
    extra = jax.tree.unflatten(tree, [x + 0.2 * jax.random.normal(k, x.shape, x.dtype)
                                      for k, x in zip(keys, leaves)])
  return base_config, base_params, config, peft.combine(base_params, extra)


def _logits(config, params, batch, **kwargs):
  return np.asarray(models.build(config).apply({'params': params}, **batch, **kwargs))


# Slow: every family but the decoder's LoRA (each case compiles two models).
START_CASES = [(f, m) for f in ('decoder', 'encoder_decoder', 'encoder')
               for m in ('lora', 'adapter', 'prompt')]


@pytest.mark.parametrize('family,method', [
    c if c == ('decoder', 'lora') else pytest.param(*c, marks=pytest.mark.slow)
    for c in START_CASES])
def test_lora_b_zero_fresh_adapters_and_zero_virtual_tokens_are_the_base_model(family,
                                                                               method):
  batch = _batch(family)
  pc = PeftConfig(method=method, lora_rank=4, lora_targets=('q', 'k', 'v', 'o', 'mlp'),
                  num_virtual_tokens=0, adapter_size=8)
  base_config, base_params, config, params = _adapted(family, pc)
  np.testing.assert_array_equal(_logits(config, params, batch),
                                _logits(base_config, base_params, batch))
  assert (peft.count_trainable(params) > 0) == (method != 'prompt')


@pytest.mark.parametrize('family,targets', [
    ('decoder', ('q', 'v')),
    pytest.param('encoder_decoder', ('q', 'k', 'v', 'o', 'mlp'), marks=pytest.mark.slow)])
def test_merged_lora_equals_unmerged(family, targets):
  pc = PeftConfig(method='lora', lora_rank=4, lora_alpha=8.0, lora_targets=targets)
  base_config, base_params, config, params = _adapted(family, pc, perturb=True)
  batch = _batch(family)
  unmerged = _logits(config, params, batch)
  merged_params, merged_config = peft.merge_lora(params, config)
  assert merged_config.peft is None
  merged = _logits(merged_config, merged_params, batch)
  np.testing.assert_allclose(merged, unmerged, atol=1e-5, rtol=0)
  # The adaptation changed the function, so the comparison says something.
  assert np.abs(unmerged - _logits(base_config, base_params, batch)).max() > 1e-3
  lora, _ = peft.split(params)
  back = peft.unmerge_lora(merged_params, lora, config)
  for got, want in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


CACHE_CASES = {
    'prefix_mlp_decoder': ('decoder', dict(method='prefix', prefix_length=3,
                                           prefix_hidden=16), dict(num_kv_heads=2)),
    'ptuning_v2_prefix_lm': ('decoder', dict(method='ptuning_v2', prefix_length=4),
                             dict(position='alibi')),
    'ptuning_v2_encoder_decoder': ('encoder_decoder', dict(method='ptuning_v2',
                                                           prefix_length=2),
                                   dict(position='t5_relative')),
    'prompt_decoder_learned': ('decoder', dict(method='prompt', num_virtual_tokens=3),
                               dict(position='learned')),
    'prompt_encoder_decoder': ('encoder_decoder', dict(method='prompt',
                                                       num_virtual_tokens=2), {}),
    'lora_decoder': ('decoder', dict(method='lora', lora_rank=2,
                                     lora_targets=('q', 'v', 'o', 'mlp')), {}),
    'adapter_decoder': ('decoder', dict(method='adapter', adapter_size=4), {}),
}
PROMPTS = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]


@pytest.mark.parametrize('case', [c if c == 'ptuning_v2_prefix_lm' else pytest.param(
    c, marks=pytest.mark.slow) for c in sorted(CACHE_CASES)])
def test_cached_decode_equals_full_forward_every_step(case):
  family, pc, overrides = CACHE_CASES[case]
  prefix_lm = overrides.get('position') == 'alibi'
  base_config, base_params, config, params = _adapted(family, PeftConfig(**pc), perturb=True,
                                                      **overrides)
  steps = 6
  out = decoding.generate(config, params, PROMPTS, decoding.DecodeConfig(
      max_new_tokens=steps, prefix_lm=prefix_lm, return_logits=True))
  lengths = np.asarray(out.lengths[:, 0])
  generated = [np.asarray(out.tokens[i, 0, :n]) for i, n in enumerate(lengths)]
  reference = helpers.full_forward_logits(config, params, PROMPTS, generated, prefix_lm)
  for row, n in enumerate(lengths):
    np.testing.assert_allclose(np.asarray(out.logits[row, :n]), reference[row, :n],
                               atol=1e-5, rtol=0, err_msg=f'row {row}')
  assert lengths.sum() >= 2 * steps
  # The method changes what the model predicts (the check is not of the base model).
  base = helpers.full_forward_logits(base_config, base_params, PROMPTS, generated, prefix_lm)
  assert np.abs(base[0, :lengths[0]] - reference[0, :lengths[0]]).max() > 1e-3


def _formula(family, pc, **overrides):
  """The published formulas, written out by hand for the test's shapes."""
  cfg = models.TransformerConfig(family=family, **{**BASE, **overrides})
  d, f, L = cfg.d_model, cfg.ff_hidden, cfg.num_layers
  kv = cfg.kv_heads * cfg.dims_per_head
  stacks = 2 if family == 'encoder_decoder' else 1
  if pc.method == 'lora':
    sizes = {'query': d + d, 'key': d + kv, 'value': d + kv, 'out': d + d,
             'wi': d + f, 'wi_0': d + f, 'wi_1': d + f, 'wo': f + d}
    absent = ('wi',) if cfg.gated else ('wi_0', 'wi_1')
    per = sum(pc.lora_rank * sizes[n] for n in pc.lora_modules if n not in absent)
    attn = sum(pc.lora_rank * sizes[n] for n in pc.lora_modules
               if n in ('query', 'key', 'value', 'out'))
    return per * L * stacks + (attn * L if family == 'encoder_decoder' else 0)
  if pc.method == 'prompt':
    return pc.num_virtual_tokens * d
  if pc.method == 'ptuning_v2':
    return 2 * pc.prefix_length * kv * L * stacks
  if pc.method == 'prefix':
    n, h = pc.prefix_length, pc.prefix_hidden
    return stacks * (n * d + d * h + h + h * 2 * L * kv + 2 * L * kv)
  m = pc.adapter_size
  return (2 * d * m + d + m) * 2 * L * stacks


COUNT_CASES = [
    ('decoder', dict(method='lora', lora_rank=4, lora_targets=('q', 'v')), {}),
    ('decoder', dict(method='lora', lora_rank=2, lora_targets=('q', 'k', 'v', 'o', 'mlp')),
     dict(num_kv_heads=2, activation='swiglu')),
    ('encoder_decoder', dict(method='lora', lora_rank=8, lora_targets=('q', 'v')), {}),
    ('encoder', dict(method='lora', lora_rank=3, lora_targets=('wi', 'wo')), {}),
    ('decoder', dict(method='prompt', num_virtual_tokens=5), {}),
    ('encoder_decoder', dict(method='prompt', num_virtual_tokens=7), {}),
    ('decoder', dict(method='ptuning_v2', prefix_length=6), {}),
    ('encoder_decoder', dict(method='ptuning_v2', prefix_length=4), dict(num_kv_heads=1)),
    ('decoder', dict(method='prefix', prefix_length=5, prefix_hidden=24), {}),
    ('decoder', dict(method='adapter', adapter_size=8), {}),
    ('encoder_decoder', dict(method='adapter', adapter_size=16), {}),
]


@pytest.mark.parametrize('family,pc,overrides', COUNT_CASES)
def test_trainable_counts_equal_the_published_formulas(family, pc, overrides):
  pc = PeftConfig(**pc)
  config = models.TransformerConfig(family=family, peft=pc, **{**BASE, **overrides})
  shapes = jax.eval_shape(lambda: _init(config))
  expected = _formula(family, pc, **overrides)
  assert peft.count_trainable(shapes) == expected
  assert peft.formula_count(config) == expected
  # The base model's parameters are all there, unchanged in number.
  base = models.count_params(config.replace(peft=None))['total']
  _, base_tree = peft.split(shapes)
  assert sum(np.prod(x.shape) for x in jax.tree.leaves(base_tree)) == base


def test_lora_counts_r_times_din_plus_dout_for_one_matrix():
  # d_model 32 -> query [32, 4 heads x 8]: r (32 + 32) per layer, two layers.
  config = models.TransformerConfig(**BASE, peft=PeftConfig(method='lora', lora_rank=4,
                                                            lora_targets=('q',)))
  assert peft.formula_count(config) == 2 * 4 * (32 + 32) == 512


@pytest.mark.parametrize('family,method', [
    ('decoder', 'lora'),
    *[pytest.param(f, m, marks=pytest.mark.slow) for f, m in (
        ('decoder', 'prompt'), ('decoder', 'prefix'), ('encoder_decoder', 'ptuning_v2'),
        ('encoder', 'adapter'))]])
def test_training_moves_adapters_and_leaves_the_base_bit_identical(family, method):
  pc = PeftConfig(method=method, lora_rank=4, lora_targets=('q', 'v', 'mlp'),
                  num_virtual_tokens=3, prefix_length=3, prefix_hidden=16, adapter_size=8)
  _, base_params, config, params = _adapted(family, pc)
  module = models.build(config)
  batch = _batch(family, seed=3, b=4, length=8)
  targets = _batch(family, seed=4, b=4, length=8)[FEATURES[family][-1]]

  def loss_fn(p):
    logits = module.apply({'params': p}, **batch)
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

  tx = peft.freeze_base(optax.adamw(1e-2, weight_decay=0.1))
  opt_state = tx.init(params)

  @jax.jit
  def step(p, s):
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, s = tx.update(grads, s, p)
    return optax.apply_updates(p, updates), s, loss

  losses = []
  trained = params
  for _ in range(5):
    trained, opt_state, loss = step(trained, opt_state)
    losses.append(float(loss))
  assert losses[-1] < losses[0]
  new_extra, new_base = peft.split(trained)
  old_extra, _ = peft.split(params)
  for path, leaf in jax.tree_util.tree_flatten_with_path(base_params)[0]:
    got = new_base
    for k in path:
      got = got[k.key]
    assert np.array_equal(np.asarray(got), np.asarray(leaf)), jax.tree_util.keystr(path)
  moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new_extra),
                                                    jax.tree.leaves(old_extra))]
  assert all(moved), moved


@pytest.mark.slow
def test_lora_dropout_acts_only_when_not_deterministic():
  pc = PeftConfig(method='lora', lora_rank=4, lora_dropout=0.5, lora_targets=('q', 'v'))
  _, _, config, params = _adapted('decoder', pc, perturb=True)
  batch = _batch('decoder')
  rngs = {'dropout': jax.random.PRNGKey(0)}
  eval_a = _logits(config, params, batch, rngs=rngs)
  eval_b = _logits(config, params, batch)
  train = _logits(config, params, batch, deterministic=False, rngs=rngs)
  np.testing.assert_allclose(eval_a, eval_b, atol=1e-6)
  assert np.abs(train - eval_a).max() > 1e-4


def test_adapter_checkpoint_holds_only_adapters_and_names_the_base(tmp_path):
  pc = PeftConfig(method='lora', lora_rank=2, lora_targets=('q', 'o'))
  _, base_params, config, params = _adapted('decoder', pc, perturb=True)
  path = str(tmp_path / 'adapter')
  peft.save_adapter(path, params, pc, base_run='runs/base')
  extra, loaded_pc, base_run = peft.load_adapter(path)
  assert loaded_pc == pc and base_run == 'runs/base'
  assert peft.count_trainable(extra) == sum(x.size for x in jax.tree.leaves(extra))
  assert sum(x.size for x in jax.tree.leaves(extra)) == peft.formula_count(config)
  restored = peft.combine(base_params, extra)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  assert sorted(p.name for p in tmp_path.iterdir()) == ['adapter.json', 'adapter.npz']


def test_a_config_with_peft_reads_back_from_its_json_dict():
  pc = PeftConfig(method='lora', lora_targets=('q', 'v'))
  config = models.TransformerConfig(**BASE, peft=pc)
  again = models.TransformerConfig(**dataclasses.asdict(config))
  assert again == config


@pytest.mark.parametrize('fields,overrides,needle', [
    (dict(method='lora', lora_targets=('q', 'fc1')), {}, "'fc1'"),
    (dict(method='lora', lora_targets=('wi',)), dict(activation='swiglu'), "'wi'"),
    (dict(method='lora', lora_rank=40), {}, 'lora_rank=40'),
    (dict(method='loraa'), {}, "'loraa'"),
    (dict(method='prompt', num_virtual_tokens=48), {}, 'num_virtual_tokens=48'),
    (dict(method='adapter', adapter_size=0), {}, 'adapter_size'),
])
def test_bad_peft_configs_fail_in_one_line_naming_the_value(fields, overrides, needle):
  with pytest.raises(ValueError) as err:
    models.TransformerConfig(**{**BASE, **overrides}, peft=PeftConfig(**fields))
  # gin appends the configurable's name on a line of its own; the error is the first.
  message = str(err.value).splitlines()[0]
  assert needle in message and message.startswith('PeftConfig.'), message


def test_prefix_plus_prompt_longer_than_the_context_is_refused():
  for pc in (PeftConfig(method='ptuning_v2', prefix_length=40),
             PeftConfig(method='prompt', num_virtual_tokens=40)):
    config, params = helpers.tiny_model(peft=pc)
    with pytest.raises(decoding.DecodingError, match=r'length 40 \+ prompt') as err:
      decoding.generate(config, params, [[1] * 6], decoding.DecodeConfig(max_new_tokens=4))
    assert '\n' not in str(err.value)
    with pytest.raises(PeftError, match='40 \\+ prompt 9 = 49 exceeds'):
      peft.check_lengths(config, 9)
    peft.check_lengths(config, 8)


@pytest.mark.slow
def test_virtual_tokens_plus_prompt_longer_than_the_encoder_context_is_refused():
  # An encoder-decoder's encoder holds the virtual tokens and the prompt.
  config, params = helpers.tiny_model('encoder_decoder', peft=PeftConfig(
      method='prompt', num_virtual_tokens=40))
  with pytest.raises(decoding.DecodingError,
                     match=r'length 40 \+ prompt \(9 tokens\) = 49 exceeds'):
    decoding.generate(config, params, [[1] * 9], decoding.DecodeConfig(max_new_tokens=4))


@pytest.mark.parametrize('method', ['lora', 'prompt', 'prefix', 'ptuning_v2', 'adapter'])
def test_each_adapt_gin_file_selects_its_method(method):
  import gin
  import os
  import research.models.config  # noqa: F401  (registers TransformerConfig)
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  gin.parse_config_file(os.path.join(root, 'gin_configs', 'adapt', f'{method}.gin'))
  config = models.TransformerConfig(**BASE)
  assert config.peft_method == method


@pytest.mark.slow
@pytest.mark.parametrize('method', ['ptuning_v2', 'lora', 'adapter'])
def test_scanned_layers_compute_what_unrolled_layers_do(method):
  from research.models import transformer
  pc = PeftConfig(method=method, prefix_length=3, lora_rank=2, adapter_size=4)
  _, _, config, params = _adapted('decoder', pc, perturb=True)
  batch = _batch('decoder')
  scanned = config.replace(scan_layers=True)
  np.testing.assert_allclose(
      _logits(scanned, transformer.stack_layers(params, config), batch),
      _logits(config, params, batch), atol=1e-5, rtol=0)
