"""emotion_lab: text emotion classification experiments on PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
