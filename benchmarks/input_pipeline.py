"""Input pipeline throughput per objective on the embedded corpus (python_stdlib, bytes).

  python benchmarks/input_pipeline.py [--batches=200] [--batch_size=16] [--length=512]

Measures batches made by the producer itself (prefetch=0, one thread), so the number is what
one host core sustains, not a queue drain. Reports non-padding tokens/s and compares with
what a CPU trainer of a ~10M-parameter model consumes (TRAINER_TOKENS_PER_S; the target is
at least 10x that).
"""
import time

from absl import flags

from research import cli
from research import objectives
from research.data import pipeline

_BATCHES = flags.DEFINE_integer('batches', 200, 'batches per objective')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 16, 'rows per batch')
_LENGTH = flags.DEFINE_integer('length', 512, 'sequence length')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data_dir')
_TRAINER = flags.DEFINE_float(
    'trainer_tokens_per_s', 5000.0,
    'tokens/s a CPU trainer of a ~10M-parameter model consumes (the bar is 10x this)')

# (label, objective, family, converter, lengths as a function of L)
CASES = (
    ('causal_lm', objectives.CausalLM(), 'decoder', None, lambda n: {'targets': n}),
    ('prefix_lm', objectives.PrefixLM(), 'decoder', 'prefix_decoder',
     lambda n: {'targets': n}),
    ('span_corruption', objectives.SpanCorruption(), 'encoder_decoder', None,
     lambda n: dict(zip(('inputs', 'targets'), (
         n, objectives.span_corruption_lengths(n, 0.15, 3.0)[1])))),
    ('ul2', objectives.UL2(), 'decoder', 'prefix_decoder', lambda n: {'targets': n}),
    ('masked_lm', objectives.MaskedLM(), 'encoder', None, lambda n: {'inputs': n}),
    ('glm', objectives.GLM(), 'decoder', 'prefix_decoder', lambda n: {'targets': n}),
)


def main(_):
  from research.parallel import host
  host.tune_allocator()  # the allocator the trainer's process runs the pipeline with
  bar = 10 * _TRAINER.value
  pipelines = []
  for label, objective, family, converter, lengths in CASES:  # every one before timing any
    try:
      p = pipeline.make_pipeline(
          'python_stdlib', task_feature_lengths=lengths(_LENGTH.value),
          batch_size=_BATCH_SIZE.value, objective=objective, family=family,
          feature_converter=converter, data_dir=_DATA_DIR.value, prefetch=0)
      next(p)  # opens the dataset; not timed
    except (ValueError, OSError) as e:
      cli.fail('input_pipeline.py', f'{label}: {cli.first_line(e)}')
    pipelines.append((label, p))
  print(f'{"objective":>16} {"tokens/s":>12} {"non-pad":>8} {"x trainer":>10}')
  worst = None
  for label, p in pipelines:
    tokens = slots = 0
    start = time.perf_counter()
    for _ in range(_BATCHES.value):
      batch = next(p)
      for name, value in batch.items():
        if name.endswith('_segment_ids'):
          tokens += int((value > 0).sum())
          slots += value.size
    rate = tokens / (time.perf_counter() - start)
    worst = rate if worst is None else min(worst, rate)
    print(f'{label:>16} {rate:12,.0f} {tokens / slots:8.1%} {rate / _TRAINER.value:9.0f}x')
  verdict = 'PASS' if worst >= bar else 'FAIL'
  print(f'slowest objective {worst:,.0f} tokens/s vs bar {bar:,.0f} (10 x '
        f'{_TRAINER.value:,.0f} trainer tokens/s): {verdict}')


if __name__ == '__main__':
  cli.run(main, 'input_pipeline.py')
