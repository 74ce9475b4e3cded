"""The training engine (see engine.py) and optimizers/schedules by name (optim.py).

Importing it turns on flush-to-zero for denormal floats. Denormals appear in training (the
softmax tail's gradients, Adam's moments of weights whose inputs are always zero), and x86
CPUs handle them about 100x slower than normal floats: with them, an Adam step on an MLP gets
2-3x slower after the first epoch. Threads inherit this mode when they are created, so it is
set here, before PyTorch starts its thread pool. `fit` sets it again for the calling thread.
"""

import torch

torch.set_flush_denormal(True)
