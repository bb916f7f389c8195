"""benchmarks/profile_train_step.py's reading of a trace, on a hand-built XSpace."""
import os
import sys

from tensorflow.tsl.profiler.protobuf import xplane_pb2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'benchmarks'))
import profile_train_step  # noqa: E402  pylint: disable=wrong-import-position

MS = 10**9  # picoseconds


def _space(lines):
  """lines: {line name: [(event name, offset_ps, duration_ps)]} on one plane."""
  space = xplane_pb2.XSpace()
  plane = space.planes.add()
  ids = {}
  for name, events in lines.items():
    line = plane.lines.add()
    line.name, line.timestamp_ns = name, 1000
    for event_name, offset, duration in events:
      if event_name not in ids:
        ids[event_name] = len(ids) + 1
        plane.event_metadata[ids[event_name]].name = event_name
      event = line.events.add()
      event.metadata_id, event.offset_ps, event.duration_ps = ids[event_name], offset, duration
  return space


def test_async_ops_get_their_span_to_completion():
  # Two traced steps. dot.1 (an async Eigen dot) is dispatched in 1 ns and completes on
  # the other thread 10 ms / 5 ms later; add.2 is synchronous; runtime spans are dropped.
  space = _space({
      'worker_a': [('ThunkExecutor::Execute', 0, MS * 40), ('dot.1', 0, 1_000),
                   ('add.2', MS * 2, 500), ('end: add.2', MS * 2 + 500, 0),
                   ('dot.1', MS * 20, 1_000), ('add.2', MS * 22, 700),
                   ('end: add.2', MS * 22 + 700, 0)],
      'worker_b': [('end: dot.1', MS * 10, 0), ('end: dot.1', MS * 25, 0)],
      'python': [('dot.1', 0, MS * 99)],
  })
  times, spans = profile_train_step.xspace_op_times(space)
  assert times['dot.1'] == 2_000 and spans['dot.1'] == MS * 15
  assert times['add.2'] == 500 + 700 and 'add.2' not in spans
  assert 'ThunkExecutor::Execute' not in times and 'end: dot.1' not in times


def test_without_markers_the_event_duration_counts():
  space = _space({'worker': [('fusion.3', 0, 2_000), ('fusion.3', 5_000, 3_000)]})
  times, spans = profile_train_step.xspace_op_times(space)
  assert times['fusion.3'] == 5_000 and not spans
