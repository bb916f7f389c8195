"""The project's models as an lm-evaluation-harness model type: `--model research`.

    python -m research.evaluation --model research --model_args run_dir=RUN_DIR \\
        --tasks lambada_like --include_path tasks/

EleutherAI's lm-evaluation-harness (Gao et al., https://github.com/EleutherAI/
lm-evaluation-harness, v0.4) asks a model for three things, and this module answers them
over the project's own jitted forward pass and `research.decoding.generate`:

  loglikelihood          log p(continuation | context) summed, and whether every
                         continuation token is the argmax (multiple choice, cloze);
  loglikelihood_rolling  log p(text) over disjoint windows of the model's context
                         (perplexity), windows made by the harness's own
                         `utils.get_rolling_token_windows`, as its `hf` model does;
  generate_until         greedy (or sampled) continuations cut at the task's stop strings.

Models: a run directory of this project (`run_dir=`: decoder, prefix decoder or
encoder-decoder; its own tokenizer from config.gin) or Hugging Face weights on local disk
(`hf_model=DIR`: Llama, T5; converted with `research.models.from_hf`, tokenized with the
Hugging Face tokenizer in `tokenizer=DIR`, default the same directory). Nothing is
downloaded.

The request layout follows the harness's `hf` model (lm_eval/models/huggingface.py) so the
two give the same numbers on the same weights (tests/evaluation/test_harness_parity.py):
a decoder scores (context + continuation)[-(max_length + 1):] fed as input[:-1] against
targets[1:], truncating from the left (one log line the first time); an encoder-decoder
reads the context (its last max_length tokens) in the encoder and the continuation in the
decoder after the decoder start token. Batches are padded to `batch_size` rows and to
lengths rounded up to a power of two (at least 16, at most max_length), so jit compiles
a handful of shapes per task, not one per request.

This module imports lm_eval at import time; only the harness entry point
(`research.evaluation.main`) and tests load it, so the library runs without lm_eval.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models import utils as model_utils

from research import models
from research import runs
from research.decoding import api as decoding_api
from research.decoding import loading
from research.decoding.config import DecodeConfig, DecodingError

log = logging.getLogger(__name__)

MIN_BUCKET = 16
DEFAULT_MAX_GEN_TOKS = 256  # the harness's `hf` default (HFLM.max_gen_toks)
HF_DEFAULT_MAX_LENGTH = 2048  # HFLM._DEFAULT_MAX_LENGTH


class HarnessError(ValueError):
  """A model argument or request the adapter cannot serve; the message is one line."""


def bucket(n: int, cap: int) -> int:
  """`n` rounded up to a power of two, at least MIN_BUCKET, at most `cap`."""
  size = MIN_BUCKET
  while size < n:
    size *= 2
  return max(min(size, cap), n)


# ------------------------------------------------------------------------------------------
# Text: the run's tokenizer or a Hugging Face one behind the same few calls.


@dataclasses.dataclass
class Text:
  """How strings become ids and back, with the ids the harness needs."""
  encode_fn: object  # (text, add_special_tokens: Optional[bool]) -> list[int]
  decode_fn: object  # ids -> text
  eot_id: int  # end of text: the stop token of generation
  prefix_id: int  # conditions an empty context, and starts each rolling window
  pad_id: int
  rolling_specials: Optional[bool]  # add_special_tokens when encoding a rolling document


def run_text(tokenizer, family: str) -> Text:
  """The project's tokenizers (research/data/tokenizers.py, research/data/arithmetic.py).

  A decoder was trained on targets shifted right behind id 0 (seqio's BOS,
  research/data/converters.py: shift_right), so a context is read as [0] + its ids and an
  empty context is [0]. An encoder-decoder's encoder reads the context as it is.
  """
  bos = [0] if family == 'decoder' else []

  def encode(text, add_special_tokens=None):
    ids = [int(i) for i in tokenizer.encode(text)]
    return ids if add_special_tokens is False else bos + ids

  return Text(encode, lambda ids: tokenizer.decode(ids), eot_id=int(tokenizer.eos_id),
              prefix_id=0, pad_id=int(tokenizer.pad_id), rolling_specials=False)


def hf_text(tokenizer) -> Text:
  """A Hugging Face tokenizer used as the harness's `hf` model uses it (HFLM.tok_encode,
  HFLM.prefix_token_id: BOS, else EOS)."""
  if tokenizer.eos_token_id is None:
    raise HarnessError(f'the tokenizer {tokenizer.name_or_path!r} has no eos token')

  def encode(text, add_special_tokens=None):
    kwargs = {} if add_special_tokens is None else {'add_special_tokens': add_special_tokens}
    return list(tokenizer.encode(text, **kwargs))

  prefix = tokenizer.bos_token_id
  prefix = tokenizer.eos_token_id if prefix is None else prefix
  pad = tokenizer.pad_token_id
  return Text(encode, lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
              eot_id=tokenizer.eos_token_id, prefix_id=prefix,
              pad_id=tokenizer.eos_token_id if pad is None else pad, rolling_specials=None)


# ------------------------------------------------------------------------------------------
# Jitted scoring: per-token log-probabilities and greedy hits of a padded batch.


@functools.cache
def _scorer(config: models.TransformerConfig, prefix_lm: bool):
  module = models.build(config)

  def token_scores(logits, targets):
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    picked = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    return picked, jnp.argmax(logits, axis=-1) == targets

  if config.family == 'decoder':
    def score(params, tokens, targets, segment_ids, positions, prefix):
      logits = module.apply({'params': params}, decoder_input_tokens=tokens,
                            decoder_segment_ids=segment_ids, decoder_positions=positions,
                            decoder_causal_attention=prefix if prefix_lm else None)
      return token_scores(logits, targets)
  else:
    def score(params, encoder_tokens, encoder_segment_ids, tokens, targets, segment_ids):
      positions = lambda s: jnp.broadcast_to(  # noqa: E731
          jnp.arange(s.shape[1], dtype=jnp.int32), s.shape)
      encoded, info = module.apply({'params': params}, encoder_tokens, encoder_segment_ids,
                                   positions(encoder_tokens), method='encode')
      logits = module.apply({'params': params}, encoded, info, tokens, segment_ids,
                            positions(tokens), method='decode')
      return token_scores(logits, targets)
  return jax.jit(score)


# ------------------------------------------------------------------------------------------
# Loading


def _load_run(run_dir: str, step):
  if not os.path.isdir(run_dir):
    raise HarnessError(f'run_dir {run_dir!r} is not a directory')
  if not os.path.isfile(os.path.join(run_dir, runs.CONFIG_GIN)):
    raise HarnessError(f'run_dir {run_dir!r} has no {runs.CONFIG_GIN}: not a run directory')
  try:
    text = loading.load_run_text(run_dir)
    config, params, _ = loading.load_run(run_dir, None if step is None else int(step))
  except DecodingError as e:
    raise HarnessError(f'run_dir {run_dir!r}: {e}') from e
  return config, params, run_text(text.tokenizer, config.family), text.prefix_lm


def _load_hf(hf_model: str, tokenizer: Optional[str]):
  for name, path in (('hf_model', hf_model), ('tokenizer', tokenizer or hf_model)):
    if not os.path.isdir(path):
      raise HarnessError(f'{name} {path!r} is not a directory (weights are read from '
                         'local disk only)')
  import transformers  # pylint: disable=g-import-not-at-top
  try:
    hf_config = transformers.AutoConfig.from_pretrained(hf_model, local_files_only=True)
    auto = (transformers.AutoModelForSeq2SeqLM if hf_config.is_encoder_decoder
            else transformers.AutoModelForCausalLM)
    model = auto.from_pretrained(hf_model, local_files_only=True)
    tok = transformers.AutoTokenizer.from_pretrained(tokenizer or hf_model,
                                                     local_files_only=True)
  except (OSError, ValueError) as e:
    raise HarnessError(f'hf_model {hf_model!r} cannot be loaded: '
                       f'{str(e).splitlines()[0]}') from e
  try:
    config, params = models.from_hf(model)
  except ValueError as e:
    raise HarnessError(f'hf_model {hf_model!r}: {str(e).splitlines()[0]}') from e
  start = getattr(hf_config, 'decoder_start_token_id', None)
  # The context the harness's hf model fills: the config's n_positions /
  # max_position_embeddings / n_ctx, else the tokenizer's model_max_length, else 2048
  # (lm_eval.models.utils.resolve_max_length). T5's relative positions have no table, so
  # its context is whatever that gives.
  context = model_utils.resolve_max_length(hf_config, tok, default=HF_DEFAULT_MAX_LENGTH)
  if context > config.max_length and config.position != 'learned':  # no table to outgrow
    config = dataclasses.replace(config, max_length=context)
  return config, params, hf_text(tok), start, min(context, config.max_length)


def _as_bool(value) -> bool:
  if isinstance(value, str):
    if value.lower() not in ('true', 'false', '1', '0'):
      raise HarnessError(f'expected true or false, got {value!r}')
    return value.lower() in ('true', '1')
  return bool(value)


# ------------------------------------------------------------------------------------------
# The model type


@register_model('research')
class ResearchLM(TemplateLM):
  """A project run, or converted Hugging Face weights, as an lm-eval model.

  model_args: run_dir=DIR [step=N] | hf_model=DIR [tokenizer=DIR]; batch_size (rows per
  jitted call, default 8), max_length (default the model's), max_gen_toks (default 256),
  prefix_lm (default the run's), seed (for sampled generation).
  """

  def __init__(self, run_dir: Optional[str] = None, hf_model: Optional[str] = None,
               tokenizer: Optional[str] = None, step=None, batch_size=8,
               max_length=None, max_gen_toks=DEFAULT_MAX_GEN_TOKS, prefix_lm=None,
               seed=0, **unused):
    super().__init__()
    del unused  # device, max_batch_size, ...: the harness passes them to every model
    if (run_dir is None) == (hf_model is None):
      raise HarnessError('give exactly one of model_args run_dir=... or hf_model=...')
    start = 0
    if run_dir is not None:
      config, params, self.text, run_prefix = _load_run(str(run_dir), step)
      context = config.max_length
    else:
      config, params, self.text, hf_start, context = _load_hf(str(hf_model), tokenizer)
      run_prefix = False
      start = self.text.pad_id if hf_start is None else int(hf_start)
    if config.family not in ('decoder', 'encoder_decoder'):
      raise HarnessError(f'family={config.family!r} cannot be scored left to right: the '
                         "harness needs a 'decoder' or 'encoder_decoder' model")
    self.config, self.params = config, jax.tree.map(jnp.asarray, params)
    self.backend = 'causal' if config.family == 'decoder' else 'seq2seq'
    self.prefix_lm = run_prefix if prefix_lm is None else _as_bool(prefix_lm)
    self.decoder_start_id = start
    self._batch_size = self._positive('batch_size', 8 if batch_size == 'auto' else batch_size)
    self._max_length = self._positive('max_length', max_length or context)
    if self._max_length > config.max_length:
      raise HarnessError(f'max_length={self._max_length} exceeds the model context '
                         f'{config.max_length}')
    self._max_gen_toks = self._positive('max_gen_toks', max_gen_toks)
    self._seed = int(seed)
    self._truncation_logged = False

  @staticmethod
  def _positive(name, value) -> int:
    try:
      number = int(value)
    except (TypeError, ValueError):
      number = 0
    if number <= 0:
      raise HarnessError(f'model_args {name}={value!r} must be a positive integer')
    return number

  # ---- what TemplateLM needs
  @property
  def eot_token_id(self) -> int:
    return self.text.eot_id

  @property
  def prefix_token_id(self) -> int:
    return self.text.prefix_id

  @property
  def max_length(self) -> int:
    return self._max_length

  @property
  def max_gen_toks(self) -> int:
    return self._max_gen_toks

  @property
  def batch_size(self) -> int:
    return self._batch_size

  def tok_encode(self, string: str, add_special_tokens=None, **kwargs) -> list[int]:
    del kwargs
    return self.text.encode_fn(string, add_special_tokens)

  def tok_decode(self, ids) -> str:
    return self.text.decode_fn(list(ids))

  def _note_truncation(self, what: str):
    if not self._truncation_logged:
      log.warning('%s is longer than the model context max_length=%d: truncated from the '
                  'left, as the harness\'s hf model does (said once)', what,
                  self.max_length)
      self._truncation_logged = True

  # ---- loglikelihood
  def loglikelihood(self, requests, disable_tqdm: bool = False):
    for request in requests:
      context, continuation = request.args
      if context:
        empty = not self._encode_pair(context, continuation)[1]
      else:
        empty = not self.tok_encode(continuation, add_special_tokens=False)
      if empty:
        raise HarnessError(f'task {request.task_name!r} doc {request.doc_id}: the target '
                           f'{continuation!r} is empty after tokenization: nothing to score')
    return super().loglikelihood(requests, disable_tqdm=disable_tqdm)

  def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
    del disable_tqdm, kwargs
    results = []
    for start in range(0, len(requests), self.batch_size):
      chunk = requests[start:start + self.batch_size]
      score = self._score_decoder if self.backend == 'causal' else self._score_seq2seq
      results.extend(score([(c, t) for _, c, t in chunk]))
    for (key, _, _), answer in zip(requests, results):
      if key is not None:
        self.cache_hook.add_partial('loglikelihood', key, answer)
    return results

  def _rows(self, n: int) -> int:
    return max(self.batch_size, n)

  def _score_decoder(self, pairs):
    rows, cap = [], self.max_length
    for context, continuation in pairs:
      if not continuation:
        raise HarnessError('a request has an empty continuation: nothing to score')
      if len(continuation) > cap:
        raise HarnessError(f'a continuation of {len(continuation)} tokens is longer than '
                           f'the model context max_length={cap}')
      whole = context + continuation
      if len(whole) > cap + 1:
        self._note_truncation(f'a request of {len(whole) - 1} tokens')
      whole = whole[-(cap + 1):]
      rows.append((whole[:-1], whole[1:], len(continuation)))
    width = bucket(max(len(r[0]) for r in rows), cap)
    shape = (self._rows(len(rows)), width)
    tokens, targets = np.zeros(shape, np.int32), np.zeros(shape, np.int32)
    segments, prefix = np.zeros(shape, np.int32), np.zeros(shape, np.int32)
    segments[:, 0] = 1  # padding rows hold one token, so no row attends to nothing
    for i, (inp, tgt, n_cont) in enumerate(rows):
      tokens[i, :len(inp)], targets[i, :len(tgt)] = inp, tgt
      segments[i, :len(inp)] = 1
      prefix[i, :len(inp) - n_cont + 1] = 1  # the context, read bidirectionally (prefix LM)
    positions = np.broadcast_to(np.arange(width, dtype=np.int32), shape)
    logp, greedy = _scorer(self.config, self.prefix_lm)(
        self.params, tokens, targets, segments, positions, prefix)
    logp, greedy = np.asarray(logp, np.float64), np.asarray(greedy)
    out = []
    for i, (inp, _, n_cont) in enumerate(rows):
      cols = slice(len(inp) - n_cont, len(inp))
      out.append((float(logp[i, cols].sum()), bool(greedy[i, cols].all())))
    return out

  def _score_seq2seq(self, pairs):
    rows, cap = [], self.max_length
    for context, continuation in pairs:
      if not continuation:
        raise HarnessError('a request has an empty continuation: nothing to score')
      if len(context) > cap or len(continuation) > cap:
        self._note_truncation(f'a request of {len(context)} + {len(continuation)} tokens')
      continuation = continuation[-cap:]
      rows.append((context[-cap:], [self.decoder_start_id] + continuation[:-1],
                   continuation))
    n = self._rows(len(rows))
    enc_w = bucket(max(len(r[0]) for r in rows), cap)
    dec_w = bucket(max(len(r[1]) for r in rows), cap)
    enc, enc_seg = np.zeros((n, enc_w), np.int32), np.zeros((n, enc_w), np.int32)
    dec, dec_seg = np.zeros((n, dec_w), np.int32), np.zeros((n, dec_w), np.int32)
    targets = np.zeros((n, dec_w), np.int32)
    enc_seg[:, 0] = dec_seg[:, 0] = 1
    for i, (e, d, t) in enumerate(rows):
      enc[i, :len(e)], enc_seg[i, :len(e)] = e, 1
      dec[i, :len(d)], dec_seg[i, :len(d)], targets[i, :len(t)] = d, 1, t
    logp, greedy = _scorer(self.config, False)(self.params, enc, enc_seg, dec, targets,
                                               dec_seg)
    logp, greedy = np.asarray(logp, np.float64), np.asarray(greedy)
    return [(float(logp[i, :len(t)].sum()), bool(greedy[i, :len(t)].all()))
            for i, (_, _, t) in enumerate(rows)]

  # ---- loglikelihood_rolling
  def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
    del disable_tqdm
    windows, owners = [], []
    for i, request in enumerate(requests):
      (string,) = request.args
      ids = self.tok_encode(string, add_special_tokens=self.text.rolling_specials)
      if not ids:
        raise HarnessError(f'request {i} of task {request.task_name!r} (doc '
                           f'{request.doc_id}) is an empty document: nothing to score')
      for context, continuation in map(lm_utils.make_disjoint_window,
                                       lm_utils.get_rolling_token_windows(
                                           token_list=ids, prefix_token=self.prefix_token_id,
                                           max_seq_len=self.max_length, context_len=1)):
        windows.append((None, context, continuation))
        owners.append(i)
    scores = self._loglikelihood_tokens(windows)
    totals = [0.0] * len(requests)
    for i, (logp, _) in zip(owners, scores):
      totals[i] += logp
    for request, total in zip(requests, totals):
      self.cache_hook.add_partial('loglikelihood_rolling', request.args, total)
    return totals

  # ---- generate_until
  def _decode_config(self, kwargs: dict, max_gen_toks: int) -> DecodeConfig:
    sample = bool(kwargs.pop('do_sample', False)) and kwargs.get('temperature', 0) > 0
    fields = dict(max_new_tokens=max_gen_toks, eos_id=self.eot_token_id,
                  pad_id=self.text.pad_id, decoder_start_id=self.decoder_start_id,
                  prefix_lm=self.prefix_lm and self.backend == 'causal')
    if sample:
      fields.update(strategy='sample', temperature=float(kwargs['temperature']),
                    top_k=kwargs.get('top_k'), top_p=kwargs.get('top_p'))
    try:
      return DecodeConfig(**fields)
    except DecodingError as e:
      raise HarnessError(str(e)) from e

  def generate_until(self, requests, disable_tqdm: bool = False):
    del disable_tqdm
    results = [None] * len(requests)
    groups = {}
    for i, request in enumerate(requests):
      context, gen_kwargs = request.args
      groups.setdefault(repr(sorted(gen_kwargs.items())), []).append((i, context, gen_kwargs))
    rng = jax.random.PRNGKey(self._seed)
    for members in groups.values():
      kwargs = model_utils.normalize_gen_kwargs(members[0][2], self.max_gen_toks)
      until = model_utils.handle_stop_sequences(kwargs.pop('until', None), eos=None)
      max_gen_toks = int(kwargs.pop('max_gen_toks'))
      limit = self.max_length - (max_gen_toks if self.backend == 'causal' else 0)
      if limit <= 0:
        raise HarnessError(f'max_gen_toks={max_gen_toks} leaves no room for a prompt in '
                           f'the model context max_length={self.max_length}')
      config = self._decode_config(dict(kwargs), max_gen_toks)
      for start in range(0, len(members), self.batch_size):
        chunk = members[start:start + self.batch_size]
        prompts = []
        for _, context, _ in chunk:
          ids = self.tok_encode(context)
          if not ids:
            ids = [self.prefix_token_id]
          if len(ids) > limit:
            self._note_truncation(f'a prompt of {len(ids)} tokens (+ {max_gen_toks} to '
                                  'generate)')
          prompts.append(ids[-limit:])
        width = bucket(max(len(p) for p in prompts), limit)
        padded = prompts + [prompts[0]] * (self._rows(len(prompts)) - len(prompts))
        batch = decoding_api.pad_prompts(padded, config.pad_id, width=width)
        rng, key = jax.random.split(rng)
        try:
          out = decoding_api.generate(self.config, self.params, batch, config, rng=key)
        except DecodingError as e:
          raise HarnessError(str(e)) from e
        tokens, lengths = np.asarray(out.best), np.asarray(out.lengths[:, 0])
        for row, (i, context, gen_kwargs) in enumerate(chunk):
          ids = [int(t) for t in tokens[row, :int(lengths[row])]]
          if ids and ids[-1] == self.eot_token_id:
            ids = ids[:-1]
          text = model_utils.postprocess_generated_text(self.tok_decode(ids), until, None)
          results[i] = text
          self.cache_hook.add_partial('generate_until', (context, gen_kwargs), text)
    return results
