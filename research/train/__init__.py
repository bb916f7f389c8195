"""Optimizers, schedules, train/eval steps, checkpoints, metrics and the training loop."""
