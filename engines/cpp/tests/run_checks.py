"""mirnet_run end to end on OpenVINO engines (the run.* CTest cases; run from the repository root).

    python engines/cpp/tests/run_checks.py artifacts --mirnet-run build/cpp/mirnet_run --work build/cpp/run-checks
    python engines/cpp/tests/run_checks.py parity|int8_tensorrt|raw|bad_input --mirnet-run ... --work ... [--engines fp32,...]
    python engines/cpp/tests/run_checks.py family_artifacts|families --mirnet-run ... --work ...

artifacts  makes what the others use, with the toolkit's library calls that its verbs make: the denoise
           demo weights exported to FP32 and FP16 ONNX, INT8 Q/DQ for both targets (tensorrt, cpu: as
           `mirnet quantize --no-budget`, a small calibration set), one OpenVINO engine per file OpenVINO accepts (engines/<name>.ovblob +
           manifest), a held-out photograph degraded for the task (photo.pfm float, photo.png 8-bit)
           and the PyTorch FP32 output on it (reference.npy).
family_artifacts  the other families (FAMILY_MODELS) in families/: each exported (the export stage's
           library call, unverified: `families` compares the engine with PyTorch itself), compiled for
           OpenVINO FP32 and run by PyTorch on an odd-sized input.
parity     mirnet_run on photo.pfm per engine (float in, float out) against the PyTorch FP32 reference,
           judged with the thresholds `mirnet parity` applies per precision; prints the PSNR per precision.
int8_tensorrt  the TensorRT-target INT8 file: where this OpenVINO miscomputes its layout (the probe of
           engines/openvino_int8_check.py), `mirnet build --backend openvino` refuses it naming the
           cause and writes nothing; where it computes it, parity as above.
raw        three frames through --raw WxH (stdin/stdout) equal, byte for byte, the file mode's outputs.
families   mirnet_run on MPRNet (size multiple 8, from the engine manifest's ONNX metadata), MIRNet-v2
           and MIRNet-v2's 6-channel dual-pixel defocus model (a .npy of the two views) against PyTorch
           FP32 with `mirnet parity`'s FP32 thresholds; a PNG or --raw for the 6-channel model is refused.
bad_input  corrupt/truncated images, a grey+alpha and a 16-bit PNG, a folder with a bad file, another
           backend's manifest, another precision or ONNX, a truncated raw frame: clear errors, the next
           file still restored, no half-written output.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

ENGINES = ("fp32", "fp16", "int8-tensorrt", "int8-cpu")
RESOLUTION = (256, 256)  # small: the whole chain stays within a minute or two on 2 cores
CALIBRATION_COUNT, CALIBRATION_CROP = 8, 64
#: The other families through mirnet_run: name -> (task, family whose demo weights to export; None: the
#: `small` MIRNet-v2 defocus model with random weights, seed 0: there are no dual-pixel demo weights).
FAMILY_MODELS = {"mprnet-deblur": ("deblur", "mprnet"), "mirnetv2-enhance": ("enhance", "mirnetv2"),
                 "mirnetv2-defocus": ("defocus", None)}
#: Width x height, odd: MPRNet pads 75x61 to 80x64, MIRNet-v2 to 76x64, so a wrong multiple changes the output.
FAMILY_SIZE = (75, 61)


def write_pfm(path: Path, hwc: np.ndarray) -> None:
    """PFM colour, little-endian, rows bottom-up (the format's order)."""
    height, width, _ = hwc.shape
    path.write_bytes(f"PF\n{width} {height}\n-1.0\n".encode() + np.ascontiguousarray(hwc[::-1], "<f4").tobytes())


def read_pfm(path: Path) -> np.ndarray:
    """An RGB PFM (as mirnet_run writes it) as HxWx3 float32."""
    data = path.read_bytes()
    magic, size, scale, pixels = data.split(b"\n", 3)
    width, height = map(int, size.split())
    assert magic == b"PF", f"{path} is not an RGB PFM"
    dtype = "<f4" if float(scale) < 0 else ">f4"
    return np.frombuffer(pixels, dtype, count=width * height * 3).reshape(height, width, 3)[::-1].astype(np.float32)


def artifacts(work: Path) -> None:
    import cv2

    from bench.parity import parity_cases
    from calibration.dataset import build_calibration_set
    from calibration.quantize import quantize_onnx
    from engines.openvino_build import build_openvino_engine
    from engines.runners import TorchRunner
    from export.graph import DeploymentGraph
    from export.network import load_network
    from export.onnx_export import export_onnx
    from export.precision import convert_to_fp16
    from mirnet_ref.weights import default_weights

    onnx, engines = work / "onnx", work / "engines"
    onnx.mkdir(parents=True, exist_ok=True)
    engines.mkdir(parents=True, exist_ok=True)
    # The verbs' own library calls in this one process (`mirnet export` would also verify every export
    # against PyTorch at several shapes, which tests/test_export.py covers; parity below judges these).
    network, spec = load_network(default_weights("denoise"), "denoise")
    fp32 = export_onnx(network, spec, onnx / "denoise.fp32.onnx")
    convert_to_fp16(fp32, onnx / "denoise.fp16.onnx")
    build_calibration_set("denoise", work / "calibration.npz", count=CALIBRATION_COUNT, crop=CALIBRATION_CROP)
    for target in ("tensorrt", "cpu"):  # as `mirnet quantize --no-budget`
        quantize_onnx(fp32, onnx / f"denoise.int8-{target}.onnx", target=target,
                      calibration=work / "calibration.npz", cache_dir=work / "ranges-cache")
    for name in ENGINES:
        if name != "int8-tensorrt" or not tensorrt_target_refused():
            build_openvino_engine(onnx / f"denoise.{name}.onnx", engines / f"{name}.ovblob")

    case = parity_cases("denoise", [RESOLUTION], 1, sr_scale=1)[0]
    with TorchRunner(DeploymentGraph(network, spec), name="pytorch-fp32") as torch_runner:
        reference = np.asarray(torch_runner.run(case.input))
    photo = case.input[0].transpose(1, 2, 0)
    write_pfm(work / "photo.pfm", photo)
    cv2.imwrite(str(work / "photo.png"), np.round(photo[..., ::-1] * 255).astype(np.uint8))
    np.save(work / "reference.npy", reference)
    np.save(work / "clean.npy", case.clean)
    (work / "case.json").write_text(json.dumps({"name": case.name, "resolution": case.resolution}))
    print(f"artifacts in {work}: {', '.join(ENGINES)} engines, {case.name} at {case.resolution}")


def family_artifacts(folder: Path) -> None:
    """Per FAMILY_MODELS entry: <name>.onnx, its OpenVINO FP32 engine, the input (<name>.pfm, or <name>.npy
    H x W x 6 for the defocus model), the clean image and PyTorch's output; and one RGB photo.png."""
    import cv2
    import torch

    from bench.parity import parity_cases
    from engines.openvino_build import build_openvino_engine
    from engines.runners import TorchRunner
    from export.graph import DeploymentGraph
    from export.network import load_network
    from export.onnx_export import export_onnx
    from mirnet_ref.checkpoint import save_checkpoint
    from mirnet_ref.datasets import builtin_images, image_at_resolution
    from mirnet_ref.mirnetv2 import DEFOCUS_TASK, MIRNETV2_PRESETS, MIRNetV2
    from mirnet_ref.weights import default_weights

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    small = MIRNETV2_PRESETS["small"]
    random_defocus = save_checkpoint(MIRNetV2(inp_channels=6, n_feat=small.n_feat, n_MRB=small.n_MRB,
                                              task=DEFOCUS_TASK), folder / "mirnetv2-defocus.pth")
    width, height = FAMILY_SIZE
    for name, (task, family) in FAMILY_MODELS.items():
        checkpoint = default_weights(task, family) if family else random_defocus
        network, spec = load_network(checkpoint, task)
        onnx_path = export_onnx(network, spec, folder / f"{name}.onnx")
        build_openvino_engine(onnx_path, folder / f"{name}.ovblob")
        if family:
            case = parity_cases(task, [FAMILY_SIZE], 1, sr_scale=1)[0]
            batch, clean = case.input, case.clean
            write_pfm(folder / f"{name}.pfm", batch[0].transpose(1, 2, 0))
        else:  # two views of a held-out photograph, 2 pixels apart, as a dual-pixel sensor sees a defocused edge
            clean = image_at_resolution(builtin_images("heldout")[0][1], width, height)
            views = np.concatenate([clean, np.roll(clean, 2, axis=1)], axis=2)
            np.save(folder / f"{name}.npy", views)
            cv2.imwrite(str(folder / "photo.png"), np.round(clean[..., ::-1] * 255).astype(np.uint8))
            batch = np.ascontiguousarray(views.transpose(2, 0, 1)[None])
        with TorchRunner(DeploymentGraph(network, spec), name="pytorch-fp32") as torch_runner:
            np.save(folder / f"{name}.reference.npy", np.asarray(torch_runner.run(batch)))
        np.save(folder / f"{name}.clean.npy", clean)


def run_tool(tool: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(tool), *args], input=stdin, capture_output=True, check=False)


