r"""Tokens/s and MFU of the jitted train step for a run's gin config (synthetic batches).

  python benchmarks/train_step.py --gin_file=gin_configs/runs/bench_gpt2_cpu.gin [--torch]
      [--compare_bindings="TransformerConfig.norm = 'rmsnorm'"]

Builds the model, optimizer and sharded state exactly as the trainer does, compiles the
step once, then times --steps steps after --warmup and reports the median step (with
--torch, in --rounds rounds of both frameworks). MFU is
model FLOPs (Chinchilla convention) per second over the device peak (a table for GPUs/TPUs;
on CPU, measured fp32 matmul throughput, or `peak_flops_per_device.override`). --torch also
times an eager PyTorch step of the same GPT-2-style decoder (LayerNorm, GELU MLP, learned
positions, tied embeddings, AdamW) on the same batch shape. --compare_bindings times a
variant against the base step in turns (see the flag).
"""
import os
import statistics
import time

from absl import flags

from research import cli
from research import timing

_GIN_FILE = flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s).')
_GIN_BINDINGS = flags.DEFINE_multi_string('gin_bindings', [], 'Extra gin bindings.')
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps.')
_WARMUP = flags.DEFINE_integer('warmup', 3, 'Untimed steps after compilation.')
_TORCH = flags.DEFINE_bool('torch', False, 'Also time an eager PyTorch step.')
_ROUNDS = flags.DEFINE_integer(
    'rounds', 3, 'With --torch: rounds of --steps steps of each framework, one after the '
    'other, the order alternating; the ratio is that of the medians over all rounds, and '
    'each round\'s ratio is printed too (the VM drifts by 10% within minutes).',
    lower_bound=1)
_ONE_SEGMENT = flags.DEFINE_bool(
    'one_segment', False, 'One sequence per row instead of the synthetic batch\'s two '
    'packed ones (a purely causal mask: what cuDNN\'s causal kernel needs to skip the bias).')
_COMPARE = flags.DEFINE_multi_string(
    'compare_bindings', [], 'Gin bindings of a variant (e.g. "TransformerConfig.norm = '
    '\'rmsnorm\'"): its step and the base step are built in this process and timed in '
    'turns, step by step, and the ratio printed. One XLA thread pool serves both, so '
    'taking turns costs nothing, and the VM\'s drift (10% within minutes) cancels: '
    'repeated comparisons agree to about 1%.')
_PHASES = flags.DEFINE_bool(
    'phases', False, 'Also time the forward loss alone and forward + backward without the '
    'optimizer (both frameworks with --torch), to see which phase a gap comes from.')


def _time(step_fn, steps: int, warmup: int) -> float:
  """Median seconds per synchronized call: robust to the odd stalled step (on the 2-core
  VM the kernel now and then pages memory out under a running step)."""
  return statistics.median(timing.call_seconds(step_fn, steps, warmup))


def build_jax_step(cfg, batch_size, lengths):
  """(one: runs one synchronized train step, compile seconds, the numpy batch, hlo: the
  compiled step's HLO text, phases: {'forward', 'forward+backward'} -> a function that
  runs that part of the step once, synchronized).

  The model, optimizer and sharded state are built exactly as the trainer builds them,
  with a synthetic batch; benchmarks/profile_train_step.py reuses this."""
  import jax
  import numpy as np
  from research import parallel
  from research.train import standalone
  from research.train import step as step_lib
  built = standalone.build(cfg, batch_size, lengths)
  module, setup, train_fn, batch_np = built.module, built.setup, built.train_fn, built.batch_np
  if _ONE_SEGMENT.value:
    for prefix in ('encoder', 'decoder'):
      if f'{prefix}_segment_ids' in batch_np:
        seg = batch_np[f'{prefix}_segment_ids']
        batch_np[f'{prefix}_segment_ids'] = np.ones_like(seg)
        batch_np[f'{prefix}_positions'] = np.broadcast_to(
            np.arange(seg.shape[1], dtype=seg.dtype), seg.shape).copy()
  batch = parallel.host_batch_to_global(batch_np, built.shardings)
  holder = {'state': setup.init(0)}

  def one():
    holder['state'], m = train_fn(holder['state'], batch)
    jax.block_until_ready(m['train_loss'])
  start = time.perf_counter()
  one()
  compile_s = time.perf_counter() - start

  def loss(params, batch):  # the batch is an argument: a closed-over one is a constant
    # pylint: disable-next=protected-access
    loss_sum, _ = step_lib._loss_sums(module, cfg.family, cfg.z_loss, params, batch,
                                      jax.random.PRNGKey(0), deterministic=True)
    return loss_sum
  phases = {}
  for name, fn in (('forward', jax.jit(loss)),
                   ('forward+backward', jax.jit(jax.value_and_grad(loss)))):
    phases[name] = lambda fn=fn: jax.block_until_ready(fn(holder['state'].params, batch))
  return one, compile_s, batch_np, lambda: train_fn.lower(holder['state'],
                                                          batch).compile().as_text(), phases


