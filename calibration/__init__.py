"""INT8 calibration: calibration sets, Q/DQ quantization for TensorRT and CPUs, mixed precision."""
