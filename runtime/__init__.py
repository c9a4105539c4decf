"""ictal runtime: the torch-free bedside side (EEG sources, features, ONNX scoring, alerts, sinks)."""
