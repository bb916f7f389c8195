"""HF parity: LoRA on a converted tiny random HF Llama gives HF peft's logits when both
use the same A and B. Built in-process from a LlamaConfig; nothing is downloaded."""
import jax.numpy as jnp
import numpy as np
import peft as hf_peft
import torch
import transformers

from research import models
from research.adapt import peft
from research.models.peft import PeftConfig


def test_lora_on_converted_llama_matches_hf_peft():
  torch.manual_seed(0)
  hf_config = transformers.LlamaConfig(
      vocab_size=64, hidden_size=32, intermediate_size=80, num_hidden_layers=2,
      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
      rms_norm_eps=1e-5, initializer_range=0.2, attn_implementation='eager')
  base = transformers.LlamaForCausalLM(hf_config).eval()
  base_config, base_params = models.from_hf(base)
  lora_config = hf_peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                   target_modules=['q_proj', 'v_proj', 'o_proj', 'down_proj'])
  model = hf_peft.get_peft_model(base, lora_config).eval()
  gen = torch.Generator().manual_seed(1)
  with torch.no_grad():  # B = 0 at peft's init; give it (and A) known random values
    for name, p in model.named_parameters():
      if 'lora_' in name:
        p.copy_(0.3 * torch.randn(p.shape, generator=gen))
  state = {k: v.detach().numpy() for k, v in
           hf_peft.get_peft_model_state_dict(model).items()}
  assert len(state) == 2 * 4 * 2

  config = base_config.replace(peft=PeftConfig(method='lora', lora_rank=4, lora_alpha=8.0,
                                                lora_targets=('q', 'v', 'o', 'wo')))
  params = peft.combine(base_params, peft.lora_from_hf_peft(state, config))
  assert peft.count_trainable(params) == peft.formula_count(config)
  tokens = np.random.default_rng(2).integers(1, 64, (2, 10))
  with torch.no_grad():
    expected = model(input_ids=torch.from_numpy(tokens)).logits.numpy()
    with model.disable_adapter():
      without = model(input_ids=torch.from_numpy(tokens)).logits.numpy()
  got = np.asarray(models.build(config).apply(
      {'params': params}, decoder_input_tokens=jnp.asarray(tokens, jnp.int32)))
  assert np.abs(expected - without).max() > 0.1  # LoRA changes the logits
  np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
  merged_params, merged_config = peft.merge_lora(params, config)
  merged = np.asarray(models.build(merged_config).apply(
      {'params': merged_params}, decoder_input_tokens=jnp.asarray(tokens, jnp.int32)))
  np.testing.assert_allclose(merged, expected, atol=1e-4, rtol=0)
