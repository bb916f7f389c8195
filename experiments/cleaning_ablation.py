r"""The cleaning ablation (Lee et al. 2022, "Deduplicating Training Data Makes Language Models
Better", sec. 6 and fig. 5): train one tiny model on a corpus with a planted passage repeated
many times, and the same model on that corpus after `research.data.cleaning`; report the
held-out loss of each and how often each regurgitates the planted passage verbatim.

  python experiments/cleaning_ablation.py --workdir=/tmp/cleaning_ablation

Steps (each stage's output is reused when the script is rerun on the same --workdir):
1. corpus: `--files` files of the embedded corpus (python_stdlib, every k-th file);
   those whose path hashes into the validation bucket are the held-out set, the
   'validation' split of BOTH runs' datasets (the same sequences, so the two losses pair).
2. planting: `--passage_bytes` bytes of one training file, written as `--copies` extra
   files: half exact copies, half with a different first line (near duplicates).
3. raw run: `python -m research.train` with gin_configs/runs/tiny.gin on the raw corpus.
4. cleaned run: the corpus through `python -m research.data.cleaning` with
   gin_configs/data/cleaning_code.gin, then the same training run on every document it
   kept (its train and validation splits both train here; the held-out files evaluate).
5. regurgitation: for prompts cut from the planted passage every `--stride` bytes
   (`--prefix` bytes each), greedy decoding of `--suffix` bytes (research.decoding.generate);
   a prompt counts when the continuation equals the passage's next bytes exactly (Lee et al.
   2022 sec. 6: exact continuation of a training-set prefix under greedy decoding).
Writes results.json and prints a table.
"""
import json
import os
import shutil
import subprocess
import sys

from absl import flags

from research import cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'Where corpora, runs and results go.')
_FILES = flags.DEFINE_integer('files', 150, 'Files of the embedded corpus used.')
_COPIES = flags.DEFINE_integer('copies', 400, 'Planted copies of the passage.')
_PASSAGE = flags.DEFINE_integer('passage_bytes', 512, 'Length of the planted passage.')
_STEPS = flags.DEFINE_integer('train_steps', 1000, 'Training steps of each run (tiny.gin).')
_PREFIX = flags.DEFINE_integer('prefix', 32, 'Prompt length in bytes.')
_SUFFIX = flags.DEFINE_integer('suffix', 16, 'Continuation length in bytes.')
_STRIDE = flags.DEFINE_integer('stride', 4, 'Bytes between prompt starts in the passage.')
_SEEDS = flags.DEFINE_list('seeds', ['0'], 'Training seeds (trainer.train.seed): one raw and '
                           'one cleaned run each; a tiny model\'s held-out loss moves from '
                           'seed to seed by more than the standard error of the held-out set.')

PROG = 'cleaning_ablation.py'
HELDOUT_FRACTION = 0.1  # of the files, by path hash: about 15 of 150
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(*args):
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  subprocess.run([sys.executable, *args], check=True, env=env, cwd=ROOT)


