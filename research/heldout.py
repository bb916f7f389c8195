"""Per-sequence losses on the fixed held-out set: the file, the loss's standard error, and
the paired difference between two runs.

A run's final evaluation keeps, for each held-out sequence i (a packed row of the validation
split), its summed loss l_i and its number of target tokens w_i. The eval loss is the
token-weighted ratio R = sum(l) / sum(w), so its standard error over sequences is that of a
ratio estimator, linearized (Cochran 1977, Sampling Techniques, 3rd ed., ch. 6, without the
finite-population correction):

    SE(R)^2 = sum_i (l_i - R w_i)^2 / (n (n - 1) mean(w)^2).

Two runs evaluated on the same sequences differ by D = sum(l_a - l_b) / sum(w): the same
estimator on the per-sequence differences. Pairing removes what every model shares (a file
of tables is easy for all of them), which is most of the spread between sequences.

The SE counts sequences as independent draws. Sequences cut from one file are alike, so it
understates how much the loss would move on a different held-out set of as many files; it
is the right yardstick for comparing runs on this one set.

Nothing here imports jax or the trainer, so readers of run directories can use it.
"""
import dataclasses
import io
import math
import os

import numpy as np

from research import runs


class HeldOutMismatch(ValueError):
  """Two runs' final evaluations did not see the same held-out sequences."""


def ratio_mean_se(loss_sums, tokens) -> tuple[float, float]:
  """(sum(loss_sums) / sum(tokens), its standard error over sequences); SE is NaN for
  fewer than two sequences."""
  loss_sums = np.asarray(loss_sums, np.float64)
  tokens = np.asarray(tokens, np.float64)
  n = len(tokens)
  if n == 0 or tokens.sum() <= 0:
    return math.nan, math.nan
  mean = loss_sums.sum() / tokens.sum()
  if n < 2:
    return float(mean), math.nan
  residuals = (loss_sums - mean * tokens) / tokens.mean()
  return float(mean), float(np.sqrt(np.sum(residuals ** 2) / (n * (n - 1))))


@dataclasses.dataclass(frozen=True)
class HeldOutLosses:
  """Summed loss, target-token count and a fingerprint of the target tokens (which
  tells whether two runs saw the same sequences) of each held-out sequence, in evaluation
  order."""
  loss_sum: np.ndarray
  tokens: np.ndarray
  fingerprint: np.ndarray

  @classmethod
  def from_rows(cls, loss_sum, tokens, fingerprint) -> 'HeldOutLosses':
    """Keeps the rows with target tokens: the empty rows that pad a split's last batch
    depend on the batch size, the sequences do not."""
    loss_sum = np.asarray(loss_sum, np.float64).reshape(-1)
    tokens = np.asarray(tokens, np.float64).reshape(-1)
    keep = tokens > 0
    return cls(loss_sum[keep], tokens[keep],
               np.asarray(fingerprint, np.uint32).reshape(-1)[keep])

  def __len__(self) -> int:
    return len(self.tokens)

  def mean_and_se(self) -> tuple[float, float]:
    return ratio_mean_se(self.loss_sum, self.tokens)

  def save(self, path: str) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, loss_sum=self.loss_sum, tokens=self.tokens,
             fingerprint=self.fingerprint)
    runs.write_bytes_atomic(path, buffer.getvalue())

  @classmethod
  def load(cls, path: str) -> 'HeldOutLosses':
    try:
      with np.load(path) as data:
        return cls(np.asarray(data['loss_sum'], np.float64),
                   np.asarray(data['tokens'], np.float64),
                   np.asarray(data['fingerprint'], np.uint32))
    except (OSError, ValueError, KeyError) as e:
      raise runs.RunDirError(f'{os.path.basename(path)} unreadable: {e}') from e


def read_final(run_dir: str) -> HeldOutLosses:
  """The per-sequence losses of a run's final evaluation."""
  path = os.path.join(run_dir, runs.FINAL_EVAL_LOSSES)
  if not os.path.exists(path):
    raise runs.RunDirError(f'no {runs.FINAL_EVAL_LOSSES}')
  return HeldOutLosses.load(path)


def paired_difference(a: HeldOutLosses, b: HeldOutLosses) -> tuple[float, float]:
  """(loss of a - loss of b, its standard error) over the sequences both saw."""
  if len(a) != len(b):
    raise HeldOutMismatch(f'different held-out sets: {len(a)} and {len(b)} sequences')
  same = (a.tokens == b.tokens) & (a.fingerprint == b.fingerprint)
  if not same.all():
    raise HeldOutMismatch(f'different held-out sets: sequence {int(np.argmin(same))} (of '
                          f'{len(a)}) differs')
  return ratio_mean_se(a.loss_sum - b.loss_sum, a.tokens)
