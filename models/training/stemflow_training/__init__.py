"""Stemflow prior training: STFT, synthetic sources, Glow flow (JAX + ONNX export)."""
