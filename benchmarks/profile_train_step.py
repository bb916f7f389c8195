r"""Where a jitted train step spends its time, per model component (XLA:CPU or GPU).

  python benchmarks/profile_train_step.py --gin_file=gin_configs/runs/bench_gpt2_cpu.gin

Traces --steps steps with `jax.profiler`, reads the trace's XPlane (TensorFlow's protobuf
definitions, a core dependency), joins every executed XLA op with the compiled step's HLO
metadata (the `op_name` JAX records: module path and primitive), and prints milliseconds
per step by component (`attn/core` = everything between the q/k/v projections and the
output projection; `mlp/wi`, ...) split into matmuls and the rest, then the top ops.
Times are summed over the runtime's worker threads and over ops that XLA runs
concurrently, so read them as shares of the work, not as wall time (the README's
"Training" section has what the breakdown showed on the 2-core CI-class CPU). Ops that
XLA:CPU runs asynchronously (the Eigen dots of weight gradients, conditionals) show only
their dispatch there; a last list gives their spans from start to completion, which
overlap other ops.

  python benchmarks/profile_train_step.py --gin_file=gin_configs/runs/bench_gpt2_cpu.gin --torch

also profiles the eager PyTorch step of benchmarks/train_step.py --torch with
`torch.profiler` and prints its milliseconds per step by kind of op (each op's self time
on the calling thread, which for torch's intra-op-parallel kernels is their wall time;
everything inside gradient clipping and the optimizer step counts as the optimizer), so
the two steps' budgets can be set side by side.
"""
import collections
import glob
import os
import re
import tempfile

from absl import flags
import train_step  # benchmarks/, the script's own directory (its --gin_file flags are ours)

from research import cli

_STEPS = flags.DEFINE_integer('trace_steps', 3, 'Traced steps.')
_TOP = flags.DEFINE_integer('top', 12, 'Top ops to list.')

_PROJECTIONS = ('query', 'key', 'value', 'out', 'wi', 'wo', 'wi_0', 'wi_1')


def component(op_name: str) -> str:
  """'jit(f)/transpose(jvp(DecoderOnly))/decoder/layers_2/attn/key/dot_general' ->
  'attn/key'; ops inside a layer but outside a projection -> '<module>/core'."""
  m = re.search(r'/layers_\d+/(\w+)/(\w+)', op_name)
  if m:
    return m.group(1) + '/' + (m.group(2) if m.group(2) in _PROJECTIONS else 'core')
  if 'jvp(' in op_name or 'transpose(' in op_name:
    return 'model: embed / logits / loss'
  return 'optimizer and step bookkeeping'


def hlo_op_names(hlo_text: str) -> dict:
  """{instruction name: op_name metadata} for the entry computation's instructions."""
  entry = hlo_text[hlo_text.index('ENTRY'):]
  names = {}
  for line in entry.splitlines():
    m = re.match(r'\s*%(\S+) = ', line)
    if m:
      meta = re.search(r'op_name="([^"]+)"', line)
      names[m.group(1)] = meta.group(1) if meta else ''
  return names


