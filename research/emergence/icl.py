r"""In-context learning and induction heads over training (Olsson et al. 2022, "In-context
Learning and Induction Heads"), for decoder runs whose checkpoints were all kept.

  python -m research.emergence.icl --run_dirs=/tmp/icl/2l,/tmp/icl/1l --out=/tmp/icl/report

At every checkpoint of every run it measures:
- per-position loss on held-out text: the mean loss of the token at position p of its
  sequence (positions restart in each packed segment), on the validation split's batches;
- the ICL score: loss late in the context minus loss early in it. Olsson et al. take the
  500th against the 50th token of 512; scaled to a context of T tokens that is position
  round(500 T / 512) - 1 against round(50 T / 512) - 1 (0-based; 124 against 11 at T = 128),
  each averaged over a window of 5 positions;
- on sequences of R random tokens repeated twice (printable bytes for a byte-level run): the
  mean loss of the first copy (which nothing in the context predicts) and of the second
  (which copying predicts);
- per head, the prefix-matching score: the attention that a token of the second copy gives
  the token after its earlier occurrence (the "prefix matching" of Olsson et al.'s
  definition), averaged over the second copy;
- per head, the copying score of the head's OV circuit read through the embeddings:
  sum(eig) / sum(|eig|) of W_E W_V W_O W_U over the ordinary tokens (Olsson et al., Elhage et
  al. 2021; layer norms left out, as theirs), 1 for a head that only copies.

It writes icl.csv (one row per run x checkpoint), heads.csv (one row per run x checkpoint x
head), a summary JSON with the acceptance numbers and the Olsson et al. figure (held-out
loss, ICL score and the best prefix-matching score against training tokens).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Optional, Sequence

import numpy as np

from research import runs
from research.data import tokenizers

# Printable ASCII bytes: the repeated sequences are text-like bytes the model has seen.
PRINTABLE = np.arange(32, 127)
WINDOW = 5  # positions averaged at each end of the ICL score


def _forward(config, params, tokens_bl, segment_ids=None, positions=None):
  """(log-probs [b, l, vocab], attention weights of each layer [layers][b, h, q, k])."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from research import models  # pylint: disable=g-import-not-at-top
  tokens = jnp.asarray(tokens_bl)
  if segment_ids is None:
    segment_ids = jnp.ones_like(tokens)
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
  logits, state = models.build(config).apply(
      {'params': params}, decoder_input_tokens=tokens,
      decoder_segment_ids=jnp.asarray(segment_ids), decoder_positions=jnp.asarray(positions),
      mutable=['intermediates'])
  layers = state['intermediates']['decoder']
  names = sorted((n for n in layers if n.startswith('layers_')), key=lambda n: int(n[7:]))
  probs = [np.asarray(layers[n]['attn']['attention_probs'][0]) for n in names]
  return np.asarray(jax.nn.log_softmax(logits.astype(jnp.float32), -1)), probs


