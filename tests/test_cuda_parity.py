"""`bench.gpu.cuda_parity`, the comparison behind gpu-check's torch-cuda-parity step, run on the CPU: the
same model, photographs, autocast and PSNR code, with the CPU standing in for the GPU."""

from __future__ import annotations

import math

from bench.gpu import cuda_parity
from mirnet_ref.weights import default_weights


def test_parity_rows_compare_each_precision_with_the_fp32_reference():
    rows = cuda_parity(default_weights("denoise"), "denoise", (64, 48), images=1, device="cpu")
    assert [row["precision"] for row in rows] == ["fp32", "fp16", "bf16"]
    assert all(row["resolution"] == "64x48" and row["images"] == 1 for row in rows)
    by_precision = {row["precision"]: row["psnr_vs_cpu_fp32_db"] for row in rows}
    assert math.isinf(by_precision["fp32"])  # the same FP32 computation on the same device: identical
    for reduced in ("fp16", "bf16"):  # autocast changes the numbers, but not beyond recognition
        assert 20 < by_precision[reduced] < 200, by_precision
    assert by_precision["fp16"] > by_precision["bf16"]  # 10 mantissa bits against 7
