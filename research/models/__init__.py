"""Transformer families in Flax linen, with one frozen config.

Public API (kept stable for notebooks, scripts and outside checks):
  TransformerConfig, PeftConfig (parameter-efficient fine-tuning), build(config),
  count_params(config), flops_per_token(config, seq_len),
  flops_per_example(config, inputs, targets), from_hf(hf_model) -> (config, params),
  losses.cross_entropy_loss.
"""
from research.models import axes
from research.models import losses
from research.models.accounting import count_params, flops_per_example, flops_per_token
from research.models.config import ConfigError, TransformerConfig
from research.models.peft import PeftConfig, PeftError
from research.models.transformer import build


def from_hf(hf_model):
  """(config, params) from a Hugging Face LlamaForCausalLM or T5ForConditionalGeneration."""
  from research.models import hf  # torch is a test-only dependency
  return hf.from_hf(hf_model)
