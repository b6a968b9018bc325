"""The FP16 audit as an ONNX graph: ONNX Runtime keeps its rounding, it rounds, it finds overflows.

The tiny graphs go through the real FP16 conversion (`convert_to_fp16`), so the emulation is
tested on what the converter writes; agreement with the PyTorch emulation on a small MIRNet is
in `test_fp16_graph.py`, beside the FP16 ONNX it is derived from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from export.fp16_emulation import (
    CAST_CHAIN_ELIMINATION,
    INTRA_OP_SPINNING,
    audit_fp16_graph,
    emulation_model,
    emulation_session,
)
from export.precision import convert_to_fp16
from mirnet_deploy.errors import UserError

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16


def _image_model(nodes: list[onnx.NodeProto], channels: int,
                 initializers: list[TensorProto]) -> onnx.ModelProto:
    """An FP32 image model input [1, channels, H, W] -> output [1, ?, H, W]."""
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", FLOAT, [1, channels, "height", "width"])],
        [helper.make_tensor_value_info("output", FLOAT, None)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _conv1x1(weight: list[list[float]]) -> onnx.ModelProto:
    """A bias-free 1x1 conv with [out][in] weights."""
    array = np.array(weight, np.float32)[:, :, None, None]
    return _image_model([helper.make_node("Conv", ["input", "w"], ["output"], name="conv")], array.shape[1],
                        [numpy_helper.from_array(array, "w")])


def _pair(model: onnx.ModelProto, folder: Path) -> tuple[Path, Path]:
    """The model as FP32 and FP16 files (the FP16 one made by the project's converter)."""
    fp32 = folder / "tiny.fp32.onnx"
    onnx.save(model, fp32)
    return fp32, convert_to_fp16(model, folder / "tiny.fp16.onnx")


def test_onnx_runtime_keeps_the_rounding_cast_pairs() -> None:
    """If an ONNX Runtime version folds FLOAT -> FLOAT16 -> FLOAT, 1 + 2^-12 survives and this fails."""
    nodes = [helper.make_node("Relu", ["input"], ["r"]),
             helper.make_node("Cast", ["r"], ["h"], to=FLOAT16),
             helper.make_node("Cast", ["h"], ["f"], to=FLOAT),
             helper.make_node("Relu", ["f"], ["output"])]
    session = emulation_session(_image_model(nodes, 1, []))
    values = np.array([1 + 2**-12, 7e4, 1e-8, 0.1], np.float32).reshape(1, 1, 1, 4)
    (output,) = session.run(None, {"input": values})
    np.testing.assert_array_equal(output.ravel(), [1.0, np.inf, 0.0, np.float32(np.float16(0.1))])


def test_sessions_run_without_arena_and_without_spinning_threads() -> None:
    """No arena (the peak memory at 1080p) and sleeping idle threads (CPU time on shared cores)."""
    options = emulation_session(_conv1x1([[1.0]])).get_session_options()
    assert not options.enable_cpu_mem_arena
    assert options.get_session_config_entry(INTRA_OP_SPINNING) == "0"
    assert options.get_session_config_entry(CAST_CHAIN_ELIMINATION) == "0"


def test_weights_and_activations_are_rounded(tmp_path: Path) -> None:
    """1.0004 - 1.0 is 4e-4 in FP32; the FP16 weight 1.0004 is 1.0, so the emulated conv gives 0."""
    fp32, fp16 = _pair(_conv1x1([[1.0004, -1.0]]), tmp_path)
    report = audit_fp16_graph(fp32, fp16, [torch.ones(1, 2, 4, 4)])
    assert report.max_abs_error == pytest.approx(4e-4, rel=1e-3)
    assert report.nonfinite_outputs == {"output": 0}
    assert report.rounded_tensors >= 1
    half = audit_fp16_graph(fp32, fp16, [torch.full((1, 2, 4, 4), 0.5)])
    assert half.psnr_db == pytest.approx(-10 * np.log10((2e-4) ** 2), abs=0.05)  # 0.5 * 4e-4 lost
    assert "method graph" in half.format_table()


def test_overflow_is_counted_in_the_output(tmp_path: Path) -> None:
    """3 x 30000 = 90000 > 65504: inf in FP16 storage, though FP32 computes it exactly."""
    fp32, fp16 = _pair(_conv1x1([[3e4] * 3]), tmp_path)
    report = audit_fp16_graph(fp32, fp16, [torch.ones(1, 3, 8, 8)])
    assert report.nonfinite_outputs == {"output": 64}
    assert report.output_nonfinite == 64
    assert "64 inf/NaN in 'output'" in report.format_table()


def test_kept_fp32_pool_sums_in_fp32(tmp_path: Path) -> None:
    """256x256 ones sum to 65536 > 65504, but the pool is kept FP32 (the default keep list): no
    overflow. The FP16 Add after it rounds 1 + 2^-12 to 1 (float16's spacing at 1 is 2^-10)."""
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["mean"]),
             helper.make_node("Add", ["mean", "eps"], ["output"])]
    model = _image_model(nodes, 1, [numpy_helper.from_array(np.array(2**-12, np.float32), "eps")])
    fp32, fp16 = _pair(model, tmp_path)
    report = audit_fp16_graph(fp32, fp16, [torch.ones(1, 1, 256, 256)])
    assert report.output_nonfinite == 0
    assert report.max_abs_error == pytest.approx(2**-12)
    assert "GlobalAveragePool" in report.fp32_kept


