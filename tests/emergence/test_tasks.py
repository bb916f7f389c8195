"""The arithmetic tasks: format, determinism, padding, corruptions, the stream source."""
import numpy as np
import pytest

from research.data import arithmetic as ar


def test_vocabulary_is_small_and_round_trips():
  assert ar.VOCAB_SIZE == 16
  assert ar.decode(ar.encode('12+34=46;')) == '12+34=46;'


@pytest.mark.parametrize('length', ar.LENGTHS)
def test_addition_is_correct_and_fixed_length(length):
  for i in range(50):
    item = ar.make_item(0, 'add', length, i)
    question = item.prompt.split(';')[-1]
    a, b = question[:-1].split('+')
    assert len(a) == len(b) == length
    assert item.target == f'{int(a) + int(b):0{length}d};'
    assert len(item.target_ids) == length + 1
    for shot in item.prompt.split(';')[:-1]:
      q, ans = shot.split('=')
      x, y = q.split('+')
      assert len(ans) == length and int(ans) == int(x) + int(y)


def test_multiplication_is_two_by_two_digits_padded_to_four():
  for i in range(50):
    item = ar.make_item(0, 'mul', 4, i)
    a, b = item.prompt.split(';')[-1][:-1].split('*')
    assert 10 <= int(a) <= 99 and 10 <= int(b) <= 99
    assert item.target == f'{int(a) * int(b):04d};'


def test_multiple_choice_options_are_gold_plus_three_one_digit_corruptions():
  for length in ar.LENGTHS:
    for i in range(20):
      item = ar.make_item(3, 'add', length, i)
      assert len(item.options) == 4 and len(set(item.options)) == 4
      gold = item.options[item.gold]
      assert gold + ';' == item.target
      for j, option in enumerate(item.options):
        if j != item.gold:
          assert sum(x != y for x, y in zip(option, gold)) == 1


def test_eval_set_is_deterministic_and_a_prefix_of_the_large_one():
  small, again, large = ar.eval_items(5), ar.eval_items(5), ar.eval_items(12)
  assert small == again
  ids = {it.item_id: it for it in large}
  assert all(ids[it.item_id] == it for it in small)
  assert len(small) == 5 * 9


def test_eval_set_is_not_the_training_stream():
  """Train draws use another seed namespace: long problems essentially never collide."""
  evals = {it.prompt.split(';')[-1] for it in ar.eval_items(200) if it.length >= 5}
  source = ar.arithmetic_source('decoder', 64, {'targets': 80}, seed=0)
  seen = set()
  for _ in range(20):
    batch = next(source)
    for row in batch['decoder_input_tokens']:
      for problem in ar.decode(row).split(';'):
        seen.add(problem.split('=')[0] + '=')
  assert len(seen) > 1000 and not (evals & seen)


def test_stream_source_is_resumable_and_weights_only_answers():
  source = ar.arithmetic_source('decoder', 4, {'targets': 80}, seed=5)
  first = [next(source) for _ in range(3)]
  state = source.get_state()
  fourth = next(source)
  other = ar.arithmetic_source('decoder', 4, {'targets': 80}, seed=5)
  other.set_state(state)
  np.testing.assert_array_equal(next(other)['decoder_input_tokens'],
                                fourth['decoder_input_tokens'])
  batch = first[0]
  weighted = batch['decoder_target_tokens'][batch['decoder_loss_weights'] > 0]
  assert set(np.unique(weighted)) <= set(ar.DIGIT_IDS) | {ar.TERMINATOR_ID}
  assert np.all(batch['decoder_target_tokens'][batch['decoder_segment_ids'] == 0] == 0)


def test_stream_lengths_are_uniform_over_one_to_eight():
  rng = np.random.default_rng(0)
  lengths = [len(ar.training_example(rng, 2, 0.0, ar.LENGTHS).split(';')[0].split('=')[1])
             for _ in range(4000)]
  counts = np.bincount(lengths, minlength=9)[1:]
  assert counts.min() > 400 and counts.max() < 600


def test_bad_configuration_fails_clearly():
  with pytest.raises(ValueError, match='shorter than the longest'):
    ar.arithmetic_source('decoder', 2, {'targets': 40}, seed=0)
  with pytest.raises(ValueError, match='decoder'):
    ar.arithmetic_source('encoder_decoder', 2, {'targets': 80}, seed=0)


def test_tfds_builder_builds_offline(tmp_path):
  builder = ar.builder('tiny', data_dir=str(tmp_path))
  source = builder.as_data_source(split='eval')
  assert len(source) == 5 * 9
  as_str = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
  built = {as_str(source[i]['item_id']): as_str(source[i]['prompt'])
           for i in range(len(source))}
  assert built == {it.item_id: it.prompt for it in ar.eval_items(5)}