def engine(work: Path, name: str) -> str:
    return str(work / "engines" / f"{name}.ovblob.json")


def parity(work: Path, tool: Path, names: list[str]) -> None:
    from bench.parity import THRESHOLDS, ParityCase, compare, format_table

    # mirnet_run writes images, whose values are clamped to [0, 1]; so is the reference here.
    reference = np.clip(np.load(work / "reference.npy"), 0.0, 1.0)
    info = json.loads((work / "case.json").read_text())
    case = ParityCase(info["name"], info["resolution"], np.empty(0), np.load(work / "clean.npy"))
    failed = []
    for name in names:
        output = work / f"out-{name}.pfm"
        result = run_tool(tool, "--engine", engine(work, name), "-i", str(work / "photo.pfm"), "-o", str(output),
                          "--bit-depth", "32")
        assert result.returncode == 0, result.stderr.decode()
        restored = read_pfm(output).transpose(2, 0, 1)[None]
        family = name.split("-")[0]
        limit = THRESHOLDS[family]["max_abs_error"]
        row = compare([reference], [restored], [case], bool(np.allclose(restored, reference, rtol=0, atol=limit)),
                      family)
        print(f"mirnet_run {name}: PSNR vs PyTorch FP32 {row.psnr_vs_reference_db:.1f} dB")
        print(format_table([row], family))
        if not row.passed:
            failed.append(name)
    assert not failed, f"parity failed for {', '.join(failed)}"


