"""The k-shot prompt builder gives exactly k distinct, correct demonstrations that do not
contain the query, in the probe's format, for every k in 0..16 and every task."""
import numpy as np
import pytest

from research.data import arithmetic
from research.emergence import kshot

ITEMS = arithmetic.eval_items(n_per_length=3)  # every L of 'add', and 'mul'


def _parse(prompt, query):
  """(demonstrations as (question, answer), the trailing question): reads the format back."""
  *solved, last = prompt.split(arithmetic.TERMINATOR)
  qlen = len(query.question)
  return [(s[:qlen], s[qlen:]) for s in solved], last


def _correct(task, question, answer):
  sep = '+' if task == 'add' else '*'
  a, b = (arithmetic.value(x) for x in question.split(sep))
  return arithmetic.value(answer) == (a + b if task == 'add' else a * b)


@pytest.mark.parametrize('k', range(kshot.MAX_K + 1))
def test_exactly_k_distinct_demonstrations_without_the_query(k):
  for item in ITEMS:
    query = kshot.query_of(item)
    built = kshot.k_shot_prompt(item.task, k, seed=3, query=query)
    demos, last = _parse(built.prompt, query)
    assert len(demos) == k == len(built.shots)
    assert last == query.question  # the prompt ends with the query, unanswered
    questions = [q for q, _ in demos]
    assert query.question not in questions
    assert len(set(questions)) == k
    for question, answer in demos:
      assert len(answer) == query.length  # the same task and length as the query
      assert _correct(item.task, question, answer), (question, answer)
    assert built.target == item.target
    assert [(p.question, p.answer) for p in built.shots] == demos


def test_the_query_of_an_item_is_its_last_question():
  for item in ITEMS:
    query = kshot.query_of(item)
    assert item.prompt.endswith(query.question)
    assert _correct(item.task, query.question, query.answer)
    assert query.answer + arithmetic.TERMINATOR == item.target


def test_the_probe_format_is_kept():
  # With k = 2 the builder writes what the probe's own 2-shot items look like.
  item = ITEMS[0]
  built = kshot.k_shot_prompt(item.task, 2, 0, kshot.query_of(item))
  assert len(built.prompt) == len(item.prompt)
  assert arithmetic.decode(arithmetic.encode(built.prompt)) == built.prompt


def test_prompts_are_a_function_of_the_seed():
  query = kshot.query_of(ITEMS[5])
  first = kshot.k_shot_prompt('add', 4, 1, query)
  assert kshot.k_shot_prompt('add', 4, 1, query) == first
  assert kshot.k_shot_prompt('add', 4, 2, query).prompt != first.prompt


def test_the_smallest_space_still_gives_sixteen_shots():
  # 1-digit addition has 55 problems; a query that the draws hit often must still be left out.
  for index in range(20):
    query = kshot.query_of(arithmetic.make_item(arithmetic.EVAL_SEED, 'add', 1, index))
    built = kshot.k_shot_prompt('add', 16, index, query)
    questions = [p.question for p in built.shots]
    assert len(set(questions)) == 16 and query.question not in questions


def test_k_shot_items_keep_query_target_and_options():
  moved = kshot.k_shot_items(ITEMS, 5, seed=0)
  for before, after in zip(ITEMS, moved):
    assert (after.item_id, after.target, after.options, after.gold) == (
        before.item_id, before.target, before.options, before.gold)
    assert after.prompt.endswith(kshot.query_of(before).question)
    assert after.prompt.count(arithmetic.TERMINATOR) == 5


@pytest.mark.parametrize('k,task,message', [
    (-1, 'add', 'k must be a non-negative integer, got -1'),
    (2.5, 'add', 'k must be a non-negative integer, got 2.5'),
    (2, 'sub', "unknown task 'sub'"),
    (2, 'mul', "the query is a 'add' problem, not 'mul'"),
])
def test_bad_arguments_name_the_value(k, task, message):
  query = kshot.query_of(ITEMS[0])
  with pytest.raises(ValueError, match=message):
    kshot.k_shot_prompt(task, k, 0, query)


def test_k_shot_curve_scores_every_metric_per_k():
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from research import models  # pylint: disable=g-import-not-at-top
  from tests.emergence import helpers  # pylint: disable=g-import-not-at-top
  config = helpers.TINY  # untrained: the curve's plumbing, not its shape
  params = nn.meta.unbox(models.build(config).init(
      jax.random.PRNGKey(0), decoder_input_tokens=np.ones((1, 8), np.int32))['params'])
  items = arithmetic.eval_items(n_per_length=2, lengths=(1, 2), include_mul=False)
  table = kshot.k_shot_curve(config, params, items, ks=(0, 3))
  assert sorted(set(zip(table.k, table.length))) == [(0, 1), (0, 2), (3, 1), (3, 2)]
  for column in ('exact_match', 'one_minus_ted_over_L', 'answer_logp', 'brier',
                 'mc_grade', 'per_token_accuracy'):
    assert column in table and np.isfinite(table[column]).all(), column
  assert (table.n_items == 2).all()
  # The prompts differ with k, so the teacher-forced scores do.
  by_k = table.set_index(['k', 'length'])['answer_logp']
  assert by_k[(0, 2)] != by_k[(3, 2)]
