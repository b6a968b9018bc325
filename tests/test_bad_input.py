"""The bad-input battery: every verb that reads a file, on a corpus of bad files the tests generate.

Every case asserts a clear error (our message, naming the file) or a correct result, no
traceback from the CLI, the exit status, nothing written half-way, and the inputs untouched.
The corpus is in `bad_inputs.py`; the property-based half is `test_bad_input_properties.py`.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_inputs import (
    bad_checkpoints,
    bad_images,
    bad_onnx_files,
    cli,
    edited_manifests,
    good_images,
    hashes,
    leftovers,
    scale_model,
)

from calibration.dataset import CalibrationSet, build_calibration_set, manifest_path
from mirnet_deploy.errors import CheckpointError, ImageError, UserError
from mirnet_ref.checkpoint import load_model, save_checkpoint
from mirnet_ref.images import read_image
from mirnet_ref.presets import build_preset


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    return folder


@pytest.fixture(scope="module")
def images(corpus: Path) -> tuple[Path, dict, dict]:
    """One folder holding every bad image and every awkward good one."""
    folder = corpus / "images"
    return folder, bad_images(folder), good_images(folder)


@pytest.fixture(scope="module")
def scale_onnx(corpus: Path) -> Path:
    path = corpus / "scale.onnx"
    path.write_bytes(scale_model().SerializeToString())
    return path


def test_read_image_refuses_every_bad_file_and_reads_every_awkward_one(images):
    folder, bad, good = images
    for name, word in bad.items():
        with pytest.raises(ImageError) as caught:
            read_image(folder / name)
        assert name in str(caught.value), str(caught.value)
        assert word in str(caught.value), (name, str(caught.value))
    for name, expected in good.items():
        loaded = read_image(folder / name)
        assert (loaded.pixels.shape, loaded.bit_depth) == (expected["shape"], expected["bit_depth"]), name
        assert loaded.pixels.dtype == np.float32
        assert 0 <= loaded.pixels.min() <= loaded.pixels.max() <= 1


def test_infer_names_every_bad_file_restores_the_rest_and_touches_no_input(images, scale_onnx, tmp_path):
    folder, bad, good = images
    before = hashes(folder)
    out = tmp_path / "out"
    code, output = cli("infer", "-i", str(folder), "-o", str(out), "--model", str(scale_onnx), "--json")
    summary = json.loads(output[output.index("{"):])
    assert code == 1
    assert {Path(row["input"]).name for row in summary["failed"]} == set(bad)
    assert {Path(row["input"]).name for row in summary["restored"]} == set(good)
    for row in summary["failed"]:
        assert Path(row["input"]).name in row["error"]
        assert not row["error"].startswith("unexpected")
    for row in summary["restored"]:  # the model halves the image: a correct result, at the input's depth
        source, written = read_image(row["input"]), read_image(row["output"])
        assert written.bit_depth == source.bit_depth
        error = np.abs(written.pixels - source.pixels * 0.5)
        if Path(row["input"]).suffix in (".jpg", ".webp"):  # lossy formats: close, not exact
            assert error.mean() <= 0.02, row["input"]
        else:
            assert error.max() <= 1.01 / (255 if source.bit_depth == 8 else 65535), row["input"]
    written = sorted(Path(row["output"]).name for row in summary["restored"])
    assert sorted(p.name for p in out.iterdir()) == written
    assert not leftovers(out)
    assert hashes(folder) == before


def test_infer_refuses_a_large_image_by_flag_before_decoding(images, scale_onnx, tmp_path):
    folder, _, _ = images
    code, output = cli("infer", "-i", str(folder / "rgb16.png"), "-o", str(tmp_path / "out"), "--model",
                       str(scale_onnx), "--max-pixels", "40")
    assert code == 1
    assert "declares 6x8 pixels (48), more than the limit of 40 pixels" in output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_calibrate_names_a_bad_image_in_its_folder_and_writes_nothing(images, tmp_path):
    folder, bad, _ = images
    for name in ("empty.png", "bomb.png", "truncated.jpg"):
        single = tmp_path / name.replace(".", "_")
        single.mkdir()
        shutil.copy(folder / name, single / name)
        code, output = cli("calibrate", "--task", "denoise", "--images", str(single), "--count", "2",
                           "--crop", "16", "-o", str(tmp_path / "out" / "set.npz"))
        assert code == 1, output
        assert name in output, output
        assert bad[name] in output, output
        assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def checkpoints(corpus: Path) -> tuple[Path, dict, Path]:
    torch.manual_seed(0)
    good = save_checkpoint(build_preset("small"), corpus / "good.pth")
    marker = corpus / "code_ran"
    folder = corpus / "checkpoints"
    return folder, bad_checkpoints(folder, good, marker), marker


VERBS_READING_CHECKPOINTS = {
    "info": lambda path, out: ["info", str(path)],
    "export": lambda path, out: ["export", "--checkpoint", str(path), "--output", str(out / "m.onnx")],
    "infer": lambda path, out: ["infer", "-i", str(path), "-o", str(out), "--checkpoint", str(path)],
    "eval": lambda path, out: ["eval", "--task", "denoise", "--checkpoint", str(path)],
    "audit-fp16": lambda path, out: ["audit-fp16", "--checkpoint", str(path), "--res", "16"],
}


@pytest.mark.parametrize("verb", sorted(VERBS_READING_CHECKPOINTS))
def test_bad_checkpoints_get_one_sentence_and_run_no_code(checkpoints, verb, tmp_path):
    folder, bad, marker = checkpoints
    before = hashes(folder)
    for name, phrase in bad.items():
        out = tmp_path / name
        code, output = cli(*VERBS_READING_CHECKPOINTS[verb](folder / name, out))
        assert code == 1, (name, output)
        assert name in output, output
        assert phrase in output, (name, output)
        assert "In PyTorch 2.6" not in output  # one sentence of ours, not PyTorch's paragraph
        assert not out.exists() or not any(out.iterdir()), name
    assert not marker.exists(), "the code-carrying pickle ran"
    assert hashes(folder) == before


def test_checkpoint_reader_raises_only_checkpoint_errors(checkpoints):
    folder, bad, _ = checkpoints
    for name in bad:
        with pytest.raises(CheckpointError, match=name):
            load_model(folder / name)


@pytest.fixture(scope="module")
def onnx_files(corpus: Path) -> tuple[Path, dict]:
    folder = corpus / "onnx"
    return folder, bad_onnx_files(folder)


UNREADABLE_ONNX = ("empty.onnx", "random.onnx", "truncated.onnx", "text.onnx")
VERBS_READING_ONNX = {
    "lint": lambda path, out: ["lint", str(path)],
    "infer": lambda path, out: ["infer", "-i", str(path.parent.parent / "images" / "rgb16.png"),
                                "-o", str(out), "--model", str(path)],
    "build": lambda path, out: ["build", str(path), "--backend", "ort", "--cache-dir", str(out)],
    "parity": lambda path, out: ["parity", "--onnx", str(path), "--res", "16"],
    "quantize": lambda path, out: ["quantize", "--onnx", str(path), "--target", "cpu", "--no-budget",
                                   "--task", "denoise", "--cache-dir", str(out / "cache"), "-o",
                                   str(out / "q.onnx")],
}


@pytest.mark.parametrize("verb", ["lint", "infer", "build", "parity", "quantize"])
def test_bad_onnx_files_get_a_clear_error_from_every_verb(images, onnx_files, verb, tmp_path):
    folder, bad = onnx_files
    before = hashes(folder)
    # Files that parse but are not image models matter to the verbs that run or build them.
    cases = bad if verb in ("infer", "build") else {n: w for n, w in bad.items() if n in UNREADABLE_ONNX}
    for name, phrase in cases.items():
        out = tmp_path / name
        code, output = cli(*VERBS_READING_ONNX[verb](folder / name, out))
        if verb == "build" and name not in UNREADABLE_ONNX:  # any ONNX graph builds on ONNX Runtime
            assert code == 0, output
            continue
        assert code == 1, (name, output)
        assert name in output, output
        assert phrase in output, (name, output)
        assert not leftovers(tmp_path)
    assert hashes(folder) == before


def test_quantize_refuses_a_model_it_cannot_quantize_before_any_calibration_work(onnx_files, tmp_path,
                                                                                 monkeypatch):
    """With --task and no --calib, the task's default set (32 crops) would be built first, under the
    working folder: nothing may be built for a file that is no FP32 image model."""
    folder, _ = onnx_files
    fp16 = tmp_path / "scale.fp16.onnx"
    fp16.write_bytes(scale_model(precision="fp16").SerializeToString())
    monkeypatch.chdir(tmp_path)
    cases = {folder / "empty.onnx": "holds no graph", folder / "random.onnx": "is not a readable ONNX model",
             folder / "rank3.onnx": "takes 'input' (float, Nx3xH): quantization calibrates a model with one "
                                    "float32 image input",
             fp16: "is fp16: quantization starts from the FP32 export"}
    for path, phrase in cases.items():
        for search in ([], ["--no-budget"]):
            code, output = cli("quantize", "--onnx", str(path), "--target", "cpu", "--task", "denoise",
                               *search, "-o", str(tmp_path / "q.onnx"))
            assert code == 1, output
            assert len(output.splitlines()) == 1, output
            assert str(path) in output
            assert phrase in output, output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scale.fp16.onnx"]


def test_mirnet_bench_refuses_a_model_it_cannot_quantize_before_its_calibration_set(onnx_files, tmp_path):
    from bench.models import Artifacts, resolve_model

    folder, _ = onnx_files
    with pytest.raises(UserError, match="holds no graph"):
        resolve_model(str(folder / "empty.onnx"))
    rank3 = Artifacts(resolve_model(str(folder / "rank3.onnx")), tmp_path / "bench", log=lambda _: None)
    with pytest.raises(UserError, match="quantization calibrates a model with one float32 image input"):
        rank3.for_run("ort", "int8", (16, 16), 1)
    assert not list((tmp_path / "bench").glob("calibration*"))


def test_an_onnx_model_with_another_input_name_restores_correctly(images, tmp_path):
    folder, _, _ = images
    model = tmp_path / "named_x.onnx"
    model.write_bytes(scale_model(input_name="x").SerializeToString())
    code, output = cli("infer", "-i", str(folder / "rgb16.png"), "-o", str(tmp_path / "out"), "--model",
                       str(model))
    assert code == 0, output
    restored = read_image(tmp_path / "out" / "rgb16_denoise.png")
    assert np.abs(restored.pixels - read_image(folder / "rgb16.png").pixels * 0.5).max() <= 1.01 / 65535


@pytest.fixture(scope="module")
def ort_engine(scale_onnx: Path, corpus: Path) -> Path:
    code, output = cli("build", str(scale_onnx), "--backend", "ort", "--cache-dir", str(corpus / "engines"))
    assert code == 0, output
    return next((corpus / "engines").glob("*.ort.onnx"))


def test_hand_edited_manifests_are_refused_with_the_reason(images, ort_engine, tmp_path):
    folder, _, _ = images
    sidecar = ort_engine.with_name(ort_engine.name + ".json")
    original = sidecar.read_bytes()
    try:
        for name, (payload, phrase) in edited_manifests(json.loads(original)).items():
            sidecar.write_bytes(payload)
            out = tmp_path / name
            code, output = cli("infer", "-i", str(folder / "rgb16.png"), "-o", str(out), "--model",
                               str(ort_engine))
            assert code == 1, (name, output)
            assert phrase in output, (name, output)
            assert not out.exists() or not any(out.iterdir()), name
            assert sidecar.read_bytes() == payload  # the reader never rewrites what it refused
    finally:
        sidecar.write_bytes(original)


@pytest.fixture(scope="module")
def calibration_set(corpus: Path) -> Path:
    path = corpus / "calibration" / "set.npz"
    build_calibration_set("denoise", path, count=2, crop=16)
    return path


def _damaged_sets(good: Path, folder: Path) -> dict[str, str]:
    """Damaged copies of a calibration set (each .npz with a .json beside it) -> phrase of the error."""
    folder.mkdir(parents=True, exist_ok=True)
    data, meta = good.read_bytes(), json.loads(manifest_path(good).read_text())
    cases = {
        "empty": (b"", json.dumps(meta), "cannot be read"),
        "random": (np.random.default_rng(0).bytes(len(data)), json.dumps(meta), "cannot be read"),
        "truncated": (data[: len(data) // 2], json.dumps(meta), "cannot be read"),
        "manifest_not_json": (data, "{not json", "manifest"),
        "manifest_missing_crops": (data, json.dumps({k: v for k, v in meta.items() if k != "crops"}),
                                   "manifest"),
        "manifest_counts_more": (data, json.dumps({**meta, "count": 5}), "samples [2, 3, 4] are missing"),
    }
    for name, (payload, manifest, _) in cases.items():
        (folder / f"{name}.npz").write_bytes(payload)
        (folder / f"{name}.json").write_text(manifest)
    nan = folder / "nan_sample.npz"
    with np.load(good) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["input_00001"][0, 0, 0] = np.nan
    np.savez(nan, **arrays)
    shutil.copy(manifest_path(good), manifest_path(nan))
    (folder / "no_manifest.npz").write_bytes(data)
    return ({f"{name}.npz": phrase for name, (_, _, phrase) in cases.items()}
            | {"nan_sample.npz": "not a finite", "no_manifest.npz": "has no manifest"})


def test_damaged_calibration_sets_are_refused(calibration_set, scale_onnx, tmp_path):
    folder = tmp_path / "sets"
    damaged = _damaged_sets(calibration_set, folder)
    before = hashes(folder)
    for name, phrase in damaged.items():
        with pytest.raises(UserError, match=re.escape(phrase)), CalibrationSet(folder / name) as calib:
            list(calib.inputs())
    code, output = cli("quantize", "--onnx", str(scale_onnx), "--target", "cpu", "--no-budget", "--calib",
                       str(folder / "truncated.npz"), "-o", str(tmp_path / "q.onnx"))
    assert code == 1
    assert "truncated.npz" in output
    assert "cannot be read" in output
    assert not (tmp_path / "q.onnx").exists()
    assert hashes(folder) == before


def test_build_refuses_a_bad_calibration_set_before_the_export(calibration_set, tmp_path):
    """The chain exports first (a minute on the official models); a --calib that cannot serve is refused
    before: a damaged set, and a set of another task."""
    no_manifest = tmp_path / "no_manifest.npz"
    shutil.copy(calibration_set, no_manifest)
    other_task = "was built for 'denoise' inputs, but the model is a 'enhance' model"
    for task, calib, phrase in (("denoise", no_manifest, "has no manifest"),
                                ("enhance", calibration_set, other_task)):
        artifacts = tmp_path / f"artifacts-{task}"
        code, output = cli("build", "--task", task, "--precision", "int8", "--backend", "ort", "--calib",
                           str(calib), "--artifacts", str(artifacts))
        assert code == 1, output
        assert len(output.splitlines()) == 1, output
        assert phrase in output, output
        assert not (artifacts / "onnx").exists()


def test_build_auto_names_a_model_it_cannot_time_on_an_image(onnx_files, tmp_path):
    """`auto` on a CPU times both runtimes on an image; a model without an NCHW input cannot be timed so:
    the error says that, and how to build it anyway (the explicit backends build any ONNX graph)."""
    folder, _ = onnx_files
    code, output = cli("build", str(folder / "rank3.onnx"), "--cache-dir", str(tmp_path / "engines"))
    assert code == 1, output
    assert output.splitlines() == [
        f"Error: {folder / 'rank3.onnx'} takes 'input' of shape (-1, 3, -1) (-1 = any), not an NCHW batch "
        "of images, and `auto` times ONNX Runtime and OpenVINO on an image to choose between them: pass "
        "--backend ort or openvino to build it as it is."]


def test_eval_names_an_image_too_small_to_score(images, tmp_path):
    folder, _, _ = images
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(folder / "grey.png", data / "grey.png")  # 6x5: below SSIM's 11x11 window
    code, output = cli("eval", "--task", "denoise", "--data", str(data), "--no-baselines")
    assert code == 1, output
    assert "Image grey: SSIM needs images of at least 11x11 pixels" in output


def test_mirnet_bench_refuses_an_engine_its_manifest_says_is_of_another_runtime(ort_engine, tmp_path):
    """An ONNX Runtime engine whose manifest was edited to say OpenVINO (which would read the .onnx and
    time something else under the engine's name)."""
    from bench.models import resolve_engine

    engine = tmp_path / ort_engine.name
    shutil.copy(ort_engine, engine)
    manifest = json.loads(ort_engine.with_name(ort_engine.name + ".json").read_text())
    engine.with_name(engine.name + ".json").write_text(json.dumps({**manifest, "backend": "openvino"}))
    with pytest.raises(UserError, match=r"names the runtime 'openvino', whose engines end in \.ovblob"):
        resolve_engine(engine)
    assert resolve_engine(ort_engine).backend == "ort"


#: Each verb that writes a named output -> its arguments (OUT: where that output goes), the option the error
#: names, and whether OUT is a folder.
VERBS_WRITING = {
    "export": (["export", "--task", "denoise", "-o", "OUT"], "--output", False),
    "quantize": (["quantize", "--onnx", "SCALE", "--target", "cpu", "--no-budget", "--calib", "CALIB",
                  "-o", "OUT"], "--output", False),
    "quantize-cache": (["quantize", "--onnx", "SCALE", "--target", "cpu", "--calib", "CALIB", "-o", "q.onnx",
                        "--cache-dir", "OUT"], "--cache-dir", True),
    "calibrate": (["calibrate", "--task", "denoise", "--count", "1", "--crop", "16", "-o", "OUT.npz"],
                  "--output", False),
    "infer": (["infer", "-i", "IMAGE", "-o", "OUT", "--task", "denoise", "--backend", "ort"], "--output",
              True),
    "build": (["build", "SCALE", "--backend", "ort", "--cache-dir", "OUT"], "--cache-dir", True),
    "build-task": (["build", "--task", "denoise", "--precision", "int8", "--artifacts", "OUT"], "--artifacts",
                   True),
}


@pytest.mark.parametrize("verb", sorted(VERBS_WRITING))
def test_an_output_that_cannot_be_written_is_refused_before_any_work(verb, images, scale_onnx,
                                                                     calibration_set, tmp_path, monkeypatch):
    """/proc takes no new file, a file cannot hold a folder: one line of error, at once (no export,
    calibration, model loading or image read first), and nothing made (the default folders are under
    the working folder)."""
    arguments, option, is_folder = VERBS_WRITING[verb]
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    named = {"SCALE": str(scale_onnx), "CALIB": str(calibration_set), "IMAGE": str(images[0] / "rgb16.png")}
    for out, reason in ((Path("/proc/mirnet/out"), "/proc takes no new file (No such file or directory)"),
                        (blocker / "out", f"{blocker} is a file, not a folder")):
        given = [named.get(a) or a.replace("OUT", str(out)) for a in arguments]
        path = next(g for g, a in zip(given, arguments, strict=True) if a.startswith("OUT"))
        code, output = cli(*given)
        assert code == 1, output
        assert output.splitlines() == [f"Error: Cannot write {option} {path}: {reason}. Nothing was done; "
                                       f"choose a {'folder' if is_folder else 'file'} path you can write to."]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    assert blocker.read_text() == "not a folder"


def test_mirnet_bench_refuses_a_report_folder_it_cannot_make_before_measuring(tmp_path):
    from click.testing import CliRunner

    from bench.latency_cli import mirnet_bench

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(mirnet_bench, ["--model", "small", "--res", "16", "--backend", "torch",
                                               "--json", str(blocker / "out" / "r.json")])
    assert isinstance(result.exception, UserError)
    assert str(result.exception) == (f"Cannot write --json {blocker / 'out' / 'r.json'}: {blocker} is a "
                                     "file, not a folder. Nothing was done; choose a file path you can write "
                                     "to.")
    assert "Measuring" not in result.output