def tensorrt_target_refused() -> bool:
    """Whether this OpenVINO miscomputes the TensorRT-target INT8 layout here (so the toolkit refuses it)."""
    from engines.openvino_int8_check import TENSORRT_TARGET, miscomputed_probes

    return bool(miscomputed_probes(TENSORRT_TARGET, "CPU"))


def int8_tensorrt(work: Path, tool: Path) -> None:
    if not tensorrt_target_refused():
        parity(work, tool, ["int8-tensorrt"])
        return
    refused = work / "refused-engines"
    shutil.rmtree(refused, ignore_errors=True)
    onnx_path = work / "onnx" / "denoise.int8-tensorrt.onnx"
    result = subprocess.run([str(Path(sys.executable).with_name("mirnet")), "build", str(onnx_path),
                             "--backend", "openvino", "--cache-dir", str(refused)], capture_output=True, check=False)
    expect(result, 1, "miscomputes the TensorRT-target INT8 layout", "ReduceMax over the channels -> Q/DQ -> INT8 Conv",
           "mirnet quantize --target cpu", "--backend ort")
    assert not refused.exists() or not any(refused.iterdir()), "a refused build left files"
    print(f"int8-tensorrt on OpenVINO: refused, nothing written: {result.stderr.decode().strip()}")


def raw(work: Path, tool: Path) -> None:
    import cv2

    photo = cv2.imread(str(work / "photo.png"))[..., ::-1]  # RGB
    frames = [photo, np.ascontiguousarray(photo[::-1]), np.ascontiguousarray(photo[:, ::-1])]
    expected = []
    for index, frame in enumerate(frames):
        path = work / f"frame{index}.png"
        cv2.imwrite(str(path), np.ascontiguousarray(frame[..., ::-1]))
        out = work / f"frame{index}.out.png"
        result = run_tool(tool, "--engine", engine(work, "fp32"), "-i", str(path), "-o", str(out))
        assert result.returncode == 0, result.stderr.decode()
        expected.append(cv2.imread(str(out))[..., ::-1])
    height, width, _ = photo.shape
    stream = b"".join(frame.tobytes() for frame in frames)
    result = run_tool(tool, "--engine", engine(work, "fp32"), "--raw", f"{width}x{height}", stdin=stream)
    assert result.returncode == 0, result.stderr.decode()
    restored = np.frombuffer(result.stdout, np.uint8)
    assert restored.size == len(frames) * height * width * 3, f"{restored.size} bytes on stdout"
    for index, (got, want) in enumerate(zip(restored.reshape(len(frames), height, width, 3), expected, strict=True)):
        differing = int((got != want).sum())
        assert differing == 0, f"raw frame {index}: {differing} bytes differ from the file mode"
    print(f"raw mode: {len(frames)} frames of {width}x{height} equal the file mode byte for byte")


