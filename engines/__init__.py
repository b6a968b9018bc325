"""Runners behind one interface (PyTorch, ONNX Runtime, TensorRT), engine building, manifests, tiling."""
