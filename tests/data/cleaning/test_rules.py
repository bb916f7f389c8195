"""Each quality rule on documents built to pass and to fail it; the rule set's validation;
the decisions on a fixture against a reference table."""
import csv
import os

import pytest

from research.data.cleaning import rules

FIXTURE = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'cleaning')

# 83 words of ordinary prose: passes every default rule.
GOOD = ('The river that runs through the old town has carried boats and timber for three '
        'hundred years. In spring the water rises with melted snow from the mountains, and '
        'the fishermen who live along its banks move their nets to the quieter pools. '
        'Visitors often stop at the stone bridge to watch the current, and children throw '
        'small pieces of bread to the ducks that gather below. Nobody remembers exactly '
        'when the first mill was built, but records mention it with some pride.')


def _rule(name, **bounds):
  return rules.make_rule(name, bounds or None)


def _passes(name, text, **bounds):
  return _rule(name, **bounds).passes(rules.Document(text))


def test_the_good_document_passes_every_default_rule():
  assert rules.failed_rules(rules.make_rules(), GOOD) == []
  assert len(GOOD.split()) == 83


# (rule, a document that fails it while GOOD passes it)
FAILING = {
    'word_count': 'The cat sat on the mat with the dog.',
    'mean_word_length': ' '.join(['a to be of it is'] * 12) + ' the and that',
    'symbol_ratio': GOOD + ' ' + ' '.join(['#tag'] * 12),
    'bullet_lines': '\n'.join(f'- item {w}' for w in GOOD.split()[:40]) + '\nthe and of',
    'ellipsis_lines': '\n'.join(s + ' ...' for s in GOOD.split('. ')),
    'alphabetic_words': GOOD + ' ' + ' '.join(str(1000 + i) for i in range(40)),
    'stop_words': ('Rivers carry boats; timber floats downstream. Spring water rises, melted '
                   'snow feeds mountains. ' * 1) + ' '.join(f'word{i}x' for i in range(50)),
    'duplicate_lines': '\n'.join([GOOD] + ['same line here'] * 4 + ['other line']),
    'duplicate_line_chars': '\n'.join(GOOD.split('. ') + GOOD.split('. ')[:4]),
    'top_2gram': GOOD + (' lorem dolor' * 30),
    'top_3gram': GOOD + (' alpha beta gamma' * 20),
    'top_4gram': GOOD + (' alpha beta gamma delta' * 15),
    'dup_5gram': GOOD + ' ' + ' '.join(GOOD.split()[:20]),
    'dup_6gram': GOOD + ' ' + ' '.join(GOOD.split()[:18]),
    'dup_7gram': GOOD + ' ' + ' '.join(GOOD.split()[:16]),
    'dup_8gram': GOOD + ' ' + ' '.join(GOOD.split()[:14]),
    'dup_9gram': GOOD + ' ' + ' '.join(GOOD.split()[:12]),
    'dup_10gram': GOOD + ' ' + ' '.join(GOOD.split()[:11]),
    'lorem_ipsum': GOOD + ' Lorem ipsum dolor sit amet.',
    'curly_brace': GOOD + ' def f(): return {1: 2}',
}


def test_every_rule_has_a_failing_document():
  assert set(FAILING) == set(rules.SPECS)


@pytest.mark.parametrize('name', sorted(rules.SPECS))
def test_each_rule_passes_the_good_document_and_fails_its_own(name):
  assert _passes(name, GOOD), (name, _rule(name).measure(rules.Document(GOOD)))
  bad = FAILING[name]
  assert not _passes(name, bad), (name, _rule(name).measure(rules.Document(bad)))


def test_measures_on_hand_counted_documents():
  doc = rules.Document('ab abc abcd\nab abc abcd\n\nxyz ...\n')
  m = lambda name: rules.SPECS[name].measure(doc)
  assert m('word_count') == 8
  assert m('mean_word_length') == pytest.approx((2 + 3 + 4) * 2 / 8 + (3 + 3) / 8)
  assert m('symbol_ratio') == pytest.approx(1 / 8)
  assert m('ellipsis_lines') == pytest.approx(1 / 3)  # the blank line is not a line
  assert m('duplicate_lines') == pytest.approx(1 / 3)
  assert m('duplicate_line_chars') == pytest.approx(11 / 29)  # lines of 11, 11, 7
  assert m('alphabetic_words') == pytest.approx(7 / 8)  # '...' has no letter
  # 'ab abc' and 'abc abcd' occur twice each; the longer counts: 2 * (3 + 4) of 24.
  assert m('top_2gram') == pytest.approx(14 / 24)
  # The 3-grams 'ab abc abcd' repeat: both copies of those 3 words, 18 of 24 characters.
  assert rules._dup_ngram(3)(doc) == pytest.approx(18 / 24)


def test_bounds_move_the_decision():
  text = 'The cat sat on the mat with the dog.'
  assert not _passes('word_count', text)
  assert _passes('word_count', text, min=9)
  assert not _passes('word_count', text, min=10)
  assert not _passes('word_count', text, min=1, max=8)


@pytest.mark.parametrize('kwargs, message', [
    ({'rules': ['word_count', 'no_such_rule']}, "unknown quality rule 'no_such_rule'"),
    ({'thresholds': {'word_count': {'min': -1}}}, "word_count': min=-1 is out of range"),
    ({'thresholds': {'duplicate_lines': {'max': 1.5}}}, 'max=1.5 is out of range [0, 1]'),
    ({'thresholds': {'word_count': {'least': 3}}}, "unknown bound 'least'"),
    ({'thresholds': {'word_count': {'min': 10, 'max': 5}}}, 'min=10.0 is above max=5'),
    ({'thresholds': {'word_count': {'min': 'ten'}}}, "min must be a number, got 'ten'"),
    ({'thresholds': {'typo_rule': {'min': 1}}}, "unknown quality rule 'typo_rule'"),
    ({'rules': ['word_count'], 'thresholds': {'stop_words': {'min': 1}}},
     "rule not in use: 'stop_words'"),
    ({'rules': 'word_count'}, 'must be a list of names'),
])
def test_bad_rule_sets_fail_with_one_line_naming_the_value(kwargs, message):
  with pytest.raises(rules.RuleError) as e:
    rules.make_rules(**kwargs)
  # gin appends the configurable's name on later lines; the command line prints the first.
  assert message in str(e.value).splitlines()[0]


def test_decisions_on_the_fixture_equal_the_reference_table():
  """Each fixture file was written to fail one rule (or none); the table says which."""
  with open(os.path.join(FIXTURE, 'quality_decisions.csv')) as f:
    table = {row['file']: row['decision'] for row in csv.DictReader(f)}
  assert len(table) >= 12
  found = {}
  for name in sorted(os.listdir(os.path.join(FIXTURE, 'quality'))):
    with open(os.path.join(FIXTURE, 'quality', name), encoding='utf-8') as f:
      failed = rules.failed_rules(rules.make_rules(), f.read())
    found[name] = failed[0] if failed else 'kept'
  assert found == table