def loss_by_position(config, params, batches: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
  """(mean loss [T], token count [T]) by position within the segment, over held-out
  batches (the pipeline's decoder features)."""
  length = batches[0]['decoder_input_tokens'].shape[1]
  total, count = np.zeros(length), np.zeros(length)
  for batch in batches:
    logp, _ = _forward(config, params, batch['decoder_input_tokens'],
                       batch['decoder_segment_ids'], batch['decoder_positions'])
    targets = batch['decoder_target_tokens']
    nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    weights = batch['decoder_loss_weights'] > 0
    pos = batch['decoder_positions'][weights]
    np.add.at(total, pos, nll[weights])
    np.add.at(count, pos, 1)
  with np.errstate(invalid='ignore'):
    return total / count, count


def icl_positions(context: int) -> tuple[int, int]:
  """(early, late) 0-based positions: Olsson et al.'s 50th and 500th of 512, scaled."""
  early = max(round(50 / 512 * context) - 1, WINDOW // 2)
  late = min(round(500 / 512 * context) - 1, context - 1 - WINDOW // 2)
  return early, late


def icl_score(loss_by_pos: np.ndarray) -> float:
  """Mean loss around the late position minus around the early one (negative: later tokens
  are easier, the context helps)."""
  early, late = icl_positions(len(loss_by_pos))
  half = WINDOW // 2
  window = lambda p: float(np.nanmean(loss_by_pos[p - half:p + half + 1]))
  return window(late) - window(early)


def token_pool(tokenizer) -> np.ndarray:
  """The ids repeated sequences draw from: printable ASCII for the byte tokenizer (text-like
  bytes the model has seen), every ordinary piece but unk for a subword tokenizer (Olsson
  et al.'s random tokens)."""
  if isinstance(tokenizer, tokenizers.ByteTokenizer):
    return tokenizer.encode_array(bytes(PRINTABLE.astype(np.uint8)).decode('ascii'))
  lo, hi = tokenizer.ordinary_range
  return np.arange(max(lo, tokenizers.UNK_ID + 1), hi, dtype=np.int32)


def repeated_sequences(n: int, half: int, seed: int, tokenizer) -> np.ndarray:
  """[n, 2 * half] token ids: `half` random ids of `token_pool`, then the same ids again."""
  first = np.random.default_rng(seed).choice(token_pool(tokenizer), size=(n, half))
  return np.concatenate([first, first], axis=1).astype(np.int32)


def induction_stats(config, params, tokens: np.ndarray) -> dict:
  """Loss on each copy of repeated sequences, and each head's prefix-matching score.

  tokens: [n, 2R]. Position t of the second copy (t >= R) holds the token of position t - R,
  whose successor sat at t - R + 1: an induction head attends there and copies it."""
  half = tokens.shape[1] // 2
  logp, probs = _forward(config, params, tokens)
  nll = -np.take_along_axis(logp[:, :-1], tokens[:, 1:, None], -1)[..., 0]  # predicts t+1
  # nll[:, t] is the loss of token t + 1. The first copy's tokens 1..R-1 follow nothing
  # repeated; the second copy's tokens R+1..2R-1 are predicted by the copy (token R, the
  # first of the second copy, is not: its predecessor ends the first copy).
  first = nll[:, :half - 1].mean()
  second = nll[:, half:].mean()
  queries = np.arange(half, 2 * half - 1)
  prefix = np.stack([p[:, :, queries, queries - half + 1].mean(axis=(0, 2)) for p in probs])
  return {'loss_first_copy': float(first), 'loss_second_copy': float(second),
          'prefix_matching': prefix}  # [layers, heads]


def copying_scores(config, params, token_ids: np.ndarray) -> np.ndarray:
  """[layers, heads]: sum(eig) / sum(|eig|) of W_E[token_ids] W_V^h W_O^h W_U[:, token_ids].

  The nonzero eigenvalues of that |V| x |V| matrix are those of the d x d matrix
  W_V^h W_O^h W_U[:, ids] W_E[ids] (cyclic), which is what is decomposed."""
  embed = np.asarray(params['token_embed']['embedding'], np.float64)[token_ids]  # [V, d]
  unembed = embed.T if config.tie_embeddings else np.asarray(
      params['head']['lm_head']['kernel'], np.float64)[:, token_ids]
  ue = unembed @ embed  # [d, d]
  scores = np.zeros((config.num_layers, config.num_heads))
  for layer in range(config.num_layers):
    attn = params['decoder'][f'layers_{layer}']['attn']
    value = np.asarray(attn['value']['kernel'], np.float64)  # [d, kv_heads, dh]
    out = np.asarray(attn['out']['kernel'], np.float64)      # [heads, dh, d]
    group = config.num_heads // config.kv_heads
    for h in range(config.num_heads):
      ov = value[:, h // group, :] @ out[h]  # [d, d]
      eig = np.linalg.eigvals(ov @ ue)
      scores[layer, h] = float(np.real(eig.sum()) / max(np.abs(eig).sum(), 1e-30))
  return scores


@dataclasses.dataclass
class Checkpoint:
  run: str
  step: int
  tokens: float
  eval_loss: float
  icl_score: float
  loss_first_copy: float
  loss_second_copy: float
  prefix_matching: np.ndarray   # [layers, heads]
  copying: np.ndarray           # [layers, heads]

  @property
  def second_over_first(self) -> float:
    return self.loss_second_copy / self.loss_first_copy


def measure_run(run_dir: str, batches: Sequence[dict], repeated: np.ndarray,
                token_ids: np.ndarray, log: Callable[[str], None] = lambda _: None
                ) -> list[Checkpoint]:
  """Every kept checkpoint of one decoder run, in step order."""
  config = runs.model_config(run_dir)
  if config.family != 'decoder':
    raise runs.RunDirError(f'{run_dir}: the ICL analysis reads decoder runs, got '
                           f'{config.family!r}')
  info = runs.read_run_info(run_dir)
  tokens_per_step = info['batch_size'] * next(iter(info['feature_lengths'].values()))
  steps = runs.checkpoint_steps(run_dir)
  if not steps:
    raise runs.RunDirError(f'{run_dir} has no checkpoints')
  out = []
  for step in steps:
    params, _ = runs.load_params(run_dir, step, config)
    loss_pos, count = loss_by_position(config, params, batches)
    stats = induction_stats(config, params, repeated)
    eval_loss = float(np.nansum(loss_pos * count) / count.sum())
    out.append(Checkpoint(
        run=os.path.basename(os.path.normpath(run_dir)), step=step,
        tokens=float(step * tokens_per_step), eval_loss=eval_loss,
        icl_score=icl_score(loss_pos), loss_first_copy=stats['loss_first_copy'],
        loss_second_copy=stats['loss_second_copy'],
        prefix_matching=stats['prefix_matching'],
        copying=copying_scores(config, params, token_ids)))
    c = out[-1]
    log(f'{c.run} step {step:>6d}: held-out {eval_loss:.3f}, ICL {c.icl_score:+.3f}, '
        f'repeated {c.loss_first_copy:.2f} -> {c.loss_second_copy:.2f} nats, best prefix '
        f'matching {c.prefix_matching.max():.2f}')
  return out


# Smallest changes, first checkpoint to last, that count as a rise: a tenth of all attention
# for the prefix-matching score, 0.05 nats for the ICL score.
MIN_RISE = {'prefix_matching': 0.1, 'icl_score': 0.05}


def rise_step(steps: Sequence[int], values: Sequence[float],
              min_change: float = 0.0) -> Optional[int]:
  """The first step at which `values` has gone half of the way from its first value to
  its final one (None for a series that moves by less than `min_change`)."""
  values = np.asarray(values, float)
  start, end = values[0], values[-1]
  if abs(end - start) <= max(min_change, 1e-12):
    return None
  progress = (values - start) / (end - start)
  return int(steps[int(np.argmax(progress >= 0.5))])


def summarize(results: dict[str, list[Checkpoint]]) -> dict:
  """Per run: the last checkpoint's numbers, the best head, and the steps at which the ICL
  score and the best prefix-matching score rise (with the interval between checkpoints)."""
  summary = {}
  for name, points in results.items():
    steps = [p.step for p in points]
    last = points[-1]
    layer, head = np.unravel_index(np.argmax(last.prefix_matching), last.prefix_matching.shape)
    summary[name] = {
        'final_step': last.step, 'eval_loss': last.eval_loss, 'icl_score': last.icl_score,
        'loss_first_copy': last.loss_first_copy, 'loss_second_copy': last.loss_second_copy,
        'second_over_first': last.second_over_first,
        'best_head': f'layer {layer} head {head}',
        'best_prefix_matching': float(last.prefix_matching[layer, head]),
        'best_head_copying': float(last.copying[layer, head]),
        'icl_rise_step': rise_step(steps, [p.icl_score for p in points],
                                   MIN_RISE['icl_score']),
        'induction_rise_step': rise_step(steps, [p.prefix_matching.max() for p in points],
                                         MIN_RISE['prefix_matching']),
        'checkpoint_interval': int(np.median(np.diff(steps))) if len(steps) > 1 else None,
    }
  return summary


def tables(results: dict[str, list[Checkpoint]]):
  """(icl DataFrame: run x checkpoint, heads DataFrame: run x checkpoint x head)."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  rows, head_rows = [], []
  for points in results.values():
    for p in points:
      rows.append({'run': p.run, 'step': p.step, 'tokens': p.tokens,
                   'eval_loss': p.eval_loss, 'icl_score': p.icl_score,
                   'loss_first_copy': p.loss_first_copy,
                   'loss_second_copy': p.loss_second_copy,
                   'best_prefix_matching': float(p.prefix_matching.max())})
      for (layer, head), score in np.ndenumerate(p.prefix_matching):
        head_rows.append({'run': p.run, 'step': p.step, 'layer': layer, 'head': head,
                          'prefix_matching': float(score),
                          'copying': float(p.copying[layer, head])})
  return pd.DataFrame(rows), pd.DataFrame(head_rows)


def plot(icl_df, path: str) -> None:
  """Olsson et al.'s figure: held-out loss, ICL score and the best head's prefix-matching
  score against training tokens, one line per run."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
  panels = (('eval_loss', 'held-out loss (nats/token)'),
            ('icl_score', 'ICL score (late - early loss)'),
            ('best_prefix_matching', 'best head: prefix matching'))
  for ax, (column, label) in zip(axes, panels):
    for run, group in icl_df[icl_df['tokens'] > 0].groupby('run', sort=False):
      ax.plot(group['tokens'], group[column], marker='o', ms=3, label=run)
    ax.set_xlabel('training tokens')
    ax.set_ylabel(label)
    ax.set_xscale('log')
    ax.grid(alpha=0.3)
  axes[0].legend()
  fig.tight_layout()
  tmp = path + '.tmp.png'
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  os.replace(tmp, path)


def report(run_dirs: Sequence[str], out: str, *, eval_batches: int = 32, repeats: int = 64,
           half: int = 32, log: Callable[[str], None] = print) -> dict:
  """Measures every run, writes icl.csv, heads.csv, icl_summary.json and icl.png under
  `out`; returns the summary."""
  from research.data import pipeline  # pylint: disable=g-import-not-at-top
  from research.decoding import loading  # pylint: disable=g-import-not-at-top
  configs = [runs.model_config(r) for r in run_dirs]  # RunDirError before any work
  context = min(c.max_length for c in configs)
  if 2 * half > context:
    raise ValueError(f'repeated sequences of 2 x {half} tokens exceed the context {context}')
  # The first run's tokenizer and length serve every run: runs compared in one figure
  # read the same held-out tokens.
  tokenizer = loading.load_run_text(run_dirs[0]).tokenizer
  info = runs.read_run_info(run_dirs[0])
  length = next(iter(info['feature_lengths'].values()))
  batches = pipeline.make_eval_batches(task_feature_lengths={'targets': length},
                                       batch_size=16, num_batches=eval_batches,
                                       tokenizer=tokenizer)
  repeated = repeated_sequences(repeats, half, 0, tokenizer)
  lo, hi = tokenizer.ordinary_range
  token_ids = np.arange(lo, min(hi, configs[0].vocab_size))
  results = {}
  for run_dir in run_dirs:
    points = measure_run(run_dir, batches, repeated, token_ids, log)
    results[points[0].run] = points
  os.makedirs(out, exist_ok=True)
  icl_df, heads_df = tables(results)
  for name, df in (('icl.csv', icl_df), ('heads.csv', heads_df)):
    runs.write_text_atomic(os.path.join(out, name), df.to_csv(index=False))
  summary = summarize(results)
  runs.write_json_atomic(os.path.join(out, 'icl_summary.json'), summary)
  plot(icl_df, os.path.join(out, 'icl.png'))
  return summary


def format_summary(summary: dict) -> str:
  lines = []
  for name, s in summary.items():
    lines.append(
        f'{name}: step {s["final_step"]}, held-out {s["eval_loss"]:.3f} nats/token, ICL score '
        f'{s["icl_score"]:+.3f}; repeated random tokens {s["loss_first_copy"]:.2f} -> '
        f'{s["loss_second_copy"]:.2f} nats ({100 * s["second_over_first"]:.0f}% of the first '
        f'copy); best head {s["best_head"]}: prefix matching {s["best_prefix_matching"]:.2f}, '
        f'copying {s["best_head_copying"]:+.2f}; rises: ICL at step {s["icl_rise_step"]}, '
        f'induction at step {s["induction_rise_step"]} (checkpoints every '
        f'{s["checkpoint_interval"]})')
  return '\n'.join(lines)


def main(argv=None) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from research import cli  # pylint: disable=g-import-not-at-top
  prog = 'python -m research.emergence.icl'
  run_dirs_flag = flags.DEFINE_list('run_dirs', None, 'Decoder run directories.')
  out_flag = flags.DEFINE_string('out', None, 'Output directory (created).')
  batches_flag = flags.DEFINE_integer('eval_batches', 32, 'Held-out batches of 16 rows.')
  repeats_flag = flags.DEFINE_integer('repeats', 64, 'Repeated random sequences.')
  half_flag = flags.DEFINE_integer('half', 32, 'Length of each copy of a repeated sequence.')

  def run(argv):
    del argv
    cli.require(prog, run_dirs=run_dirs_flag.value, out=out_flag.value)
    cli.require_positive(prog, **{'--eval_batches': batches_flag.value,
                                  '--repeats': repeats_flag.value, '--half': half_flag.value})
    for d in run_dirs_flag.value:
      if not os.path.isdir(d):
        cli.usage_error(prog, f'--run_dirs: {d!r} is not a directory')
    try:
      summary = report(run_dirs_flag.value, out_flag.value, eval_batches=batches_flag.value,
                       repeats=repeats_flag.value, half=half_flag.value)
    except (runs.RunDirError, runs.CheckpointError, ValueError) as e:
      cli.fail(prog, e)
    print(format_summary(summary))
    print(json.dumps({'out': out_flag.value}))

  cli.run(run, prog)


if __name__ == '__main__':
  main()
