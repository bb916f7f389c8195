"""benchmarks/profile_train_step.py's reading of a trace, on a hand-built XSpace."""
import os
import sys

from tensorflow.tsl.profiler.protobuf import xplane_pb2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'benchmarks'))
import profile_train_step  # noqa: E402  pylint: disable=wrong-import-position

MS = 10**9  # picoseconds


def _space(lines):
  """lines: {line name: (line timestamp in ns, [(event name, offset_ps, duration_ps)])}."""
  space = xplane_pb2.XSpace()
  plane = space.planes.add()
  ids = {}
  for name, (timestamp_ns, events) in lines.items():
    line = plane.lines.add()
    line.name, line.timestamp_ns = name, timestamp_ns
    for event_name, offset, duration in events:
      if event_name not in ids:
        ids[event_name] = len(ids) + 1
        plane.event_metadata[ids[event_name]].name = event_name
      event = line.events.add()
      event.metadata_id, event.offset_ps, event.duration_ps = ids[event_name], offset, duration
  return space


def test_async_ops_get_their_span_to_completion():
  # Two traced steps. dot.1 (an async Eigen dot) is dispatched in 1 ns and completes on
  # the other thread, whose line starts 1 ms later, 10 ms / 5 ms after its start; add.2 is
  # synchronous; runtime spans and the python line are dropped.
  space = _space({
      'worker_a': (0, [('ThunkExecutor::Execute', 0, MS * 40), ('dot.1', 0, 1_000),
                       ('add.2', MS * 2, 500), ('end: add.2', MS * 2 + 500, 0),
                       ('dot.1', MS * 20, 1_000), ('add.2', MS * 22, 700),
                       ('end: add.2', MS * 22 + 700, 0)]),
      'worker_b': (1_000_000, [('end: dot.1', MS * 9, 0), ('end: dot.1', MS * 24, 0)]),
      'python': (0, [('dot.1', 0, MS * 99)]),
  })
  times, spans = profile_train_step.xspace_op_times(space)
  assert times['dot.1'] == 2_000 and spans['dot.1'] == MS * 15
  assert times['add.2'] == 500 + 700 and 'add.2' not in spans
  assert 'ThunkExecutor::Execute' not in times and 'end: dot.1' not in times


def test_a_missing_marker_does_not_shift_later_pairings():
  # add.2 runs in three steps; the first step's completion marker is missing. Paired in
  # order, each start would take the next step's marker and look asynchronous.
  events = []
  for step in range(3):
    events.append(('add.2', MS * 20 * step, 500))
    if step:
      events.append(('end: add.2', MS * 20 * step + 500, 0))
  events.append(('dot.3', MS * 70, 1_000))
  events.append(('dot.3', MS * 71, 1_000))  # the same op on another device: ends first
  events.append(('end: dot.3', MS * 72, 0))
  events.append(('end: dot.3', MS * 80, 0))
  times, spans = profile_train_step.xspace_op_times(_space({'worker': (0, events)}))
  assert times['add.2'] == 1_500 and 'add.2' not in spans
  assert spans['dot.3'] == MS * (80 - 70) + MS * (72 - 71)


def test_without_markers_the_event_duration_counts():
  space = _space({'worker': (0, [('fusion.3', 0, 2_000), ('fusion.3', 5_000, 3_000)])})
  times, spans = profile_train_step.xspace_op_times(space)
  assert times['fusion.3'] == 5_000 and not spans


def test_torch_ops_fall_into_the_kinds_of_the_breakdown():
  names = {
      'aten::mm': 'matmul', 'aten::addmm': 'matmul',
      'aten::_scaled_dot_product_flash_attention_for_cpu': 'attention',
      'aten::native_layer_norm_backward': 'norm', 'aten::gelu_backward': 'activation',
      'aten::_log_softmax': 'loss', 'aten::embedding_dense_backward': 'embedding',
      'Optimizer.zero_grad#AdamW.zero_grad': 'optimizer and clipping',
      'aten::copy_': 'copies and fills', 'aten::cat': 'copies and fills',
      'aten::add': 'elementwise and sums', 'aten::add_': 'elementwise and sums',
      'aten::sum': 'elementwise and sums', 'aten::mul_': 'elementwise and sums',
      'aten::sqrt': 'other', 'aten::view': 'other'}
  assert {n: profile_train_step.torch_kind(n) for n in names} == names
  # Inside the clipping and optimizer scope every op is the optimizer's, whatever its name.
  for name in ('aten::mul_', 'aten::sqrt', 'aten::addcdiv_', 'aten::linalg_vector_norm'):
    assert profile_train_step.torch_kind(name, in_optimizer=True) == 'optimizer and clipping'