def bench_jax(cfg, batch_size, lengths):
  """(one synchronized step, result(seconds per step) -> the printed figures)."""
  import jax
  from research.train import metrics, tasks
  one, compile_s, batch_np, _, phases = build_jax_step(cfg, batch_size, lengths)
  phase_ms = {name: 1e3 * _time(fn, _STEPS.value, max(_WARMUP.value, 1))
              for name, fn in phases.items()} if _PHASES.value else {}
  tokens = tasks.tokens_per_batch(cfg.family, batch_np)
  flops = tasks.flops_per_batch(cfg, batch_np)
  peak = metrics.peak_flops_per_device()

  def result(seconds):
    mfu = {k: v / seconds / (jax.device_count() * peak) for k, v in flops.items()}
    memory = (jax.devices()[0].memory_stats() or {}).get('peak_bytes_in_use')
    return {'tokens_per_s': tokens / seconds, 'step_ms': 1e3 * seconds,
            'mfu': mfu['chinchilla'], 'mfu_by_convention': mfu, 'peak_flops': peak,
            'peak_memory_gib': memory / 2**30 if memory else None,
            'phase_ms': phase_ms, 'compile_s': compile_s,
            'devices': f'{jax.device_count()} x {jax.devices()[0].device_kind}'}
  return one, result


OPTIMIZER_SCOPE = 'clip_and_optimizer_step'