def expect(result: subprocess.CompletedProcess, code: int, *phrases: str) -> None:
    stderr = result.stderr.decode()
    assert result.returncode == code, f"exit {result.returncode}, expected {code}: {stderr}"
    for phrase in phrases:
        assert phrase in stderr, f"{phrase!r} not in: {stderr}"
    assert "Traceback" not in stderr and "terminate called" not in stderr, stderr


def bad_input(work: Path, tool: Path) -> None:
    import cv2

    bad = work / "bad"
    shutil.rmtree(bad, ignore_errors=True)
    (bad / "in").mkdir(parents=True)
    good = (work / "photo.png").read_bytes()
    (bad / "in" / "a_truncated.png").write_bytes(good[: len(good) // 2])
    (bad / "in" / "b_corrupt.png").write_bytes(good[:40] + bytes(64) + good[104:])
    (bad / "in" / "c_not_an_image.png").write_bytes(b"hello")
    shutil.copy(work / "photo.png", bad / "in" / "d_good.png")
    photo = cv2.imread(str(work / "photo.png"))
    cv2.imwrite(str(bad / "in" / "e_grey.png"), cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(bad / "in" / "f_alpha.png"), np.dstack([photo, np.full(photo.shape[:2], 128, np.uint8)]))
    cv2.imwrite(str(bad / "in" / "g_16bit.png"), photo.astype(np.uint16) * 257)
    out = bad / "out"
    result = run_tool(tool, "--engine", engine(work, "fp32"), "-i", str(bad / "in"), "-o", str(out))
    expect(result, 1, "skipped", "a_truncated.png", "b_corrupt.png: corrupt or truncated PNG",
           "c_not_an_image.png: not a recognised image")
    written = sorted(p.name for p in out.iterdir())
    assert written == ["d_good.png", "e_grey.png", "f_alpha.png", "g_16bit.png"], written  # nothing half-written
    assert cv2.imread(str(out / "g_16bit.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16  # 16 bits kept
    for name in ("e_grey.png", "f_alpha.png"):  # grey replicated to RGB, alpha dropped (as mirnet_ref.images)
        assert cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED).shape[2] == 3, name

    ort_manifest = bad / "ort.onnx.json"
    ort_manifest.write_text(json.dumps({"backend": "onnxruntime", "backend_version": "1.20", "precision": "fp32"}))
    expect(run_tool(tool, "--engine", str(ort_manifest), "--check"), 3, "describes a 'onnxruntime' engine")
    expect(run_tool(tool, "--engine", engine(work, "fp16"), "--precision", "int8", "--check"), 3,
           "precision: the engine is fp16, expected int8")
    expect(run_tool(tool, "--engine", engine(work, "fp32"), "--onnx-sha256", "0" * 64, "--check"), 3,
           "ONNX: the engine was built from ONNX sha256")
    foreign = json.loads(Path(engine(work, "fp32")).read_text()) | {"device": "NPU", "backend_version": "2020.1-1"}
    (bad / "foreign.ovblob.json").write_text(json.dumps(foreign))
    expect(run_tool(tool, "--engine", str(bad / "foreign.ovblob.json"), "--check"), 3,
           "compiled by OpenVINO 2020.1-1", "device NPU, which OpenVINO does not see here")
    expect(run_tool(tool, "--engine", engine(work, "fp32"), "--raw", "64x64", stdin=bytes(64 * 64 * 3 + 100)), 1,
           "raw frame 1 is truncated: 100 of 12288 bytes")
    expect(run_tool(tool, "--engine", engine(work, "fp32"), "-i", str(bad / "in"), "-o",
                    str(bad / "in" / "d_good.png")), 2, "must be a folder too")
    print("bad input: every case refused with its cause, the good files restored, nothing half-written")


def families(work: Path, tool: Path) -> None:
    from bench.parity import ParityCase, compare, format_table, judge

    folder = work / "families"
    failed = []
    for name in FAMILY_MODELS:
        manifest = json.loads((folder / f"{name}.ovblob.json").read_text())
        metadata_multiple = {"mprnet-deblur": 8}.get(name, 4)
        assert manifest["size_multiple"] == metadata_multiple, f"{name}: manifest {manifest['size_multiple']}"
        source = folder / f"{name}.npy" if (folder / f"{name}.npy").exists() else folder / f"{name}.pfm"
        output = folder / f"out-{name}.pfm"
        result = run_tool(tool, "--engine", str(folder / f"{name}.ovblob.json"), "-i", str(source), "-o",
                          str(output), "--bit-depth", "32")
        assert result.returncode == 0, result.stderr.decode()
        restored = read_pfm(output).transpose(2, 0, 1)[None]
        reference = np.clip(np.load(folder / f"{name}.reference.npy"), 0.0, 1.0)
        case = ParityCase(name, f"{FAMILY_SIZE[0]}x{FAMILY_SIZE[1]}", np.empty(0), np.load(folder / f"{name}.clean.npy"))
        row = judge(compare([reference], [restored], [case], True, "fp32"), "fp32")
        print(f"mirnet_run {name} ({source.suffix} in, size multiple {manifest['size_multiple']}): "
              f"PSNR vs PyTorch FP32 {row.psnr_vs_reference_db:.1f} dB")
        print(format_table([row], "fp32"))
        if not row.passed:
            failed.append(name)
    assert not failed, f"parity failed for {', '.join(failed)}"

    # The 6-channel model takes no RGB image, nor RGB24 frames: refused by name, nothing written.
    defocus = str(folder / "mirnetv2-defocus.ovblob.json")
    out = folder / "refused"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    png = folder / "photo.png"
    expect(run_tool(tool, "--engine", defocus, "-i", str(png), "-o", str(out / "photo.png")), 1,
           "skipped", "takes 6 input channels, an image holds 3 (RGB)", "H x W x 6 .npy array")
    assert not any(out.iterdir()), "a refused input left a file"
    expect(run_tool(tool, "--engine", defocus, "--raw", "8x8", stdin=b""), 2, "--raw feeds RGB24 frames")
    print("6-channel model: a PNG and --raw refused with the cause, nothing written")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=["artifacts", "family_artifacts", "parity", "int8_tensorrt", "raw",
                                          "bad_input", "families"])
    parser.add_argument("--mirnet-run", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--engines", default="fp32,fp16,int8-cpu", help="parity: which engines to check")
    args = parser.parse_args()
    if args.check == "artifacts":
        artifacts(args.work)
    elif args.check == "family_artifacts":
        family_artifacts(args.work / "families")
    elif args.check == "parity":
        parity(args.work, args.mirnet_run, args.engines.split(","))
    else:
        checks = {"int8_tensorrt": int8_tensorrt, "raw": raw, "bad_input": bad_input, "families": families}
        checks[args.check](args.work, args.mirnet_run)


if __name__ == "__main__":
    main()