def _build_corpus(workdir):
  """(raw corpus dir, held-out prepared dataset dir, the planted passage)."""
  from research.data import builders  # pylint: disable=g-import-not-at-top
  from research.data.cleaning import cleaner  # pylint: disable=g-import-not-at-top
  raw = os.path.join(workdir, 'raw')
  heldout_docs = os.path.join(workdir, 'heldout_documents')
  root, rel = builders.stdlib_files()
  rel = rel[::max(1, len(rel) // _FILES.value)][:_FILES.value]
  texts = {}
  for p in rel:
    try:
      texts[p] = builders.read_utf8(os.path.join(root, p))
    except ValueError:
      continue
  frac = HELDOUT_FRACTION
  heldout = sorted(p for p in texts if builders.validation_bucket(p) < frac)
  train = sorted(p for p in texts if p not in heldout)
  # The passage: the middle of the longest training file (code, not a licence header).
  source = max(train, key=lambda p: (len(texts[p]), p))
  middle = len(texts[source]) // 2
  passage = texts[source][middle:middle + _PASSAGE.value]
  for directory, names in ((raw, train), (heldout_docs, heldout)):
    for p in names:
      path = os.path.join(directory, p)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, 'w', encoding='utf-8') as f:
        f.write(texts[p])
  made = 0
  i = 0
  while made < _COPIES.value:  # names whose hash keeps them in the training split
    name = f'planted/copy_{i:05d}.py'
    i += 1
    if builders.validation_bucket(name) < frac:
      continue
    header = '' if made % 2 == 0 else f'# planted copy {made}\n'
    path = os.path.join(raw, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
      f.write(header + passage)
    made += 1
  info = {'train_files': len(train), 'heldout_files': len(heldout), 'source': source,
          'planted_copies': made}
  with open(os.path.join(workdir, 'corpus.json'), 'w') as f:
    json.dump(info, f, indent=1)
  with open(os.path.join(workdir, 'passage.txt.tmp'), 'w', encoding='utf-8') as f:
    f.write(passage)
  os.replace(os.path.join(workdir, 'passage.txt.tmp'), os.path.join(workdir, 'passage.txt'))
  return raw, heldout_docs, passage


def _files(directory):
  from research.data import builders  # pylint: disable=g-import-not-at-top
  root, rel = builders.list_text_files(directory)
  return [os.path.join(root, p) for p in rel]


def _prepare(workdir, name, train_dir, heldout_dir):
  """A prepared dataset: every file of `train_dir` as 'train', the held-out files as
  'validation', so that the trainer's evaluation of both runs reads the same sequences."""
  from research.data.cleaning import cleaner  # pylint: disable=g-import-not-at-top
  data_dir = os.path.join(workdir, 'datasets', name)
  path = os.path.join(data_dir, 'cleaned_corpus', '1.0.0')
  if not os.path.exists(os.path.join(path, 'dataset_info.json')):
    shutil.rmtree(data_dir, ignore_errors=True)
    cleaner.CleanedCorpus('/', {'train': _files(train_dir),
                                'validation': _files(heldout_dir)},
                          data_dir=data_dir).download_and_prepare()
  return 'prepared:' + path


def _train(workdir, name, dataset, seed):
  run_dir = os.path.join(workdir, 'runs', f'{name}_seed{seed}')
  from research import runs  # pylint: disable=g-import-not-at-top
  if runs.is_complete(run_dir):
    return run_dir
  _python('-m', 'research.train', '--gin_file=gin_configs/runs/tiny.gin',
          f'--workdir={run_dir}',
          f'--gin_bindings=TRAIN_STEPS = {_STEPS.value}',
          f'--gin_bindings=trainer.train.seed = {seed}',
          f"--gin_bindings=pipeline_source.dataset = '{dataset}'",
          '--gin_bindings=trainer.train.eval_batches = 16')
  return run_dir


def _regurgitation(run_dir, passage):
  """(exact-continuation rate, mean fraction of continuation bytes right, prompts)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from research import decoding  # pylint: disable=g-import-not-at-top
  from research.data import tokenizers  # pylint: disable=g-import-not-at-top
  from research.decoding import loading  # pylint: disable=g-import-not-at-top
  config, params, _ = loading.load_run(run_dir)
  tok = tokenizers.ByteTokenizer()
  ids = tok.encode(passage)
  p, s = _PREFIX.value, _SUFFIX.value
  starts = list(range(0, len(ids) - p - s + 1, _STRIDE.value))
  prompts = [ids[i:i + p] for i in starts]
  out = decoding.generate(config, params, prompts, decoding.DecodeConfig(max_new_tokens=s))
  got = np.asarray(out.best)[:, :s]
  want = np.asarray([ids[i + p:i + p + s] for i in starts])
  return float(np.mean((got == want).all(axis=1))), float(np.mean(got == want)), len(starts)


def main(argv):
  del argv
  cli.require(PROG, workdir=_WORKDIR.value)
  cli.require_positive(PROG, files=_FILES.value, copies=_COPIES.value,
                       passage_bytes=_PASSAGE.value, train_steps=_STEPS.value,
                       prefix=_PREFIX.value, suffix=_SUFFIX.value, stride=_STRIDE.value)
  if _PREFIX.value + _SUFFIX.value > _PASSAGE.value:
    cli.usage_error(PROG, f'--prefix + --suffix = {_PREFIX.value + _SUFFIX.value} exceeds '
                          f'--passage_bytes = {_PASSAGE.value}')
  workdir = os.path.abspath(_WORKDIR.value)
  os.makedirs(workdir, exist_ok=True)
  if os.path.exists(os.path.join(workdir, 'passage.txt')):  # written last by _build_corpus
    raw = os.path.join(workdir, 'raw')
    heldout = os.path.join(workdir, 'heldout_documents')
    with open(os.path.join(workdir, 'passage.txt'), encoding='utf-8') as f:
      passage = f.read()
  else:  # none, or a build that was cut short: start the corpus again
    for d in ('raw', 'heldout_documents', 'datasets'):
      shutil.rmtree(os.path.join(workdir, d), ignore_errors=True)
    raw, heldout, passage = _build_corpus(workdir)
  cleaned = os.path.join(workdir, 'cleaned')
  if not os.path.exists(cleaned):
    _python('-m', 'research.data.cleaning', f'--input_dir={raw}', f'--output_dir={cleaned}',
            '--gin_file=gin_configs/data/cleaning_code.gin')
  datasets = {'raw': _prepare(workdir, 'raw', raw, heldout),
              'cleaned': _prepare(workdir, 'cleaned', os.path.join(cleaned, 'documents'),
                                  heldout)}
  from research import heldout as heldout_lib  # pylint: disable=g-import-not-at-top
  results = {'runs': []}
  for seed in [int(x) for x in _SEEDS.value]:
    runs_ = {name: _train(workdir, name, d, seed) for name, d in datasets.items()}
    losses = {k: heldout_lib.read_final(v) for k, v in runs_.items()}
    row = {'seed': seed}
    for name, run_dir in runs_.items():
      mean, se = losses[name].mean_and_se()
      exact, per_byte, n = _regurgitation(run_dir, passage)
      row[name] = {'heldout_loss': mean, 'heldout_loss_se': se,
                   'heldout_sequences': len(losses[name]), 'regurgitation_exact': exact,
                   'regurgitation_bytes_right': per_byte, 'prompts': n}
    diff, diff_se = heldout_lib.paired_difference(losses['raw'], losses['cleaned'])
    row['raw_minus_cleaned_loss'] = {'mean': diff, 'se': diff_se}
    results['runs'].append(row)
  with open(os.path.join(cleaned, 'report.json')) as f:
    report = json.load(f)
  results['cleaning'] = {'removed_by': report['removed_by'], 'kept': report['kept'],
                         'input_documents': report['input_documents']}
  with open(os.path.join(workdir, 'corpus.json')) as f:
    results['corpus'] = json.load(f)
  results['settings'] = {'train_steps': _STEPS.value, 'prefix': _PREFIX.value,
                         'suffix': _SUFFIX.value, 'stride': _STRIDE.value,
                         'passage_bytes': _PASSAGE.value, 'copies': _COPIES.value,
                         'seeds': [int(x) for x in _SEEDS.value]}
  tmp = os.path.join(workdir, 'results.json.tmp')
  with open(tmp, 'w') as f:
    json.dump(results, f, indent=1, sort_keys=True)
  os.replace(tmp, os.path.join(workdir, 'results.json'))
  print(f'{"seed":>4s} {"corpus":8s} {"held-out loss (nats/byte)":>26s} '
        f'{"verbatim continuations":>23s} {"bytes right":>11s}')
  for row in results['runs']:
    for name in ('raw', 'cleaned'):
      r = row[name]
      print(f'{row["seed"]:4d} {name:8s} {r["heldout_loss"]:18.4f} +- {r["heldout_loss_se"]:.4f} '
            f'{r["regurgitation_exact"]:16.3f} of {r["prompts"]:3d} '
            f'{r["regurgitation_bytes_right"]:11.3f}')
    d = row['raw_minus_cleaned_loss']
    print(f'{row["seed"]:4d} raw - cleaned held-out loss: {d["mean"]:+.4f} +- {d["se"]:.4f} '
          f'(paired)')


if __name__ == '__main__':
  cli.run(main, PROG)
