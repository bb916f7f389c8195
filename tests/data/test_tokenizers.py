import numpy as np
import pytest

from research.data import tokenizers


def test_byte_layout():
  tok = tokenizers.ByteTokenizer()
  assert tok.vocab_size == 384 and (tok.pad_id, tok.eos_id, tok.unk_id) == (0, 1, 2)
  assert tok.encode('A') == [ord('A') + 3]
  assert [tok.mode_token(m) for m in ('[NLU]', '[NLG]', '[S2S]')] == [259, 260, 261]
  assert tok.mask_id == 262
  assert tok.sentinel(0) == 383 and tok.sentinel(1) == 382
  assert tok.num_sentinels >= 100 and tok.sentinel(tok.num_sentinels - 1) == 263
  with pytest.raises(ValueError, match='sentinel index'):
    tok.sentinel(tok.num_sentinels)
  with pytest.raises(ValueError, match='unknown mode token'):
    tok.mode_token('[XYZ]')


def test_byte_roundtrip_and_decode_rules():
  tok = tokenizers.ByteTokenizer()
  text = 'def f(x):\n    return "héllo ✓"\n'
  ids = tok.encode(text)
  assert tok.decode(ids) == text
  # Stops at eos, skips pad and non-text ids.
  assert tok.decode([0] + tok.encode('ab') + [tok.sentinel(0), 0] + tok.encode('c') + [1] +
                    tok.encode('zzz')) == 'abc'


def test_sentencepiece_train_load_roundtrip(tmp_path):
  corpus = ['def add(a, b):\n    return a + b\n', 'class Foo:\n    pass\n'] * 50 + [
      'import os\nprint(os.path.join("a", "b"))\n'] * 50
  path = tokenizers.train_sentencepiece(corpus, str(tmp_path / 'sp'), vocab_size=300)
  tok = tokenizers.get_tokenizer('sentencepiece', path)
  assert (tok.pad_id, tok.eos_id) == (0, 1)
  assert tok.vocab_size % 128 == 0 and tok.num_sentinels >= 100
  pieces = tok.ordinary_range[1]
  assert 280 <= pieces <= 300 and tok.mode_token('[NLU]') == pieces
  assert tok.mask_id == pieces + 3
  text = 'def add(a, b):\n    return a + b\n'
  ids = tok.encode(text)
  assert max(ids) < pieces and tok.decode(ids + [1, 5, 6]) == text
  assert tok.sentinel(0) == tok.vocab_size - 1


def test_bad_tokenizer_inputs(tmp_path):
  with pytest.raises(FileNotFoundError, match='SentencePiece model not found'):
    tokenizers.SentencePieceTokenizer(str(tmp_path / 'missing.model'))
  with pytest.raises(ValueError, match='unknown tokenizer'):
    tokenizers.get_tokenizer('wordpiece')
