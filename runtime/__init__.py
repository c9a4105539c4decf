"""ictal runtime: the torch-free bedside side (EEG sources, features, ONNX scoring, alerts, sinks)."""
__version__ = "0.1.0"
