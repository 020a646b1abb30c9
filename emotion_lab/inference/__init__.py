"""Applying a trained run without Lightning: the predictor, its torch and ONNX backends, and
the one path from scores through temperatures to thresholds."""

from emotion_lab.inference.backends import predict_probs
from emotion_lab.inference.predictor import EmotionClassifier, load_onnx

__all__ = ["EmotionClassifier", "load_onnx", "predict_probs"]
