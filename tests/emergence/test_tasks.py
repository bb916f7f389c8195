"""The arithmetic tasks: format, determinism, padding, corruptions, the stream source."""
import numpy as np
import pytest

from research.data import arithmetic as ar


def test_vocabulary_is_small_and_round_trips():
  assert ar.VOCAB_SIZE == 16
  assert ar.decode(ar.encode('12+34=46;')) == '12+34=46;'


def test_numbers_are_written_least_significant_digit_first():
  assert ar.digits(1234, 6) == '432100' and ar.value('432100') == 1234
  problem = ar.make_problem(np.random.default_rng(0), 'add', 3)
  a, b = problem.question.split('+')
  assert len(a) == len(b) == ar.WIDTH
  assert ar.value(a) + ar.value(b) == ar.value(problem.answer)


@pytest.mark.parametrize('length', ar.LENGTHS)
def test_addition_is_correct_and_fixed_length(length):
  for i in range(50):
    item = ar.make_item(0, 'add', length, i)
    question = item.prompt.split(';')[-1]
    a, b = question.split('+')
    assert len(a) == len(b) == ar.WIDTH and max(ar.value(a), ar.value(b)) < 10**length
    assert item.target == ar.digits(ar.value(a) + ar.value(b), length) + ';'
    assert len(item.target_ids) == length + 1
    for shot in item.prompt.split(';')[:-1]:
      x, y = shot[:ar.WIDTH], shot[ar.WIDTH + 1:2 * ar.WIDTH + 1]
      ans = shot[2 * ar.WIDTH + 1:]
      assert shot[ar.WIDTH] == '+'
      assert len(ans) == length and ar.value(ans) == ar.value(x) + ar.value(y)


def test_multiplication_is_two_by_two_digits_padded_to_four():
  for i in range(50):
    item = ar.make_item(0, 'mul', 4, i)
    a, b = item.prompt.split(';')[-1].split('*')
    assert 10 <= ar.value(a) <= 99 and 10 <= ar.value(b) <= 99
    assert item.target == ar.digits(ar.value(a) * ar.value(b), 4) + ';'


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


def test_addition_tokens_are_the_eval_items_tokens():
  """The large eval's fast path builds exactly the items' prompt + target ids, any range."""
  for length, start, stop in ((1, 0, 30), (4, 190, 230), (8, 5, 9)):
    tokens = ar.addition_tokens(length, start, stop)
    want = [ar.make_item(ar.EVAL_SEED, 'add', length, i) for i in range(start, stop)]
    assert tokens.tolist() == [it.prompt_ids + it.target_ids for it in want]
  assert ar.addition_tokens(3, 0, 4, seed=11, k_shots=1).tolist() == [
      ar.make_item(11, 'add', 3, i, k_shots=1).prompt_ids
      + ar.make_item(11, 'add', 3, i, k_shots=1).target_ids for i in range(4)]
  with pytest.raises(ValueError, match='must be in 1..8'):
    ar.addition_tokens(9, 0, 1)
  with pytest.raises(ValueError, match='start <= stop'):
    ar.addition_tokens(2, 5, 4)
  assert ar.addition_tokens(2, 5, 5).shape[0] == 0


def test_eval_set_is_not_the_training_stream():
  """Train draws use another seed namespace: long problems essentially never collide."""
  evals = {it.prompt.split(';')[-1] for it in ar.eval_items(200) if it.length >= 5}
  source = ar.arithmetic_source('decoder', 64, {'targets': 80}, seed=0)
  seen = set()
  for _ in range(20):
    batch = next(source)
    for row in batch['decoder_input_tokens']:
      for problem in ar.decode(row).split(';'):
        seen.add(problem[:2 * ar.WIDTH + 1])
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
  # Exactly the answers: per row, the tokens after each question up to its terminator.
  rng = np.random.default_rng([ar.TRAIN_SEED_NAMESPACE, 5, 0, 0])
  ids, answers = ar.training_tokens(rng, 2, 0.1, ar.LENGTHS)
  np.testing.assert_array_equal(batch['decoder_input_tokens'][0, :len(ids) - 1], ids[:-1])
  np.testing.assert_array_equal(batch['decoder_loss_weights'][0, :len(ids) - 1], answers[1:])
  text = ar.decode(ids)
  assert ''.join(c for c, m in zip(text, answers) if m) == ''.join(
      problem[len(problem.split('+')[0]) * 2 + 1:] + ';' if '+' in problem else
      problem[5:] + ';' for problem in text.split(';')[:-1])
  assert np.all(batch['decoder_target_tokens'][batch['decoder_segment_ids'] == 0] == 0)


def test_stream_lengths_are_uniform_over_one_to_eight():
  rng = np.random.default_rng(0)
  lengths = [len(ar.training_example(rng, 2, 0.0, ar.LENGTHS).split(';')[0]) - 2 * ar.WIDTH - 1
             for _ in range(4000)]
  counts = np.bincount(lengths, minlength=9)[1:]
  assert counts.min() > 400 and counts.max() < 600


def test_short_operand_problems():
  rng = np.random.default_rng(3)
  short_digits, first_short = [], []
  for length in ar.LENGTHS:
    for _ in range(300):
      p = ar.short_operand_problem(rng, length)
      a, b = (ar.value(x) for x in p.question.split('+'))
      assert len(p.answer) == length and ar.value(p.answer) == a + b < 10**length
      assert min(a, b) < 10**(length - 1)
      short_digits.append((length, len(str(min(a, b))) if min(a, b) else 0))
      first_short.append(a < b)
  # The short operand's digit count is uniform over 0..L-1 (here: at L = 8, 300 draws), and
  # it comes first or second with equal odds.
  counts = np.bincount([n for length, n in short_digits if length == 8], minlength=8)
  assert counts.min() > 15 and counts.max() < 60
  assert 0.45 < np.mean(first_short) < 0.55
  # In a stream, a fraction f of the additions are such problems (a regular problem's
  # second operand is below 10^(L-1) with some probability p0: f + (1 - f) p0 in all), and
  # f = 0 leaves the stream exactly as before (the same draws), so old sweeps reproduce.
  def queries(fraction, n=2000):
    rng = np.random.default_rng(11)
    return [ar.training_example(rng, 2, 0.0, ar.LENGTHS, fraction).split(';')[2]
            for _ in range(n)]

  def short_fraction(fraction):  # query = a (8 digits) + '+' + b (8 digits) + answer (L)
    shorts = []
    for q in queries(fraction):
      length = len(q) - 2 * ar.WIDTH - 1
      a, b = q[:ar.WIDTH], q[ar.WIDTH + 1:2 * ar.WIDTH + 1]
      shorts.append(min(ar.value(a), ar.value(b)) < 10**(length - 1))
    return np.mean(shorts)

  rng = np.random.default_rng(11)
  assert queries(0.0) == [ar.training_example(rng, 2, 0.0, ar.LENGTHS).split(';')[2]
                          for _ in range(2000)]
  p0 = short_fraction(0.0)
  assert short_fraction(1.0) == 1.0 and 0.05 < p0 < 0.7
  assert abs(short_fraction(0.25) - (0.25 + 0.75 * p0)) < 0.04
  with pytest.raises(ValueError, match='short_operand_fraction'):
    ar.ArithmeticSource(2, 80, 0, short_operand_fraction=1.5)


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