def test_an_fp32_model_is_refused() -> None:
    with pytest.raises(UserError, match="starts from the FP16 ONNX"):
        emulation_model(_conv1x1([[1.0]]))


class _Attention(torch.nn.Module):
    """Conv, a global-pool channel attention and a residual: the ops MIRNet's FP16 numerics hinge on."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.prelu = torch.nn.PReLU()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.squeeze = torch.nn.Conv2d(8, 8, 1)
        self.out = torch.nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.prelu(self.conv(x))
        return x + self.out(features * torch.sigmoid(self.squeeze(self.pool(features))))


def test_agrees_with_the_pytorch_emulation(tmp_path: Path) -> None:
    """The same module audited both ways on the held-out photographs: the same PSNR vs FP32 per image
    (the small MIRNet and the official presets are compared in the slow test and the README)."""
    from export.fp16_audit import audit_at_resolutions
    from export.fp16_emulation import audit_graph_at_resolutions

    module = _Attention().eval()
    fp32 = tmp_path / "attention.fp32.onnx"
    torch.onnx.export(module, (torch.rand(1, 3, 16, 16),), fp32, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {2: "h", 3: "w"}}, dynamo=False)
    fp16 = convert_to_fp16(fp32, tmp_path / "attention.fp16.onnx")
    (graph,) = audit_graph_at_resolutions(fp32, fp16, [(48, 32)]).values()
    (eager,) = audit_at_resolutions(module, [(48, 32)], size_multiple=1).values()
    assert graph.output_nonfinite == eager.output_nonfinite == 0
    assert 50 < graph.psnr_db < float("inf")
    np.testing.assert_allclose(graph.psnr_per_image, eager.psnr_per_image, atol=0.05)


@pytest.mark.slow
def test_both_methods_of_the_command_agree_on_the_demo_model() -> None:
    """`mirnet audit-fp16 --method graph` and `--method pytorch` on the demo denoise MIRNet at 256x256
    (measured 2026-11-27: 78.31 / 78.92 dB against 78.32 / 78.93 dB)."""
    import json

    from click.testing import CliRunner

    from mirnet_deploy.cli import main

    reports = {}
    for method in ("graph", "pytorch"):
        result = CliRunner().invoke(main, ["audit-fp16", "--task", "denoise", "--res", "256", "--json",
                                           "--method", method])
        assert result.exit_code == 0, result.output
        (reports[method],) = json.loads(result.output).values()
        assert reports[method]["method"] == method
        assert reports[method]["output_nonfinite"] == 0
    np.testing.assert_allclose(reports["graph"]["psnr_per_image"], reports["pytorch"]["psnr_per_image"],
                               atol=0.05)
    assert reports["graph"]["psnr_db"] > 70
