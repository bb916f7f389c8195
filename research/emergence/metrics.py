"""Every metric of the probe, as numpy functions of one cached model output (`cache.py`).

The cache holds raw model outputs per eval item; these functions turn them into per-item
scores. They are deterministic numpy (no reductions whose order depends on threads), so
recomputing from the same cache is bit-identical.

Teacher-forced (one pass over prompt + target; target = L answer digits + terminator):
  logp          log p(target token) at each target position
  correct       argmax == target at each position
  brier         token Brier score sum_v (p_v - 1[v = target])^2 = sum p^2 - 2 p_target + 1
  seq_prob      prod of p over the target (answer digits and terminator)
Greedy decode (temperature 0, stop at the terminator, at most L + 1 tokens):
  exact_match   the decoded answer digits equal the gold ones and the terminator follows
  ted           Levenshtein distance over token ids between the decoded answer (tokens
                before the terminator) and the gold answer digits
Multiple choice (lm-evaluation-harness `acc`, and Brier over the softmax of the options'
summed log-likelihoods, as in BIG-bench's multiple_choice_grade / Brier):
  mc_grade, mc_brier
"""
from __future__ import annotations

import numpy as np


def levenshtein(a, b) -> int:
  """Edit distance (insert, delete, substitute; unit costs) between two id sequences."""
  a, b = list(a), list(b)
  previous = list(range(len(b) + 1))
  for i, x in enumerate(a, 1):
    current = [i]
    for j, y in enumerate(b, 1):
      current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
    previous = current
  return previous[-1]


def strip_at_terminator(tokens, terminator: int) -> tuple[list[int], bool]:
  """(tokens before the first terminator, whether a terminator was produced)."""
  tokens = [int(t) for t in tokens]
  if terminator in tokens:
    return tokens[:tokens.index(terminator)], True
  return tokens, False


def decode_scores(generated, gold_answer, terminator: int) -> tuple[int, int]:
  """(exact_match, ted) of one greedy continuation against the gold answer digits.

  exact_match needs the gold digits and then the terminator, so ted == 0 iff exact_match.
  """
  answer, terminated = strip_at_terminator(generated, terminator)
  gold = [int(t) for t in gold_answer]
  exact = int(terminated and answer == gold)
  return exact, levenshtein(answer, gold)


def teacher_forced_scores(logp_target_nt, sum_p2_nt, argmax_nt, target_nt, mask_nt
                          ) -> dict[str, np.ndarray]:
  """Per-item, per-position scores from the cached teacher-forced outputs.

  Shapes [items, positions]; `mask` is 1 on the L + 1 target positions of each item
  (positions beyond are padding). Padding positions are reported as 0 (logp, brier) and
  True (correct), so products and sums over positions need no mask.
  """
  mask = mask_nt.astype(bool)
  logp = np.where(mask, logp_target_nt, 0.0)
  p = np.exp(logp)
  brier = np.where(mask, sum_p2_nt - 2.0 * p + 1.0, 0.0)
  correct = np.where(mask, argmax_nt == target_nt, True)
  return {'logp': logp, 'correct': correct, 'brier': brier}


def item_metrics(cache: dict) -> dict[str, np.ndarray]:
  """Per-item metrics (one value per eval item) from a cache dict (see cache.py)."""
  lengths = cache['length'].astype(np.int64)
  tf = teacher_forced_scores(cache['logp_target'], cache['sum_p2'], cache['argmax'],
                             cache['target'], cache['target_mask'])
  n, width = cache['target'].shape
  digit_mask = np.arange(width)[None, :] < lengths[:, None]       # answer digits only
  target_mask = cache['target_mask'].astype(bool)                  # digits + terminator
  digit_logp = np.where(digit_mask, tf['logp'], 0.0)
  digit_correct = np.where(digit_mask, tf['correct'], False)
  out = {
      # log p per answer digit (the continuous metric the analytic model is fitted to)
      'answer_logp': digit_logp.sum(1) / lengths,
      'answer_token_loss': -digit_logp.sum(1) / lengths,
      'per_token_accuracy': digit_correct.sum(1) / lengths,
      'argmax_all_correct': np.all(np.where(target_mask, tf['correct'], True), 1)
                            .astype(np.float64),
      'brier': np.where(target_mask, tf['brier'], 0.0).sum(1) / target_mask.sum(1),
      'seq_logp': tf['logp'].sum(1),
      'seq_prob': np.exp(tf['logp'].sum(1)),
  }
  exact = np.zeros(n)
  ted = np.zeros(n)
  terminator = int(cache['terminator'])
  for i in range(n):
    gold = cache['target'][i, :lengths[i]]
    exact[i], ted[i] = decode_scores(cache['generated'][i, :lengths[i] + 1], gold,
                                     terminator)
  out.update(exact_match=exact, ted=ted, one_minus_ted_over_L=1.0 - ted / lengths)
  if 'mc_logp' in cache and cache['mc_logp'].size:
    has_mc = cache['mc_gold'] >= 0
    grade, brier = mc_scores(cache['mc_logp'], cache['mc_gold'])
    out['mc_grade'] = np.where(has_mc, grade, np.nan)
    out['mc_brier'] = np.where(has_mc, brier, np.nan)
  return out


def mc_scores(option_logp_no, gold_n) -> tuple[np.ndarray, np.ndarray]:
  """(grade, Brier) per item from the options' summed log-likelihoods [items, options].

  grade: 1 if the gold option has the highest log-likelihood (ties: the first, as argmax);
  Brier: sum_j (softmax_j - 1[j = gold])^2 over the options.
  """
  logp = np.asarray(option_logp_no, np.float64)
  gold = np.maximum(np.asarray(gold_n), 0)
  grade = (np.argmax(logp, 1) == gold).astype(np.float64)
  shifted = logp - logp.max(1, keepdims=True)
  probs = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
  onehot = np.eye(logp.shape[1])[gold]
  return grade, ((probs - onehot) ** 2).sum(1)


# Metrics the probe reports, with the direction in which they improve (for sharpness).
HIGHER_IS_BETTER = {
    'exact_match': True, 'one_minus_ted_over_L': True, 'ted': False, 'answer_logp': True,
    'answer_token_loss': False, 'per_token_accuracy': True, 'argmax_all_correct': True,
    'brier': False, 'seq_prob': True, 'seq_logp': True, 'mc_grade': True, 'mc_brier': False,
}
