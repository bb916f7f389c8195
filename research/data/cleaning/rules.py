"""Document quality rules: each a named predicate with thresholds, Gopher- and C4-style.

A rule measures one number of a document (its word count, the fraction of its lines that are
duplicates, ...) and keeps the document when the number lies within the rule's [min, max].
The defaults are Gopher's (Rae et al. 2021, "Scaling Language Models: Methods, Analysis &
Insights from Training Gopher", appendix A.1.1 "quality filters" and table A1 for the
repetition thresholds) and C4's (Raffel et al. 2020, sec. 2.2):

  word_count           50 <= words <= 100,000                                  Gopher
  mean_word_length     3 <= mean characters per word <= 10                     Gopher
  symbol_ratio         ('#' + ellipses) per word <= 0.1                         Gopher
  bullet_lines         fraction of lines starting with a bullet <= 0.9          Gopher
  ellipsis_lines       fraction of lines ending with an ellipsis <= 0.3         Gopher
  alphabetic_words     fraction of words with an alphabetic character >= 0.8    Gopher
  stop_words           distinct English stop words present >= 2                 Gopher
  duplicate_lines      fraction of lines that repeat an earlier line <= 0.3     Gopher
  duplicate_line_chars fraction of characters in such lines <= 0.2              Gopher
  top_2gram .. top_4gram  characters covered by the most frequent n-gram
                       <= 0.20, 0.18, 0.16                                      Gopher
  dup_5gram .. dup_10gram characters covered by n-grams seen more than once
                       <= 0.15, 0.14, 0.13, 0.12, 0.11, 0.10                    Gopher
  lorem_ipsum          occurrences of 'lorem ipsum' <= 0 (off by default)       C4
  curly_brace          occurrences of '{' <= 0 (off by default: C4 drops code)  C4

Words are whitespace-separated tokens; lines are non-blank lines (blank lines would make
every document with paragraph breaks look repetitive). Every threshold is checked when the
rule set is built: an unknown rule or bound, or a bound outside the rule's range, raises
`RuleError` with one line naming it.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import re
from typing import Callable, Mapping

import gin


class RuleError(ValueError):
  """A rule name, bound or threshold that cannot be used."""


_WORD = re.compile(r'\S+')
_ALPHA = re.compile(r'[^\W\d_]')  # a letter of any script
# Gopher's stop-word list (Rae et al. 2021, A.1.1): "the, be, to, of, and, that, have, with".
GOPHER_STOP_WORDS = frozenset(('the', 'be', 'to', 'of', 'and', 'that', 'have', 'with'))
_BULLETS = ('-', '*', '\u2022', '\u2023', '\u25cf', '\u25e6', '\u2043', '\u2219')
_ELLIPSES = ('...', '\u2026')


class Document:
  """The pieces every rule reads, computed once per document."""

  def __init__(self, text: str):
    self.text = text
    self.words = _WORD.findall(text)
    self.lines = [l.strip() for l in text.splitlines() if l.strip()]


def _word_count(d: Document) -> float:
  return len(d.words)


def _mean_word_length(d: Document) -> float:
  return sum(map(len, d.words)) / len(d.words) if d.words else 0.0


def _symbol_ratio(d: Document) -> float:
  symbols = d.text.count('#') + sum(d.text.count(e) for e in _ELLIPSES)
  return symbols / max(1, len(d.words))


def _line_fraction(d: Document, test: Callable[[str], bool]) -> float:
  return sum(map(test, d.lines)) / len(d.lines) if d.lines else 0.0


def _bullet_lines(d: Document) -> float:
  return _line_fraction(d, lambda l: l.startswith(_BULLETS))


def _ellipsis_lines(d: Document) -> float:
  return _line_fraction(d, lambda l: l.endswith(_ELLIPSES))


def _alphabetic_words(d: Document) -> float:
  if not d.words:
    return 0.0
  return sum(1 for w in d.words if _ALPHA.search(w)) / len(d.words)


def _stop_words(d: Document) -> float:
  return len(GOPHER_STOP_WORDS & {w.lower() for w in d.words})


def _repeated_lines(d: Document) -> tuple[int, int]:
  """(lines that repeat an earlier line, characters in them)."""
  seen, count, chars = set(), 0, 0
  for line in d.lines:
    if line in seen:
      count, chars = count + 1, chars + len(line)
    seen.add(line)
  return count, chars


def _duplicate_lines(d: Document) -> float:
  return _repeated_lines(d)[0] / len(d.lines) if d.lines else 0.0


def _duplicate_line_chars(d: Document) -> float:
  total = sum(map(len, d.lines))
  return _repeated_lines(d)[1] / total if total else 0.0


def _ngrams(words, n):
  return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def _top_ngram(n: int) -> Callable[[Document], float]:
  """Characters of the most frequent n-gram (counted at each occurrence, as Gopher does)
  over the characters of all words."""

  def measure(d: Document) -> float:
    grams = _ngrams(d.words, n)
    total = sum(map(len, d.words))
    if not grams or not total:
      return 0.0
    # The most frequent; among equally frequent ones the longest (then the first in
    # sorted order), so that the measure does not depend on dict order.
    count, chars, _ = max((c, sum(map(len, g)), g) for g, c in collections.Counter(grams).items())
    if count < 2:
      return 0.0
    return count * chars / total
  return measure


def _dup_ngram(n: int) -> Callable[[Document], float]:
  """Characters of words covered by an n-gram that occurs more than once (each word counted
  once even where overlapping duplicated n-grams cover it), over all word characters."""

  def measure(d: Document) -> float:
    grams = _ngrams(d.words, n)
    total = sum(map(len, d.words))
    if not grams or not total:
      return 0.0
    counts = collections.Counter(grams)
    covered = bytearray(len(d.words))
    for i, g in enumerate(grams):
      if counts[g] > 1:
        covered[i:i + n] = b'\x01' * n
    return sum(len(w) for w, c in zip(d.words, covered) if c) / total
  return measure


def _count(needle: str) -> Callable[[Document], float]:
  return lambda d: d.text.lower().count(needle)


@dataclasses.dataclass(frozen=True)
class RuleSpec:
  """A measurement, the range any bound of it may take, and its default bounds."""
  measure: Callable[[Document], float]
  lo: float  # bounds must lie in [lo, hi]
  hi: float
  default: Mapping[str, float]
  on_by_default: bool = True
  what: str = ''


_INF = math.inf
SPECS: dict[str, RuleSpec] = {
    'word_count': RuleSpec(_word_count, 0, _INF, {'min': 50, 'max': 100_000},
                           what='whitespace-separated words'),
    'mean_word_length': RuleSpec(_mean_word_length, 0, _INF, {'min': 3, 'max': 10},
                                 what='mean characters per word'),
    'symbol_ratio': RuleSpec(_symbol_ratio, 0, _INF, {'max': 0.1},
                             what="'#' and ellipses per word"),
    'bullet_lines': RuleSpec(_bullet_lines, 0, 1, {'max': 0.9},
                             what='fraction of lines starting with a bullet'),
    'ellipsis_lines': RuleSpec(_ellipsis_lines, 0, 1, {'max': 0.3},
                               what='fraction of lines ending with an ellipsis'),
    'alphabetic_words': RuleSpec(_alphabetic_words, 0, 1, {'min': 0.8},
                                 what='fraction of words with a letter'),
    'stop_words': RuleSpec(_stop_words, 0, len(GOPHER_STOP_WORDS), {'min': 2},
                           what='distinct Gopher stop words present'),
    'duplicate_lines': RuleSpec(_duplicate_lines, 0, 1, {'max': 0.3},
                                what='fraction of lines repeating an earlier line'),
    'duplicate_line_chars': RuleSpec(_duplicate_line_chars, 0, 1, {'max': 0.2},
                                     what='fraction of characters in repeated lines'),
    'lorem_ipsum': RuleSpec(_count('lorem ipsum'), 0, _INF, {'max': 0}, on_by_default=False,
                            what="occurrences of 'lorem ipsum'"),
    'curly_brace': RuleSpec(_count('{'), 0, _INF, {'max': 0}, on_by_default=False,
                            what="occurrences of '{'"),
}
# Gopher table A1: the most frequent 2/3/4-gram may cover at most 20/18/16% of characters;
# duplicated 5..10-grams at most 15, 14, 13, 12, 11, 10%.
for _n, _t in ((2, 0.20), (3, 0.18), (4, 0.16)):
  SPECS[f'top_{_n}gram'] = RuleSpec(_top_ngram(_n), 0, 1, {'max': _t},
                                    what=f'characters in the most frequent {_n}-gram')
for _n, _t in zip(range(5, 11), (0.15, 0.14, 0.13, 0.12, 0.11, 0.10)):
  SPECS[f'dup_{_n}gram'] = RuleSpec(_dup_ngram(_n), 0, 1, {'max': _t},
                                    what=f'characters in duplicated {_n}-grams')
DEFAULT_RULES = tuple(name for name, s in SPECS.items() if s.on_by_default)


@dataclasses.dataclass(frozen=True)
class Rule:
  """A named predicate: keep the document iff min <= measure(document) <= max."""
  name: str
  min: float = -_INF
  max: float = _INF

  def measure(self, doc: Document) -> float:
    return SPECS[self.name].measure(doc)

  def passes(self, doc: Document) -> bool:
    return self.min <= self.measure(doc) <= self.max


def make_rule(name: str, bounds: Mapping[str, float] | None = None) -> Rule:
  """A rule with its default bounds, overridden by `bounds` ({'min': .., 'max': ..})."""
  if name not in SPECS:
    raise RuleError(f'unknown quality rule {name!r}; known: {", ".join(sorted(SPECS))}')
  spec = SPECS[name]
  merged = dict(spec.default)
  for key, value in dict(bounds or {}).items():
    if key not in ('min', 'max'):
      raise RuleError(f'rule {name!r}: unknown bound {key!r} (use min or max)')
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
      raise RuleError(f'rule {name!r}: {key} must be a number, got {value!r}')
    if not spec.lo <= value <= spec.hi:
      raise RuleError(f'rule {name!r}: {key}={value} is out of range [{spec.lo}, {spec.hi}]')
    merged[key] = float(value)
  rule = Rule(name, merged.get('min', -_INF), merged.get('max', _INF))
  if rule.min > rule.max:
    raise RuleError(f'rule {name!r}: min={rule.min} is above max={rule.max}')
  return rule


@gin.configurable('quality_rules')
def make_rules(rules=DEFAULT_RULES, thresholds: Mapping[str, Mapping[str, float]] | None = None
               ) -> tuple[Rule, ...]:
  """The rule set, in order (a document removed is attributed to the first rule it fails).

  gin: `quality_rules.rules = ['word_count', 'duplicate_lines']` picks rules;
  `quality_rules.thresholds = {'word_count': {'min': 20}}` moves bounds.
  """
  if isinstance(rules, str):
    raise RuleError(f'quality_rules.rules must be a list of names, got {rules!r}')
  names = list(rules)
  for name in names:
    if name not in SPECS:
      raise RuleError(f'unknown quality rule {name!r}; known: {", ".join(sorted(SPECS))}')
  if len(set(names)) != len(names):
    raise RuleError(f'quality rule listed twice in {names}')
  thresholds = dict(thresholds or {})
  for name in thresholds:
    if name not in names:
      what = 'unknown quality rule' if name not in SPECS else 'threshold for a rule not in use:'
      raise RuleError(f'{what} {name!r} in quality_rules.thresholds')
  return tuple(make_rule(n, thresholds.get(n)) for n in names)


def failed_rules(rules, text: str) -> list[str]:
  """Names of the rules `text` fails, in rule order."""
  doc = Document(text)
  return [r.name for r in rules if not r.passes(doc)]
