"""The training engine (see engine.py) and optimizers/schedules by name (optim.py)."""
