"""Values that mean nothing at or below zero fail where they are defined, before any work:
gin and Python callers of the trainer get the same one-line error as the command line."""
import pytest

from research import cli
from research import models
from research.train import schedules
from research.train import trainer


def _tiny():
  return models.TransformerConfig(family='decoder', vocab_size=64, d_model=16, num_layers=1,
                                  num_heads=1, d_ff=32, max_length=16)


@pytest.mark.parametrize('steps,batch,message', [
    (-5, 4, r'train_steps \(TRAIN_STEPS\) must be positive, got -5'),
    (0, 4, r'train_steps \(TRAIN_STEPS\) must be positive, got 0'),
    (2, 0, r'batch_size \(BATCH_SIZE\) must be positive, got 0'),
])
def test_the_trainer_refuses_a_step_count_or_batch_of_zero_or_less(tmp_path, steps, batch,
                                                                   message):
  workdir = tmp_path / 'run'
  with pytest.raises(cli.UsageError, match=message):
    trainer.train(str(workdir), model_config=_tiny(), train_steps=steps, batch_size=batch,
                  feature_lengths={'targets': 16})
  assert not workdir.exists()


@pytest.mark.parametrize('peak', [0.0, -1e-3])
def test_a_learning_rate_of_zero_or_less_is_refused(peak):
  with pytest.raises(cli.UsageError, match=r'make_schedule.peak \(the learning rate\) must '
                                           f'be positive, got {peak}'):
    schedules.make_schedule(100, peak=peak)
  assert float(schedules.make_schedule(100, peak=1e-3, warmup_steps=0)(50)) > 0
