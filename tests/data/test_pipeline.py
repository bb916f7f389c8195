"""The input pipeline on the embedded corpus: determinism, resume, sharding, packing."""
import json

import numpy as np
import pytest

from research import objectives
from research.data import pipeline

LENGTHS = {'targets': 512}


def _make(data_dir, **kw):
  args = dict(task_feature_lengths=LENGTHS, batch_size=4, objective='causal_lm', seed=1,
              data_dir=data_dir)
  args.update(kw)
  return pipeline.make_pipeline('python_stdlib', **args)


def _take(p, n):
  return [next(p) for _ in range(n)]


def _assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert sorted(x) == sorted(y)
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.mark.parametrize('objective,family,converter', [
    ('causal_lm', 'decoder', None),
    (objectives.UL2(), 'decoder', 'prefix_decoder'),
    ('span_corruption', 'encoder_decoder', None),
])
def test_deterministic_and_resumable(data_dir, objective, family, converter):
  lengths = {'inputs': 512, 'targets': 114} if family == 'encoder_decoder' else LENGTHS
  make = lambda **kw: _make(data_dir, objective=objective, family=family,
                            feature_converter=converter, task_feature_lengths=lengths, **kw)
  a = make()
  full = _take(a, 8)
  _assert_same(full, _take(make(prefetch=0), 8))  # same seed, same batches, prefetch or not
  b = make()
  _take(b, 3)
  state = json.loads(json.dumps(b.get_state()))  # survives a JSON checkpoint
  b.close()
  c = make()
  c.set_state(state)
  _assert_same(_take(c, 5), full[3:])  # batches 4.. identical to the uninterrupted run
  different = _take(make(seed=2), 1)[0]
  assert not np.array_equal(different['decoder_target_tokens'], full[0]['decoder_target_tokens'])
  for p in (a, c):
    p.close()


def test_no_example_repeated_or_skipped_across_resume(data_dir):
  # Tokens of all targets over a resumed run equal those of an uninterrupted run, in order.
  def tokens(batches):
    return np.concatenate([b['decoder_target_tokens'][b['decoder_segment_ids'] > 0]
                           for b in batches])
  full = tokens(_take(_make(data_dir), 6))
  p = _make(data_dir)
  first = _take(p, 2)
  q = _make(data_dir)
  q.set_state(p.get_state())
  np.testing.assert_array_equal(tokens(first + _take(q, 4)), full)


def test_state_from_another_config_is_rejected(data_dir):
  state = _make(data_dir).get_state()
  with pytest.raises(ValueError, match='different configuration'):
    _make(data_dir, seed=9).set_state(state)


@pytest.mark.parametrize('objective,converter', [
    ('causal_lm', 'decoder'), (objectives.UL2(), 'prefix_decoder')])
def test_packing_efficiency_on_stdlib(data_dir, objective, converter):
  p = _make(data_dir, objective=objective, feature_converter=converter, batch_size=32)
  seg = np.concatenate([b['decoder_segment_ids'] for b in _take(p, 8)])
  assert (seg > 0).mean() >= 0.9
  p.close()


def test_batch_contract(data_dir):
  b = next(_make(data_dir, prefetch=0, batch_size=2))
  assert set(b) == {'decoder_input_tokens', 'decoder_target_tokens', 'decoder_loss_weights',
                    'decoder_segment_ids', 'decoder_positions', 'decoder_causal_attention'}
  for v in b.values():
    assert v.dtype == np.int32 and v.shape == (2, 512)
  seg, pos = b['decoder_segment_ids'], b['decoder_positions']
  for row in range(2):
    for s in set(seg[row][seg[row] > 0]):
      idx = np.flatnonzero(seg[row] == s)
      assert pos[row, idx].tolist() == list(range(len(idx)))
      assert b['decoder_input_tokens'][row, idx[0]] == 0  # BOS at each segment start
      np.testing.assert_array_equal(b['decoder_input_tokens'][row, idx[1:]],
                                    b['decoder_target_tokens'][row, idx[:-1]])


def test_host_shards_are_disjoint(data_dir):
  firsts = []
  for shard in range(2):
    p = _make(data_dir, shard_index=shard, shard_count=2, prefetch=0, shuffle=False)
    firsts.append(p.source.indices)
  assert not set(firsts[0]) & set(firsts[1])
  assert len(firsts[0]) + len(firsts[1]) > 1000


