"""Bad input fails before any work with one clear line."""
import re

import jax
import pytest

from research import decoding
from research.decoding import DecodeConfig, DecodingError
from tests.decoding import helpers


@pytest.fixture(scope='module')
def model():
  return helpers.tiny_model(num_layers=1, vocab_size=16, max_length=8)


def _fails(match, fn):
  """The first line says it all (gin may append a line naming the configurable)."""
  with pytest.raises(DecodingError) as info:
    fn()
  assert re.search(match, str(info.value).splitlines()[0]), str(info.value)


@pytest.mark.parametrize('fields,match', [
    (dict(top_k=0), 'top_k must be a positive integer'),
    (dict(top_k=-3), 'top_k must be a positive integer'),
    (dict(top_p=0.0), r'top_p must be in \(0, 1\]'),
    (dict(top_p=1.5), r'top_p must be in \(0, 1\]'),
    (dict(top_p=-0.1), r'top_p must be in \(0, 1\]'),
    (dict(temperature=0.0), 'temperature must be > 0'),
    (dict(beam_width=0), 'beam_width must be positive'),
    (dict(max_new_tokens=0), 'max_new_tokens must be positive'),
    (dict(repetition_penalty=0.0), 'repetition_penalty must be > 0'),
    (dict(no_repeat_ngram_size=-1), 'no_repeat_ngram_size must be >= 0'),
    (dict(strategy='nucleus'), "strategy='nucleus' is not one of"),
    (dict(strategy='exhaustive', repetition_penalty=1.2), 'exhaustive oracle'),
])
def test_bad_decode_config(fields, match):
  _fails(match, lambda: DecodeConfig(**fields))


@pytest.mark.parametrize('prompts,fields,match', [
    ([[1, 2, 3, 4, 5, 6, 7, 8, 9]], {}, 'longer than the model context max_length=8'),
    ([[1, 2, 3, 4, 5]], dict(max_new_tokens=4), r'exceeds the model context'),
    ([[1, 2], []], {}, 'prompt 1 is empty'),
    ([], {}, 'no prompts given'),
    ([[1, 2]], dict(strategy='beam', beam_width=17), 'larger than the vocabulary'),
    ([[1, 2]], dict(top_k=17), 'larger than the vocabulary'),
    ([[1, 99]], {}, r'token ids must lie in \[0, 16\)'),
    (['hello'], {}, 'not text'),
    ([[1, 2]], dict(strategy='sample'), 'needs an explicit PRNG key'),
    ([[1, 2]], dict(eos_id=16), r'eos_id=16 is outside the vocabulary'),
    ([[1, 2]], dict(strategy='exhaustive', max_new_tokens=6, beam_width=2), 'hypotheses'),
])
def test_bad_prompts_and_model_mismatch(model, prompts, fields, match):
  config, params = model
  fields = dict(dict(max_new_tokens=2), **fields)
  _fails(match, lambda: decoding.generate(config, params, prompts, DecodeConfig(**fields)))


def test_encoder_only_and_prefix_flag_misuse():
  config, params = helpers.tiny_model(family='encoder', num_layers=1)
  _fails("cannot generate with family='encoder'",
         lambda: decoding.generate(config, params, [[1]], DecodeConfig()))
  config, params = helpers.tiny_model(family='encoder_decoder', num_layers=1)
  _fails('prefix_lm applies to', lambda: decoding.generate(
      config, params, [[1]], DecodeConfig(prefix_lm=True), rng=jax.random.PRNGKey(0)))
