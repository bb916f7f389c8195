"""Greedy / sampling / beam search over the models' KV cache.

Public API:
  DecodeConfig, DecodingError, generate(model_config, params, prompts, config, rng)
  -> DecodeOutput(tokens [batch, K, new], lengths, scores, logits), pad_prompts,
  Prompts, STRATEGIES, PROCESSORS, ADAPTERS, load_run(workdir) -> (model config, params,
  step), load_run_text(workdir) -> the run's tokenizer and prompt mode, compiler_options()
  (XLA options for a decode loop jitted elsewhere). The command line is `main`
  (`research-generate`, `python -m research.decoding`).
"""
from research.decoding.adapters import ADAPTERS, Prompts
from research.decoding.api import STRATEGIES, compiler_options, generate, pad_prompts
from research.decoding.config import DecodeConfig, DecodingError
from research.decoding.processors import PROCESSORS
from research.decoding.sampling import DecodeOutput
from research.decoding.loading import load_run, load_run_text