def test_eval_batches_fixed(data_dir):
  kw = dict(task_feature_lengths=LENGTHS, batch_size=8, data_dir=data_dir, num_batches=3)
  a = pipeline.make_eval_batches('python_stdlib', **kw)
  _assert_same(a, pipeline.make_eval_batches('python_stdlib', **kw))
  assert len(a) == 3


def test_eval_covers_whole_split_and_pads_last_batch(tmp_path, data_dir):
  d = tmp_path / 'c'
  d.mkdir()
  for i in range(6):
    (d / f'f{i}.txt').write_text('x' * (50 + i))
  batches = pipeline.make_eval_batches(f'text_files:{d}', 'train', batch_size=4,
                                       task_feature_lengths={'targets': 64},
                                       data_dir=data_dir, pack=False)
  seg = np.concatenate([b['decoder_segment_ids'] for b in batches])
  n_train = (seg.max(axis=1) > 0).sum()
  assert n_train == 5 and seg.shape[0] == 8  # 6 files, 1 held out; last batch padded


def test_too_small_length_for_denoiser(data_dir):
  with pytest.raises(ValueError, match='sequence length too small for objective'):
    _make(data_dir, objective=objectives.UL2(), feature_converter='prefix_decoder',
          task_feature_lengths={'targets': 128})


def test_only_a_prefix_converter_may_give_a_prefix(data_dir):
  """`may_have_prefix` (the trainer drops an all-zero decoder_causal_attention in every
  process when it is False) matches what the batches carry."""
  causal = _make(data_dir, prefetch=0)
  assert causal.may_have_prefix is False
  assert not any(np.any(b['decoder_causal_attention']) for b in _take(causal, 2))
  prefix = _make(data_dir, objective='prefix_lm', feature_converter='prefix_decoder',
                 prefetch=0)
  assert prefix.may_have_prefix is True
  assert any(np.any(b['decoder_causal_attention']) for b in _take(prefix, 2))


def _rows(batches):
  """Each row's target tokens as bytes, over a list of batches."""
  return [b['decoder_target_tokens'][i].tobytes() for b in batches
          for i in range(b['decoder_target_tokens'].shape[0])]


def test_shuffle_rows_mixes_a_pool_and_resumes_exactly(data_dir):
  small = {'targets': 64}
  make = lambda **kw: _make(data_dir, task_feature_lengths=small, batch_size=4, **kw)
  plain, mixed = _take(make(), 60), _take(make(shuffle_rows=64), 40)
  # Rows of the same stream (at most the pool ahead of it), in another order.
  assert set(_rows(mixed)) <= set(_rows(plain))
  assert _rows(mixed)[:16] != _rows(plain)[:16]
  # A batch of the plain pipeline holds 4 consecutive rows of the stream, a mixed one rows
  # spread over the pool.
  order = {r: i for i, r in enumerate(_rows(plain))}
  spreads = [max(order[r] for r in rows) - min(order[r] for r in rows)
             for rows in (_rows([b]) for b in mixed[20:]) if all(r in order for r in rows)]
  assert np.median(spreads) > 8
  # Resume: the pool is part of the state.
  p = make(shuffle_rows=64)
  _take(p, 7)
  state = json.loads(json.dumps(p.get_state()))
  p.close()
  q = make(shuffle_rows=64)
  q.set_state(state)
  _assert_same(_take(q, 10), mixed[7:17])
  q.close()
  with pytest.raises(ValueError, match='different configuration'):
    make().set_state(state)
  with pytest.raises(ValueError, match='shuffle_rows must be >= 0'):
    make(shuffle_rows=-1)



def test_eval_batches_never_shuffle_rows(data_dir):
  import gin
  kw = dict(task_feature_lengths={'targets': 64}, batch_size=4, num_batches=3,
            data_dir=data_dir)
  before = pipeline.make_eval_batches(**kw)
  gin.parse_config(['make_pipeline.shuffle_rows = 64'])
  try:
    _assert_same(pipeline.make_eval_batches(**kw), before)
  finally:
    gin.clear_config()
