"""Trains a SentencePiece tokenizer (T5 layout: pad 0, eos 1, unk 2) on a corpus.

  python experiments/train_tokenizer.py --dataset=python_stdlib --vocab_size=8000 \
      --output=/tmp/spm/stdlib_8k

writes /tmp/spm/stdlib_8k.model; use it with gin_configs/data/sentencepiece.gin.
"""
from absl import flags

from research import cli
from research.data import sources
from research.data import tokenizers

_DATASET = flags.DEFINE_string('dataset', 'python_stdlib',
                               "'python_stdlib', 'text_files:<dir or glob>' or a TFDS name")
_SPLIT = flags.DEFINE_string('split', 'train', 'split to train on')
_FEATURE = flags.DEFINE_string('feature_key', 'text', 'text feature of the dataset')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data_dir')
_VOCAB = flags.DEFINE_integer('vocab_size', 8000, 'pieces in the model (before sentinels)')
_MODEL_TYPE = flags.DEFINE_enum('model_type', 'unigram', ['unigram', 'bpe'], 'algorithm')
_MAX_DOCS = flags.DEFINE_integer('max_documents', None, 'train on at most this many')
_OUTPUT = flags.DEFINE_string('output', None, 'model prefix; writes <output>.model',
                              required=True)


PROG = 'train_tokenizer.py'


def main(argv):
  del argv  # cli.run refuses extra arguments
  try:
    source = sources.get_source(_DATASET.value, _SPLIT.value, data_dir=_DATA_DIR.value,
                                feature_key=_FEATURE.value)
  except ValueError as e:  # an unknown dataset or split
    cli.usage_error(PROG, e)
  docs = source.iterate(epoch=0, start=0, seed=0, shuffle=False)
  if _MAX_DOCS.value is not None:
    docs = (d for d, _ in zip(docs, range(_MAX_DOCS.value)))
  try:
    path = tokenizers.train_sentencepiece(docs, _OUTPUT.value, _VOCAB.value,
                                          model_type=_MODEL_TYPE.value)
  except RuntimeError as e:  # sentencepiece's trainer, e.g. a vocabulary too small
    cli.fail(PROG, f'sentencepiece: {e}')
  tok = tokenizers.SentencePieceTokenizer(path)
  print(f'wrote {path}: {tok.ordinary_range[1]} pieces, vocab_size {tok.vocab_size} with '
        f'{tok.num_sentinels} sentinels')


if __name__ == '__main__':
  cli.run(main, PROG)
