"""PyTorch -> ONNX export, precision transforms, FP16 audit and TensorRT-acceptability lint."""
