"""Loading a trained run for decoding: model, params, tokenizer and prompt mode.

A run directory (docs/design.md) holds `config.gin`, the operative config, and
`checkpoints/` (read with research.runs: the params of the `state` item, or of a
checkpoint saved as one default item holding a pytree with `params`, every shape checked
against the model that config.gin describes). The same config.gin says how the run's text
was tokenized (`make_pipeline.tokenizer`) and whether its decoder saw a bidirectional
prefix (`make_pipeline.feature_converter = 'prefix_decoder'`), so the run's own tokenizer
and prompt mode are used to decode it.
"""
import contextlib
import dataclasses
import os
from typing import Optional

import gin
import jax
import jax.numpy as jnp

from research import models
from research import runs
from research.cli import first_line
from research.decoding.config import DecodingError

PREFIX_CONVERTER = 'prefix_decoder'


@contextlib.contextmanager
def _run_config(gin_path: str):
  """The run's operative config parsed into gin's global config for the block.

  Bindings of configurables this process has not imported (trainer) are skipped. Gin's
  global config is cleared before and after, so an entry point must parse its own gin
  files afterwards.
  """
  if not os.path.isfile(gin_path):
    raise DecodingError(f'no gin config at {gin_path}')
  with gin.unlock_config():
    gin.clear_config()
    try:
      gin.parse_config_file(gin_path, skip_unknown=True)
      yield
    finally:
      gin.clear_config()


def _bound(name: str, default=None):
  try:
    return gin.query_parameter(name)
  except ValueError:  # not bound in the run's config
    return default


def load_model_config(gin_path: str) -> models.TransformerConfig:
  """The TransformerConfig bound in a run's operative config."""
  with _run_config(gin_path):
    return models.TransformerConfig()


@dataclasses.dataclass(frozen=True)
class RunText:
  """How a run's text becomes tokens: its tokenizer, and whether a prompt is a
  bidirectional prefix (a prefix-LM run)."""
  tokenizer: object
  prefix_lm: bool


def load_run_text(workdir: str) -> RunText:
  """The tokenizer and prompt mode of the run's input pipeline (the byte tokenizer and a
  causal prompt where the run did not use the pipeline, e.g. synthetic batches)."""
  # Registers make_pipeline and the tokenizers with gin, so their bindings resolve.
  from research.data import pipeline  # pylint: disable=g-import-not-at-top
  with _run_config(os.path.join(workdir, runs.CONFIG_GIN)):
    converter = _bound('make_pipeline.feature_converter')
    try:
      tokenizer = _bound('make_pipeline.tokenizer')
      if isinstance(tokenizer, gin.config.ConfigurableReference):
        # `@SentencePieceTokenizer()`: built with the run's bindings (its model_path).
        tokenizer = tokenizer.scoped_configurable_fn()
      tokenizer = pipeline._resolve_tokenizer(tokenizer)  # pylint: disable=protected-access
    except (OSError, ValueError, TypeError) as e:
      raise DecodingError(f'the tokenizer of {workdir} cannot be loaded: '
                          f'{first_line(e)}') from e
  return RunText(tokenizer, converter == PREFIX_CONVERTER)


def restore_params(workdir: str, step: Optional[int] = None):
  """(params, step) of the latest (or given) checkpoint of the run in `workdir`."""
  try:
    params, step = runs.restore_params(workdir, step)
  except (runs.RunDirError, runs.CheckpointError) as e:
    raise DecodingError(str(e)) from e
  return jax.tree.map(jnp.asarray, params), step


def check_params(config: models.TransformerConfig, params):
  """Raises DecodingError naming the first parameter whose shape differs."""
  try:
    runs.check_params(config, params)
  except runs.RunDirError as e:
    raise DecodingError(str(e)) from e


def load_run(workdir: str, step: Optional[int] = None):
  """(model config, params, step) of a run directory, shapes checked."""
  config = load_model_config(os.path.join(workdir, runs.CONFIG_GIN))
  params, step = restore_params(workdir, step)
  check_params(config, params)
  return config, params, step
