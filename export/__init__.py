"""ictal export: torch → ONNX with the feature spec in metadata, parity check, int8."""
