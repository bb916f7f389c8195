"""The training loop: set-up, train/eval steps, logging, checkpoints, guard, preemption.

`train(workdir)` is the gin-configurable entry point (research/train/main.py calls it). The
stages, in order: (1) mesh and rules, (2) model, optimizer and state shapes/shardings,
(3) restore-or-init, (4) the loop, (5) completion. Work that happens every so many steps
(log, eval, checkpoint) happens at a host "sync", the only place values leave the device.
"""
import copy
import dataclasses
import itertools
import json
import os
import signal
import sys
import time
from typing import Any, Callable, Mapping, Optional

from absl import logging
import gin
import jax
import numpy as np

from research import cli
from research import models
from research import parallel
from research import runs
from research.adapt import peft as peft_lib
from research.train import checkpoints as ckpt_lib
from research.train import evaluation
from research.train import guard as guard_lib
from research.train import metrics as metrics_lib
from research.train import optimizers
from research.train import schedules
from research.train import state as state_lib
from research.train import step as step_lib
from research.train import synthetic
from research.train import tasks

COMPLETION_MARKER = runs.COMPLETION_MARKER
# `flops` in metrics.jsonl is C = 6ND (Hoffmann et al.); every convention is also logged as
# flops_<name>. MFU counts model FLOPs the most completely (attention and logits included).
FLOPS_CONVENTION = '6N'
MFU_CONVENTION = 'chinchilla'


@dataclasses.dataclass
class HostState:
  """Host-side progress, saved in every checkpoint beside the TrainState."""
  data: Any = None                 # the batch source's get_state()
  batches_drawn: int = 0           # ordinal of the next batch the source yields
  skip: list = dataclasses.field(default_factory=list)  # ordinals the guard skips
  tokens: int = 0
  flops: dict = dataclasses.field(default_factory=dict)
  guard_events: int = 0
  guard_rollbacks: int = 0


