"""Training: the loop, EMA, validation, distributed set-up and checkpoints."""