def op_times(trace_dir: str):
  """`xspace_op_times` of the XPlane that jax.profiler wrote under `trace_dir`."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  files = glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'), recursive=True)
  if not files:
    raise RuntimeError(f'jax.profiler wrote no .xplane.pb under {trace_dir}')
  space = xplane_pb2.XSpace()
  with open(files[0], 'rb') as f:
    space.ParseFromString(f.read())
  return xspace_op_times(space)


_ASYNC_PS = 100_000_000  # completion this much (0.1 ms) after the op's event: asynchronous


def xspace_op_times(space) -> tuple[collections.Counter, collections.Counter]:
  """({op: picoseconds of its events}, {op: picoseconds from start to completion}) summed
  over every thread of an XSpace; the second only for asynchronous ops.

  XLA:CPU records each op's completion as an `end: <op>` marker. For most ops it falls at
  the end of the op's event; some run asynchronously (the Eigen `dot`s of weight
  gradients, conditionals), and their event covers only the dispatch: the work runs on
  other threads, concurrently with other ops, until the marker."""
  events, spans = collections.Counter(), collections.Counter()
  for plane in space.planes:
    meta = {k: v.name for k, v in plane.event_metadata.items()}
    starts, ends = collections.defaultdict(list), collections.defaultdict(list)
    for line in plane.lines:
      if line.name == 'python':
        continue
      for event in line.events:
        name = meta.get(event.metadata_id, '')
        if 'Execute' in name or 'Await' in name:  # runtime spans that contain the ops
          continue
        at = line.timestamp_ns * 1000 + event.offset_ps
        if name.startswith('end: '):
          ends[name[len('end: '):]].append(at)
        else:
          starts[name].append((at, event.duration_ps))
          events[name] += event.duration_ps
    for name, occurrences in starts.items():
      # Each completion marker closes the latest open start before it, so a missing marker
      # leaves one start without a span instead of shifting every later pairing.
      timeline = sorted([(at, 1, duration) for at, duration in occurrences]
                        + [(at, 0, 0) for at in ends.get(name, ())])
      open_starts = []
      for at, is_start, duration in timeline:
        if is_start:
          open_starts.append((at, duration))
        elif open_starts:
          start, duration = open_starts.pop()
          if at - start > duration + _ASYNC_PS:
            spans[name] += at - start
  return events, spans


# torch op name -> kind, first match wins. Every op inside the step's gradient clipping and
# optimizer update counts as 'optimizer and clipping' whatever its name (AdamW's mul_, div,
# add_ are the same aten ops as the model's).
_TORCH_KINDS = (
    ('matmul', r'aten::(mm|addmm|bmm|matmul|linear)$'),
    ('attention', r'scaled_dot_product|flash_attention'),
    ('norm', r'layer_norm'),
    ('activation', r'gelu|relu|silu|tanh'),
    ('loss', r'softmax|nll_loss|cross_entropy'),
    ('embedding', r'embedding|index_select'),
    ('optimizer and clipping', r'^Optimizer\.'),  # zero_grad, outside the clipping scope
    ('copies and fills', r'aten::(copy_|cat|fill_|zero_|zeros|clone|contiguous|_to_copy)$'),
    ('elementwise and sums', r'aten::(add|mul|div|sub|sum)_?$'),  # residuals, bias grads
)


def torch_kind(name: str, in_optimizer: bool = False) -> str:
  if in_optimizer:
    return 'optimizer and clipping'
  for kind, pattern in _TORCH_KINDS:
    if re.search(pattern, name):
      return kind
  return 'other'


def profile_torch(cfg, batch_size: int, length: int, steps: int) -> dict:
  """{kind: self milliseconds per step} of the eager torch step, over `steps` steps: each
  op's self time, so the kinds add up to the step's op time without double counting."""
  from torch import profiler as torch_profiler  # pylint: disable=g-import-not-at-top
  one, _ = train_step.bench_torch(cfg, batch_size, length)
  one()
  one()
  with torch_profiler.profile(activities=[torch_profiler.ProfilerActivity.CPU]) as prof:
    for _ in range(steps):
      one()

  def in_optimizer(event):
    while event is not None:
      if event.name == train_step.OPTIMIZER_SCOPE:
        return True
      event = event.cpu_parent
    return False
  kinds = collections.Counter()
  for event in prof.events():
    kinds[torch_kind(event.name, in_optimizer(event))] += event.self_cpu_time_total / 1e3 / steps
  return kinds


def main(argv):
  del argv
  cli.show_own_info()
  from research.parallel import host
  host.tune_allocator()
  import jax
  from research.train import trainer  # noqa: F401  pylint: disable=unused-import
  cfg, batch_size, lengths = train_step.load_config('profile_train_step.py')
  one, _, _, hlo, _ = train_step.build_jax_step(cfg, batch_size, lengths)
  one()
  names = hlo_op_names(hlo())
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(_STEPS.value):
        one()
    times, spans = op_times(trace_dir)
  per_step = {op: ps / 1e9 / _STEPS.value for op, ps in times.items() if op in names}
  groups = collections.Counter()
  for op, ms in per_step.items():
    # A weight gradient's dot (HLO `dot.N`) carries the op_name of the transpose JAX took
    # of the forward dot_general ('.../mlp/wi/transpose').
    is_dot = 'dot_general' in names[op] or re.fullmatch(r'dot(\.\d+)?', op)
    kind = 'matmul' if is_dot else 'other'
    groups[(component(names[op]), kind)] += ms
  total = sum(per_step.values())
  print(f'{total:.0f} ms of XLA ops per step ({jax.devices()[0].device_kind}, '
        f'{_STEPS.value} traced steps)')
  print(f'{"component":32s} {"kind":7s} {"ms/step":>8s} {"share":>6s}')
  for (comp, kind), ms in groups.most_common():
    print(f'{comp:32s} {kind:7s} {ms:8.1f} {100 * ms / total:5.1f}%')
  print(f'\ntop {_TOP.value} ops:')
  for op, ms in sorted(per_step.items(), key=lambda kv: -kv[1])[:_TOP.value]:
    print(f'{ms:8.1f} ms  {op:28s} {names[op][-90:]}')
  async_ms = {op: ps / 1e9 / _STEPS.value for op, ps in spans.items() if op in names}
  if async_ms:
    print(f'\n{len(async_ms)} ops ran asynchronously: their time above is the dispatch; from '
          'start to completion (overlapping other ops) they took:')
    for op, ms in sorted(async_ms.items(), key=lambda kv: -kv[1])[:_TOP.value]:
      print(f'{ms:8.1f} ms  {op:28s} {names[op][-90:]}')
  if train_step._TORCH.value:  # pylint: disable=protected-access (train_step's --torch)
    kinds = profile_torch(cfg, batch_size, lengths['targets'], _STEPS.value)
    total = sum(kinds.values())
    print(f'\neager torch step: {total:.0f} ms of op self time per step '
          f'({_STEPS.value} profiled steps)')
    for kind, ms in kinds.most_common():
      print(f'{kind:38s} {ms:8.1f} {100 * ms / total:5.1f}%')


if __name__ == '__main__':
  cli.run(main, 'profile_train_step.py')
