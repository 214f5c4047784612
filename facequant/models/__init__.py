"""Stage 1, the model: find, inspect, normalize and verify ONNX embedding models."""
