"""Stage 4, backends: float and quantized ONNX Runtime models, quantization recipes, NPU constraints, device (external) embeddings, and what each costs."""