class _Preemption:
  """Turns SIGTERM into a flag the loop checks after each step.

  On several processes SIGTERM may reach one host only, or the hosts at different steps:
  the flag is then OR-ed over the processes at each sync (`agreed`), which every process
  reaches at the same steps, so all save the same step and stop together."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: no handler, preemption unsupported
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def agreed(self) -> bool:
    """Whether any process was asked to stop (a collective on several processes)."""
    return parallel.any_process(self.requested)

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _run_info(model_config, feature_lengths, batch_size, train_steps, seed, mesh, rules,
              objective, actual_params: int) -> dict:
  counts = models.count_params(model_config)
  example = synthetic.make_batch(model_config.family, np.random.default_rng(0), 1,
                                 feature_lengths, model_config.vocab_size)
  per_batch = tasks.flops_per_batch(model_config, example)
  tokens_per_example = tasks.tokens_per_batch(model_config.family, example)
  versions = {'python': sys.version.split()[0], 'jax': jax.__version__,
              'numpy': np.__version__}
  for name in ('flax', 'optax', 'orbax.checkpoint', 'gin'):
    module = sys.modules.get(name)
    versions[name] = getattr(module, '__version__', None)
  return {
      'architecture': dataclasses.asdict(model_config),
      'family': model_config.family,
      'objective': objective,
      'n_params': counts['total'], 'n_params_embedding': counts['embedding'],
      'n_params_nonembed': counts['non_embedding'], 'n_params_actual': actual_params,
      # What the optimizer updates: everything, or the PEFT method's parameters.
      'n_params_trainable': (actual_params if model_config.peft_method == 'none'
                             else peft_lib.formula_count(model_config)),
      'flops_per_token': {k: v / tokens_per_example for k, v in per_batch.items()},
      'flops_per_example': per_batch,
      'feature_lengths': dict(feature_lengths), 'batch_size': batch_size,
      'train_steps': train_steps,
      'tokens': train_steps * batch_size * tokens_per_example,
      'seed': seed, 'mesh': dict(mesh.shape), 'rules': [list(r) for r in rules],
      'devices': [jax.devices()[0].device_kind, jax.device_count()],
      'processes': jax.process_count(), 'versions': versions,
  }


@gin.configurable(denylist=['workdir'])
def train(workdir: str,
          model_config: models.TransformerConfig = gin.REQUIRED,
          train_steps: int = gin.REQUIRED,
          batch_size: int = gin.REQUIRED,
          feature_lengths: Mapping[str, int] = gin.REQUIRED,
          batch_source: Callable[..., Any] = synthetic.synthetic_source,
          objective: str = 'causal_lm',
          seed: int = 0,
          log_every: int = 10,
          eval_every: int = 0,
          eval_batches: int = 2,
          final_eval_batches: Optional[int] = None,
          progress: bool = True,
          steps_per_call: int = 1) -> dict:
  """Trains (or resumes) the run in `workdir`; returns a summary of the final step.

  batch_source(family=, batch_size=, feature_lengths=, seed=, shard_index=, num_shards=,
  split=) must return an iterator of numpy batch dicts with get_state()/set_state(): this
  host's `batch_size` rows of a global batch that does not depend on num_shards, with a
  state that is the same on every host (research/train/sources.py); it
  may declare `may_have_prefix = False` (its decoder batches never have a prefix, so the
  all-zero `decoder_causal_attention` is dropped in every process). The 'eval' split is
  asked for with evaluation.EVAL_SEED, whatever `seed`: one held-out stream per data config.

  Evaluations (every `eval_every` steps and at the last step) read `eval_batches` batches of
  the held-out stream; the last one reads the first `final_eval_batches` (default
  `eval_batches`) and saves its per-sequence losses as runs.FINAL_EVAL_LOSSES. When the
  final evaluation reads more, the others read `eval_batches` batches spread evenly over
  those (held in memory after the first evaluation): every evaluation of the curve then
  estimates the loss the final one measures, instead of the loss of the stream's first files.

  steps_per_call > 1 trains up to that many steps in one jitted call (step.make_multi_step),
  for models so small that the host's work per call costs as much as a step. A call never
  runs past a step that logs, evaluates or checkpoints, so those happen at the same steps,
  and every step's metrics are kept. Batches of differing shapes or features (a batch-size
  ramp, a prefix in some batches only) are trained one call per step.
  """
  # A step count or batch of zero or less would train nothing and still mark the run done.
  cli.check_positive(**{'train_steps (TRAIN_STEPS)': train_steps,
                        'batch_size (BATCH_SIZE)': batch_size,
                        'final_eval_batches': final_eval_batches,
                        'trainer.train.steps_per_call': steps_per_call})
  if final_eval_batches is None:
    final_eval_batches = eval_batches
  # (1) Mesh and rules: a mesh that does not fit fails here, before any work.
  mesh = parallel.make_mesh(parallel.MeshConfig())
  rules = parallel.logical_axis_rules()
  parallel.check_batch_divisible(batch_size, mesh, rules)
  is_chief = jax.process_index() == 0
  family = model_config.family

  # (2) Model, optimizer, state shapes and shardings.
  module = models.build(model_config)
  tx, schedule = optimizers.make_optimizer(train_steps)
  if model_config.peft_method != 'none':
    # PEFT: the optimizer updates the method's parameters only; the base stays as loaded.
    tx = peft_lib.freeze_base(tx)
  guard_config = guard_lib.GuardConfig()
  step_config = step_lib.StepConfig()
  setup = state_lib.make_state_setup(module, family, tx, mesh, rules)
  train_fn = step_lib.compile_train_step(
      step_lib.make_train_step(module, family, tx, schedule, model_config.z_loss,
                               step_config, guard_config),
      setup.shardings, mesh, rules, step_config.constrain_activations)
  # Compiled only when first called: with steps_per_call = 1 it never is.
  multi_fn = step_lib.compile_multi_step(
      step_lib.make_multi_step(step_lib.make_train_step(
          module, family, tx, schedule, model_config.z_loss, step_config, guard_config),
          steps_per_call),
      setup.shardings, mesh, rules, step_config.constrain_activations)
  eval_fn = step_lib.compile_eval_step(evaluation.make_eval_step(module, family),
                                       setup.shardings.params, mesh, rules,
                                       step_config.constrain_activations)
  batch_sh, stacked_sh = {}, {}

  shard = parallel.host_shard()
  def make_source(split):
    return batch_source(family=family, batch_size=shard.local_batch_size(batch_size),
                        feature_lengths=feature_lengths,
                        seed=seed if split == 'train' else evaluation.EVAL_SEED,
                        shard_index=shard.index, num_shards=shard.count, split=split)
  source = make_source('train')
  multiprocess = jax.process_count() > 1
  # A source that declares it never has a prefix (the same on every process) lets every
  # process drop the all-zero feature; otherwise it is dropped batch by batch, single-process.
  never_prefix = getattr(source, 'may_have_prefix', True) is False

  # (3) Restore the latest checkpoint, or initialize and save step 0 as a rollback point.
  os.makedirs(workdir, exist_ok=True)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, runs.CHECKPOINTS),
                                       ckpt_lib.CheckpointConfig())
  every = checkpointer.config.every_steps
  latest = checkpointer.latest_step()

  def host_item(at_step: int) -> dict:
    """The checkpoint's `host` item. Orbax writes process 0's only, so on several
    processes it must be every process's: a source whose state differs stops the run."""
    # Field by field, not dataclasses.asdict: that deep-copies the data state, which with
    # make_pipeline.shuffle_rows holds thousands of rows (seconds per checkpoint).
    saved = {f.name: copy.copy(getattr(host, f.name)) for f in dataclasses.fields(host)}
    if multiprocess:
      differ = parallel.first_differing_process(json.dumps(saved, sort_keys=True))
      if differ is not None:
        raise ValueError(f'at step {at_step} the data state of process {differ} differs '
                         f"from process 0's: the batch source is not host-invariant "
                         f'(research/train/sources.py)')
    return saved

  if latest is None:
    state = setup.init(seed)
    host = HostState(data=source.get_state())
    checkpointer.save(0, state, host_item(0))
  else:
    state, saved = checkpointer.restore(latest, setup.abstract)
    host = HostState(**saved)
    source.set_state(host.data)
  step = int(jax.device_get(state.step))

  actual_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(setup.abstract.params))
  if is_chief:
    runs.write_json_atomic(
        os.path.join(workdir, runs.RUN_INFO),
        _run_info(model_config, feature_lengths, batch_size, train_steps, seed, mesh,
                  rules, objective, actual_params))
    # Every configurable has been called by now, so the operative config is complete.
    runs.write_text_atomic(os.path.join(workdir, runs.CONFIG_GIN),
                           gin.operative_config_str())
  writer = metrics_lib.MetricsWriter(workdir, resume_step=step, enabled=is_chief)
  line = metrics_lib.ProgressLine(train_steps) if (progress and is_chief) else None
  peak = metrics_lib.peak_flops_per_device()
  flops_cache: dict = {}

  def draw():
    """Next batch ordinal and batch, past any the guard has marked to skip."""
    skip = set(host.skip)
    while True:
      index, batch = host.batches_drawn, next(source)
      host.batches_drawn += 1
      if index not in skip:
        return index, batch

  held_out = []   # the final evaluation's batches, when intermediate ones sample them

  def eval_batches_for(final: bool):
    """(iterator of held-out batches, how many to read)."""
    if final_eval_batches <= eval_batches:
      return make_source('eval'), final_eval_batches if final else eval_batches
    if not held_out:
      source = make_source('eval')
      held_out.extend(itertools.islice(source, final_eval_batches))
      if hasattr(source, 'close'):
        source.close()
    if final:
      return iter(held_out), len(held_out)
    picks = np.linspace(0, len(held_out) - 1, min(eval_batches, len(held_out)))
    return iter([held_out[i] for i in np.unique(np.round(picks).astype(int))]), eval_batches

  def run_eval(final: bool) -> dict:
    start = time.perf_counter()
    eval_source, count = eval_batches_for(final)
    rows, correct = evaluation.evaluate(
        lambda batch: eval_fn(state.params, parallel.host_batch_to_global(
            batch, _shardings(batch))),
        eval_source, count)
    if hasattr(eval_source, 'close'):
      eval_source.close()
    if final and is_chief:
      rows.save(os.path.join(workdir, runs.FINAL_EVAL_LOSSES))
    result = evaluation.metrics(rows, correct)
    logging.info('%s eval at step %d: loss %.4f +- %.4f (SE) on %d sequences, %.1f s',
                 'final' if final else 'intermediate', step, result['eval_loss'],
                 result['eval_loss_se'], result['eval_sequences'],
                 time.perf_counter() - start)
    return result

  def _shardings(batch):
    if set(batch) != set(batch_sh):
      batch_sh.clear()
      batch_sh.update(parallel.batch_shardings(batch, mesh, rules))
    return batch_sh

  def _stacked_shardings(batches):
    if set(batches) != set(stacked_sh):
      stacked_sh.clear()
      spec = jax.sharding.PartitionSpec(None, *parallel.batch_spec(rules))
      stacked_sh.update({k: jax.sharding.NamedSharding(mesh, spec) for k in batches})
    return stacked_sh

  def group_size() -> int:
    """Steps the next call trains: up to steps_per_call, ending at the next step that
    logs, evaluates, checkpoints or ends the run."""
    after = lambda every_n: (step // every_n + 1) * every_n
    bounds = [train_steps, after(log_every), after(every)]
    if eval_every:
      bounds.append(after(eval_every))
    return min(steps_per_call, min(bounds) - step)

  def account(batch, ordinals, device_metrics, index):
    """Counts one trained step's tokens and FLOPs and queues its metrics for the next sync
    (`index`: the step's row in a multi-step call's metrics, None for a single step)."""
    shape_key = tuple(sorted((k, np.shape(v)) for k, v in batch.items()))
    if shape_key not in flops_cache:
      flops_cache[shape_key] = (tasks.tokens_per_batch(family, batch) * shard.count,
                                {k: v * shard.count for k, v in
                                 tasks.flops_per_batch(model_config, batch).items()})
    tokens, flops = flops_cache[shape_key]
    host.tokens += tokens
    host.flops = {k: host.flops.get(k, 0.0) + v for k, v in flops.items()}
    pending.append((step, ordinals, (device_metrics, index), host.tokens, dict(host.flops)))

  # (4) The loop.
  pending = []  # (step, batch ordinals, device metrics) since the last sync
  last_sync_time, last_sync_tokens, last_sync_flops, last_sync_step = (
      time.perf_counter(), host.tokens, host.flops.get(MFU_CONVENTION, 0.0), step)
  summary: dict = {}
  preempted = False
  with _Preemption() as preemption:
    while step < train_steps or pending:
      if step < train_steps:
        group = []  # (batch ordinals, batch) of each step this call trains
        for offset in range(group_size()):
          multiple = schedules.batch_size_ramp(step + offset)
          drawn = [draw() for _ in range(multiple)]
          batch = drawn[0][1] if multiple == 1 else {
              k: np.concatenate([b[k] for _, b in drawn]) for k in drawn[0][1]}
          group.append(([i for i, _ in drawn],
                        tasks.without_empty_prefix(batch, never_prefix)))
        first = group[0][1]
        uniform = all(set(b) == set(first) and
                      all(np.shape(b[k]) == np.shape(first[k]) for k in first)
                      for _, b in group)
        if steps_per_call == 1 or not uniform:
          for ordinals, batch in group:
            state, device_metrics = train_fn(state, parallel.host_batch_to_global(
                batch, _shardings(batch)))
            step += 1
            account(batch, ordinals, device_metrics, None)
        else:
          # Rows past the group's end are never trained on: zeros keep the shape fixed.
          stacked = {k: np.stack([b[k] for _, b in group] + [np.zeros_like(first[k])] *
                                 (steps_per_call - len(group))) for k in first}
          state, device_metrics = multi_fn(
              state, parallel.host_batch_to_global(stacked, _stacked_shardings(stacked)),
              np.int32(len(group)))
          for index, (ordinals, batch) in enumerate(group):
            step += 1
            account(batch, ordinals, device_metrics, index)

      at_end = step >= train_steps
      do_eval = eval_every and (step % eval_every == 0 or at_end)
      do_ckpt = step % every == 0 or at_end
      # On one process SIGTERM makes the next step a sync; on several, the hosts sync at
      # the same steps whatever each has seen, and decide together there.
      if not (step % log_every == 0 or do_eval or do_ckpt or at_end or
              (preemption.requested and not multiprocess)):
        continue
      stop = preemption.agreed()

      # Sync: fetch metrics, run the guard, then log / eval / checkpoint.
      # A multi-step call's metrics are fetched once (jax caches an array's host copy),
      # then split into its steps.
      fetched = [m if i is None else {k: v[i] for k, v in m.items()}
                 for m, i in jax.device_get([m for _, _, m, _, _ in pending])]
      bad = [i for (_, idx, _, _, _), m in zip(pending, fetched)
             if not bool(m['guard_ok']) for i in idx]
      if bad:
        host.guard_events += len([m for m in fetched if not bool(m['guard_ok'])])
        host.guard_rollbacks += 1
        if host.guard_rollbacks > guard_config.max_rollbacks:
          raise guard_lib.StabilityError(
              f'stability guard: {host.guard_rollbacks} rollbacks (max '
              f'{guard_config.max_rollbacks}); last bad batches {bad} near step {step}')
        checkpointer.wait()
        back = checkpointer.latest_step()
        skip = set(host.skip) | guard_lib.batches_to_skip(bad, guard_config)
        events, rollbacks = host.guard_events, host.guard_rollbacks
        writer.flush()  # a checkpoint that cannot be read ends the process at once
        try:
          state, saved = checkpointer.restore(back, setup.abstract)
        except ckpt_lib.CheckpointError as e:
          raise ckpt_lib.CheckpointError(
              f'stability guard: rolling back from step {step}: {e}') from e
        host = HostState(**saved)
        host.skip, host.guard_events, host.guard_rollbacks = sorted(skip), events, rollbacks
        source.set_state(host.data)
        step, pending = back, []
        writer.truncate(step)
        last_sync_time, last_sync_tokens, last_sync_step = (
            time.perf_counter(), host.tokens, step)
        last_sync_flops = host.flops.get(MFU_CONVENTION, 0.0)
        print(f'stability guard: bad batch(es) {bad}; rolled back to step {back}',
              file=sys.stderr)
        continue

      now = time.perf_counter()
      elapsed = max(now - last_sync_time, 1e-9)
      tokens_per_s = (host.tokens - last_sync_tokens) / elapsed
      flops_per_s = (host.flops.get(MFU_CONVENTION, 0.0) - last_sync_flops) / elapsed
      steps_per_s = (step - last_sync_step) / elapsed
      for (s, _, _, tokens_seen, flops_seen), m in zip(pending, fetched):
        if s % log_every and s != step:
          continue
        row = {k: v for k, v in m.items() if k != 'guard_ok'}
        row.update(tokens=tokens_seen, flops=flops_seen.get(FLOPS_CONVENTION, 0.0),
                   **{f'flops_{k}': v for k, v in flops_seen.items()},
                   tokens_per_s=tokens_per_s,
                   mfu=flops_per_s / (jax.device_count() * peak),
                   guard_events=host.guard_events, guard_rollbacks=host.guard_rollbacks)
        if s == step and do_eval:
          row.update(run_eval(final=at_end))
        writer.write(s, row)
        summary = {'step': s, **{k: metrics_lib._to_python(v) for k, v in row.items()}}
      if line:
        line.update(step, float(fetched[-1]['train_loss']), tokens_per_s, steps_per_s)
      pending = []
      last_sync_time, last_sync_tokens, last_sync_step = now, host.tokens, step
      last_sync_flops = host.flops.get(MFU_CONVENTION, 0.0)

      if do_ckpt or stop:
        host.data = source.get_state()
        checkpointer.save(step, state, host_item(step))
      if stop and not at_end:
        preempted = True
        break
  writer.flush()

  # (5) Completion: wait for the last checkpoint, then the marker, last of all.
  checkpointer.close()
  if hasattr(source, 'close'):  # stops a prefetch thread
    source.close()
  writer.close()
  if line:
    line.close()
  summary.update(preempted=preempted, step=step)
  if is_chief and not preempted:
    runs.mark_complete(workdir, summary)
  return summary
