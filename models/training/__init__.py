"""Training: data, the training loop, calibration, evaluation, and the learned lens finder's training."""
