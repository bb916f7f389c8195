"""The trainer with a PEFT config: the optimizer moves the method's parameters only, so the
base parameters at the end are bit-identical to those the run started from."""
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research import models
from research import runs
from research.adapt import peft
from research.train import trainer
from tests.train import helpers


def test_peft_run_keeps_the_base_bit_identical_and_trains_the_adapters(tmp_path):
  helpers.configure('decoder', steps=6, extra="""
import research.models.peft
PeftConfig.method = 'lora'
PeftConfig.lora_rank = 2
PeftConfig.lora_targets = ('q', 'v', 'mlp')
TransformerConfig.peft = @PeftConfig()
""")
  summary = trainer.train(str(tmp_path))
  assert summary['step'] == 6
  config = runs.model_config(str(tmp_path))
  assert config.peft_method == 'lora'
  info = json.loads((tmp_path / 'run_info.json').read_text())
  assert info['n_params_trainable'] == peft.formula_count(config) > 0
  final, _ = runs.load_params(str(tmp_path))
  # The state's initial parameters: the trainer initializes with PRNGKey(seed = 0).
  # Jitted as the trainer's init is (an eager init can differ in the last bit).
  key = jax.random.PRNGKey(0)
  initial = nn.meta.unbox(jax.jit(lambda k: models.build(config).init(
      {'params': k, 'dropout': k}, decoder_input_tokens=jnp.ones((1, 1), jnp.int32),
      deterministic=True)['params'])(key))
  new_extra, new_base = peft.split(final)
  old_extra, old_base = peft.split(initial)
  flat_new = jax.tree_util.tree_flatten_with_path(new_base)[0]
  flat_old = jax.tree_util.tree_flatten_with_path(old_base)[0]
  assert len(flat_new) == len(flat_old) > 0
  for (path, got), (_, want) in zip(flat_new, flat_old):
    assert np.array_equal(np.asarray(got), np.asarray(want)), jax.tree_util.keystr(path)
  # B started at zero and every adapter moved.
  for (path, got), (_, want) in zip(jax.tree_util.tree_flatten_with_path(new_extra)[0],
                                    jax.tree_util.tree_flatten_with_path(old_extra)[0]):
    assert not np.array_equal(np.asarray(got), np.asarray(want)), jax.tree_util.keystr(path)
