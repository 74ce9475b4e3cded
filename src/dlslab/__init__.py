"""dlslab: twelve classic deep-learning studies, end to end."""

__version__ = "0.1.0"