def bench_torch(cfg, batch_size, length):
  """Eager PyTorch GPT-2-style step; the baseline of the CPU target (docs/performance.md)."""
  import torch
  import torch.nn.functional as F
  from torch import nn

  class Block(nn.Module):
    def __init__(self):
      super().__init__()
      d = cfg.d_model
      self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
      self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
      self.fc, self.out = nn.Linear(d, cfg.d_ff), nn.Linear(cfg.d_ff, d)

    def forward(self, x):
      b, t, d = x.shape
      q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
      heads = lambda y: y.view(b, t, cfg.num_heads, d // cfg.num_heads).transpose(1, 2)
      y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
      x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
      return x + self.out(F.gelu(self.fc(self.ln2(x))))

  class GPT(nn.Module):
    def __init__(self):
      super().__init__()
      self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
      self.pos = nn.Embedding(length, cfg.d_model)
      self.blocks = nn.ModuleList([Block() for _ in range(cfg.num_layers)])
      self.ln = nn.LayerNorm(cfg.d_model)

    def forward(self, idx):
      x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
      for block in self.blocks:
        x = block(x)
      return self.ln(x) @ self.tok.weight.T

  torch.manual_seed(0)
  model = GPT()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
  idx = torch.randint(1, cfg.vocab_size, (batch_size, length))
  tgt = torch.randint(1, cfg.vocab_size, (batch_size, length))

  def one():
    loss = F.cross_entropy(model(idx).view(-1, cfg.vocab_size), tgt.view(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    # A named scope for benchmarks/profile_train_step.py --torch (microseconds a step).
    with torch.profiler.record_function(OPTIMIZER_SCOPE):
      torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
      opt.step()
  phase_ms = {}
  if _PHASES.value:
    def forward():
      with torch.no_grad():
        F.cross_entropy(model(idx).view(-1, cfg.vocab_size), tgt.view(-1))

    def forward_backward():
      opt.zero_grad(set_to_none=True)
      F.cross_entropy(model(idx).view(-1, cfg.vocab_size), tgt.view(-1)).backward()
    phase_ms = {name: 1e3 * _time(fn, _STEPS.value, max(_WARMUP.value, 1)) for name, fn in
                (('forward', forward), ('forward+backward', forward_backward))}

  def result(seconds):
    return {'tokens_per_s': batch_size * length / seconds, 'step_ms': 1e3 * seconds,
            'phase_ms': phase_ms, 'threads': torch.get_num_threads(),
            'params': sum(p.numel() for p in model.parameters())}
  return one, result


def time_in_rounds(steps: dict, count: int, warmup: int, rounds: int):
  """({name: median seconds over all rounds}, [per round: first step's median / each
  other's]). Each round times `count` steps of every step function, one function after
  the other, the order alternating between rounds; `warmup` untimed steps precede a
  function's first round and one each later round (its threads wake up)."""
  times = {name: [] for name in steps}
  ratios = []
  for round_ in range(rounds):
    medians = {}
    for name in (list(steps) if round_ % 2 == 0 else list(steps)[::-1]):
      t = timing.call_seconds(steps[name], count, warmup if round_ == 0 else max(warmup, 1))
      times[name] += t
      medians[name] = statistics.median(t)
    first, *others = steps
    ratios.append([medians[other] / medians[first] for other in others])
  return {name: statistics.median(t) for name, t in times.items()}, ratios


def compare_in_turns(steps: dict, count: int, warmup: int) -> dict:
  """{name: median seconds} of synchronized step functions called in turns (the order
  alternating every round), after `warmup` rounds."""
  for _ in range(warmup):
    for one in steps.values():
      one()
  times = {name: [] for name in steps}
  for round_ in range(count):
    for name in (list(steps) if round_ % 2 == 0 else list(steps)[::-1]):
      start = time.perf_counter()
      steps[name]()
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def _print_phases(name: str, result: dict) -> None:
  if result['phase_ms']:
    print(f'{name:<6}: ' + ', '.join(f'{k} {v:.1f} ms' for k, v in result['phase_ms'].items())
          + f', whole step {result["step_ms"]:.1f} ms')


def load_config(prog: str = 'train_step.py', variant_bindings=()):
  """(TransformerConfig, batch size, feature lengths) from --gin_file / --gin_bindings.

  Bad input (a missing gin file, a bad binding, a mesh that does not fit, --torch with a
  model that is not a decoder) exits with one line. `variant_bindings` are checked too,
  now rather than after the base step is timed, and left unapplied.
  """
  import gin
  from research import models
  from research import parallel
  for path in _GIN_FILE.value:
    if not os.path.exists(path):
      cli.usage_error(prog, f'--gin_file {path!r} does not exist')
  try:
    gin.parse_config_files_and_bindings(_GIN_FILE.value,
                                        _GIN_BINDINGS.value + list(variant_bindings))
    models.TransformerConfig()
    gin.clear_config()
    gin.parse_config_files_and_bindings(_GIN_FILE.value, _GIN_BINDINGS.value)
    cfg = models.TransformerConfig()
    batch_size = gin.query_parameter('%BATCH_SIZE')
    lengths = dict(gin.query_parameter('%TASK_FEATURE_LENGTHS'))
    parallel.make_mesh(parallel.MeshConfig())
  except parallel.MeshError as e:
    cli.usage_error(prog, e)
  except Exception as e:  # gin raises many types; all mean "this config is wrong"
    cli.usage_error(prog, f'bad gin config: {e}')
  if _TORCH.value and cfg.family != 'decoder':
    cli.usage_error(prog, f'--torch compares decoder-only models, not {cfg.family!r}')
  return cfg, batch_size, lengths


def main(argv):
  del argv
  cli.show_own_info()
  from research.parallel import host
  host.tune_allocator()  # before JAX or torch allocate: both run under the same allocator
  import gin
  from research import models
  from research.train import sources, tasks, trainer  # pylint: disable=unused-import
  cfg, batch_size, lengths = load_config(variant_bindings=_COMPARE.value)
  counts = models.count_params(cfg)
  print(f'model: {cfg.family}, {counts["total"]:,} params, batch {batch_size}, '
        f'lengths {lengths}, dtype {cfg.dtype}')
  steps = {'jax': bench_jax(cfg, batch_size, lengths)}
  if _TORCH.value:
    steps['torch'] = bench_torch(cfg, batch_size, lengths['targets'])
  # One after the other, not step by step in turns: taking turns, each framework's idle
  # threads (XLA's pool, torch's OpenMP team) still spin while the other runs, and both
  # slow down. Several rounds, so that the VM's drift falls on both.
  seconds, round_ratios = time_in_rounds({name: one for name, (one, _) in steps.items()},
                                         _STEPS.value, _WARMUP.value,
                                         _ROUNDS.value if _TORCH.value else 1)
  if _COMPARE.value:
    with gin.unlock_config():
      gin.parse_config(_COMPARE.value)
    variant_cfg = models.TransformerConfig()
    variant, _, variant_batch, _, _ = build_jax_step(
        variant_cfg, gin.query_parameter('%BATCH_SIZE'),
        dict(gin.query_parameter('%TASK_FEATURE_LENGTHS')))
    pair = compare_in_turns({'base': steps['jax'][0], 'variant': variant}, _STEPS.value,
                            max(_WARMUP.value, 1))
    tokens = {'base': steps['jax'][1](1.0)['tokens_per_s'],  # tokens per step, as printed
              'variant': tasks.tokens_per_batch(variant_cfg.family, variant_batch)}
    compared = (f'compare (in turns, median of {_STEPS.value} steps each): base '
                f'{1e3 * pair["base"]:.2f} ms/step, with {"; ".join(_COMPARE.value)} '
                f'{1e3 * pair["variant"]:.2f} ms/step; tokens/s variant / base = '
                f'{tokens["variant"] / pair["variant"] / (tokens["base"] / pair["base"]):.3f}')
  result = steps['jax'][1](seconds['jax'])
  print(f'jax   : {result["tokens_per_s"]:,.0f} tokens/s  {result["step_ms"]:.1f} ms/step  '
        f'MFU {100 * result["mfu"]:.1f}% of {result["peak_flops"] / 1e12:.3g} TFLOP/s/device '
        f'({result["devices"]}; compile {result["compile_s"]:.1f}s)')
  print('MFU by FLOP convention: ' + ', '.join(
      f'{k} {100 * v:.1f}%' for k, v in result['mfu_by_convention'].items()))
  _print_phases('jax', result)
  if result['peak_memory_gib']:
    print(f'peak device memory: {result["peak_memory_gib"]:.1f} GiB')
  if _COMPARE.value:
    print(compared)
  if _TORCH.value:
    t = steps['torch'][1](seconds['torch'])
    print(f'torch : {t["tokens_per_s"]:,.0f} tokens/s  {t["step_ms"]:.1f} ms/step  '
          f'(eager, {t["threads"]} threads, {t["params"]:,} params)')
    _print_phases('torch', t)
    rounds = (f' (rounds: {", ".join(f"{r[0]:.3f}" for r in round_ratios)})'
              if len(round_ratios) > 1 else '')
    print(f'jax / torch = {result["tokens_per_s"] / t["tokens_per_s"]:.3f}{rounds}')


if __name__ == '__main__':
  cli.run(main, 'train_step.py')
