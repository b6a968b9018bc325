"""`--model` as the file each backend runs at each precision, made once and cached.

This is the benchmark's model boundary (as `export.network.load_network` is the export's):
a preset or checkpoint of any registered family becomes a network, a spec and a MAC count
here, and everything past this module sees files. The model is a preset of the `--arch`
family (MIRNet `small`, `full`; MPRNet `deblur`, ...: seeded random weights, since speed does
not depend on them), a checkpoint of any family (`.pth`), an ONNX model or a TensorRT engine.

Artifacts go to a cache folder (default `artifacts/bench/`), named by model, source hash and
precision, written atomically by the stages that make them, and reused by later runs:

    preset-small-seed0.pth                 the preset with seeded weights (the torch backend loads it;
                                           other families: preset-mprnet-deblur-seed0.pth)
    small-<sha12>.fp32.onnx                the export (export.onnx_export)
    small-<sha12>.fp16.onnx                FP16 (export.precision.convert_to_fp16)
    small-<sha12>.fp32-cpu-<code8>.onnx    FP32 as the CPU engines compile it (engines.cpu_graph; <code8>: the
                                           rewrites' code's hash), what the ort and openvino backends run;
                                           none where the rewrites change nothing (they run the export)
    small-<sha12>.int8-cpu-<code8>.onnx    INT8 Q/DQ (calibration.quantize; -tensorrt for TensorRT backends,
                                           -cpu-symmetric for OpenVINO; <code8>: the calibration code's hash)
    calibration-denoise-4x128.npz          the small calibration set INT8 is quantized with
    *.ovblob                               OpenVINO engines compiled for BF16 (the FP32 ONNX, bf16 hint)
    *.engine                               TensorRT engines per resolution and batch (engines.tensorrt_build)
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.cache import check_engine_file, precision_family, slug
from engines.cpu_graph import cpu_graph, rewrite_code_sha256
from engines.manifest import Profile
from mirnet_deploy.caches import use_cache
from mirnet_deploy.errors import UserError
from mirnet_deploy.hashing import file_sha256

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
DEFAULT_CACHE_DIR = Path("artifacts") / "bench"
PRESET_SEED = 0
#: The calibration set INT8 is quantized with: small, because weights and ranges do not change speed.
CALIBRATION_COUNT, CALIBRATION_CROP = 4, 128
#: The INT8 Q/DQ target each backend runs: TensorRT's for TensorRT (also through ONNX Runtime); OpenVINO
#: the symmetric CPU target, its fastest form that it computes right (`python -m bench.int8_forms`);
#: the others the CPU target.
INT8_TARGETS = {"tensorrt": "tensorrt", "ort-trt": "tensorrt", "openvino": "cpu-symmetric"}
#: Backends that run what their engines compile at FP32, the export with exact rewrites (`engines.cpu_graph`):
#: the ONNX variant CPU_GRAPH_VARIANT of a preset's or checkpoint's export (an ONNX file given runs as it is).
CPU_ENGINE_BACKENDS = ("ort", "openvino")
CPU_GRAPH_VARIANT = "fp32-cpu"


class Unsupported(Exception):
    """This backend does not run this model at this precision: a report row saying why, not a failure."""


@dataclass(frozen=True)
class BenchModel:
    """What the benchmark knows about `--model`."""

    label: str  # as reports name it: "small", "model_best.pth"
    kind: str  # "preset" | "checkpoint" | "onnx" | "engine"
    path: Path | None  # the file given (None for a preset)
    task: str
    config: dict[str, Any] | None  # constructor arguments when known; MACs are counted from them
    precision: str  # the file's own precision ("fp32" for presets and checkpoints, "int8-cpu", ...)
    scale: int = 1  # output size / input size (super-resolution graphs upsample inside)
    size_multiple: int = 1  # H and W of a tile must be multiples of this
    family: str | None = None  # the registry's name of the model family, when known

    @property
    def channels(self) -> int:
        """Input channels, from the family's configuration (3 where the file does not say)."""
        if self.family is None or self.config is None:
            return 3
        from mirnet_ref.registry import family_named

        return family_named(self.family).config_class(**self.config).in_channels


def _onnx_metadata(path: Path) -> dict[str, str]:
    """The metadata of the ONNX model `path`; a UserError for a file that is none (empty files included)."""
    from export.onnx_file import read_metadata
    from export.onnx_read import load_onnx

    return read_metadata(load_onnx(path, load_external_data=False))


def _from_metadata(label: str, kind: str, path: Path, metadata: dict[str, str], precision: str,
                   task: str) -> BenchModel:
    """ONNX metadata (as `mirnet export` writes it) says the task, scale, family and config, when present."""
    from mirnet_ref.registry import family_titled

    family = family_titled(metadata.get("model_name", ""))
    config = json.loads(metadata["model_config"]) if family and "model_config" in metadata else None
    return BenchModel(label, kind, path, metadata.get("task", task), config, precision,
                      int(metadata.get("scale", "1")), int(metadata.get("size_multiple", "1")),
                      family.name if family and config else None)


def resolve_model(text: str, task: str = "denoise", arch: str | None = None) -> BenchModel:
    """A preset of the `arch` family (MIRNet when not given) or a .pth / .onnx / .engine (.plan) file;
    `task` where the file (or a preset's input channels) does not say. A checkpoint's family is
    recognised by its keys (`arch` must agree)."""
    from mirnet_ref.registry import checkpoint_task, family_named

    family = family_named(arch or "mirnet")
    if text in family.presets and not Path(text).is_file():
        config = family.presets[text]
        label = text if family.name == "mirnet" else f"{family.name}-{text}"
        task = checkpoint_task(config, None, None) or task  # MIRNet-v2 `defocus`: the 6-channel task
        return BenchModel(label, "preset", None, task, config.as_dict(), "fp32", 1, config.size_multiple,
                          family.name)
    path = Path(text)
    if not path.is_file():
        raise UserError(f"--model {text!r} is neither a {family.title} preset ({', '.join(family.presets)}; "
                        "--arch picks the family) nor an existing file: pass a preset name or the path of a "
                        ".pth checkpoint, .onnx model or .engine.")
    if path.suffix in (".pth", ".pt"):
        from mirnet_ref.checkpoint import naming_file, read_checkpoint
        from mirnet_ref.registry import recognise

        with naming_file(path):
            state, recorded = read_checkpoint(path)
            found = recognise(state, arch)
            config = found.infer_config(state)
            task = checkpoint_task(config, recorded, None) or task
        return BenchModel(path.name, "checkpoint", path, task, config.as_dict(), "fp32", 1,
                          config.size_multiple, found.name)
    if path.suffix == ".onnx":
        metadata = _onnx_metadata(path)
        return _from_metadata(path.name, "onnx", path, metadata, metadata.get("precision", "fp32"), task)
    if path.suffix in (".engine", ".plan"):
        return resolve_engine(path, task).model
    raise UserError(f"Cannot tell what {path} is from its suffix: pass a preset name or a .pth, .onnx or "
                    ".engine file.")


@dataclass(frozen=True)
class BuiltEngine:
    """An engine that already exists (`mirnet build`'s, with its manifest), timed as it was built: on the
    runtime its manifest names, at the precision it was built at."""

    path: Path
    backend: str  # the benchmark backend that runs it (ENGINE_BACKENDS)
    precision: str  # the manifest's (fp32, fp16, int8-cpu-symmetric, ...), or bf16 for OpenVINO's BF16 hint
    model: BenchModel  # the engine file, with what its source ONNX's metadata says (MACs, scale)
    profiles: tuple[Profile, ...]  # TensorRT: the shapes it accepts; empty: any shape

    def for_run(self, resolution: tuple[int, int], batch: int, tile: int | None = None) -> Path:
        """The engine itself; raises Unsupported for a shape outside its TensorRT profiles."""
        width, height = resolution
        shape = (batch, self.model.channels, min(tile or height, height), min(tile or width, width))
        if self.profiles and not any(profile.contains(shape) for profile in self.profiles):
            shown = "; ".join(f"{p.min} to {p.max}" for p in self.profiles)
            raise Unsupported(f"{self.path.name} was built for input shapes {shown}, not {shape}: rebuild it "
                              f"with `mirnet build --res` naming this resolution")
        return self.path


#: The runtime an engine manifest names -> the benchmark backend that runs the engine. ONNX Runtime's
#: optimized models were optimized for its CPU provider, so they run there.
ENGINE_BACKENDS = {"onnxruntime": "ort", "openvino": "openvino", "tensorrt": "tensorrt"}


def resolve_engine(text: str | os.PathLike, task: str = "denoise") -> BuiltEngine:
    """An engine file (TensorRT .engine/.plan, OpenVINO .ovblob, ONNX Runtime's optimized .onnx) or its
    manifest (`<engine>.json`); the manifest says which runtime runs it and at which precision, and its
    source ONNX the model's MACs. `task` where neither says."""
    from engines.manifest import load_manifest

    path = Path(text)
    manifest_given = path.suffix == ".json"
    if manifest_given:  # `x.ovblob.json` describes the engine `x.ovblob` beside it
        path = path.with_suffix("")
    if not path.is_file():
        missing = f"{text} describes {path}, which is missing" if manifest_given else f"{text} is missing"
        raise UserError(f"Engine {missing}. Pass an engine that `mirnet build` made (the path on its "
                        "`engine:` line) or its manifest `<engine>.json`.")
    manifest = load_manifest(path)
    backend = ENGINE_BACKENDS.get(manifest.backend)
    if backend is None:
        raise UserError(f"The manifest of {path} names the runtime {manifest.backend!r}, which mirnet-bench "
                        f"does not run (it runs {', '.join(ENGINE_BACKENDS)}).")
    check_engine_file(path, manifest)
    source = Path(manifest.onnx_path)
    recorded = {"task": manifest.task, "size_multiple": manifest.size_multiple, "scale": manifest.scale}
    metadata = {**{name: str(value) for name, value in recorded.items() if value is not None},
                **(_onnx_metadata(source) if source.is_file() else {})}
    precision = "bf16" if manifest.inference_precision == "bf16" else manifest.precision
    model = _from_metadata(path.name, "engine", path, metadata, manifest.precision, task)
    return BuiltEngine(path, backend, precision, model, tuple(manifest.profile_list()))


def gmacs(model: BenchModel, resolution: tuple[int, int], batch: int) -> float | None:
    """Giga multiply-accumulates of the learned convolutions for one run (the whole batch), as
    `mirnet info` counts them; None when the file does not carry the model's configuration."""
    if model.config is None or model.family is None:
        return None
    from mirnet_ref.model_costs import resolution_cost
    from mirnet_ref.registry import family_named

    width, height = resolution
    network_input = (width * model.scale, height * model.scale)  # an SR graph upsamples before the network
    config = family_named(model.family).config_class(**model.config)
    return resolution_cost(config, network_input, batch)["gmacs"]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Artifacts:
    """The file a backend runs for the model at a precision, made on first request and cached."""

    def __init__(self, model: BenchModel, cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR, *,
                 log: Callable[[str], None] = _stderr):
        self.model = model
        self.cache_dir = Path(cache_dir)
        use_cache(self.cache_dir)
        self.log = log

    def for_run(self, backend: str, precision: str, resolution: tuple[int, int], batch: int,
                tile: int | None = None) -> Path:
        """The checkpoint (torch), ONNX model (ONNX Runtime) or engine (TensorRT) to run; raises Unsupported.

        A TensorRT engine is built for the shape it will see: the image, or the tile when tiling.
        """
        if backend == "torch":
            return self._checkpoint(precision)
        if precision == "bf16":
            return self._bf16_engine(backend)
        if self.model.kind == "engine":
            if backend != "tensorrt":
                raise Unsupported(f"{self.model.label} is a TensorRT engine: it runs on the tensorrt backend "
                                  "only (pass its ONNX model for ONNX Runtime)")
            if precision_family(self.model.precision) != precision:
                raise self._fixed_precision()
            return self.model.path
        target = INT8_TARGETS.get(backend, "cpu")
        variant = f"int8-{target}" if precision == "int8" else precision
        if backend in CPU_ENGINE_BACKENDS and variant == "fp32":
            variant = CPU_GRAPH_VARIANT  # the graph their engines compile
        onnx_path = self.onnx_variant(variant)
        if backend != "tensorrt":
            return onnx_path
        width, height = resolution
        shape = (min(tile, width), min(tile, height)) if tile else resolution
        return self._engine(onnx_path, shape, batch)

    def _bf16_engine(self, backend: str) -> Path:
        """BF16: the FP32 model computed in BF16, an OpenVINO engine with the bf16 hint (CPUs with BF16)."""
        if backend != "openvino":
            raise Unsupported("BF16 runs on OpenVINO only (the FP32 model with the bf16 inference precision "
                              "hint); ONNX Runtime's CPU provider has no BF16 convolutions")
        from engines.openvino_build import build_openvino_cached

        try:
            return build_openvino_cached(self.onnx_variant("fp32"), self.cache_dir,
                                         inference_precision="bf16").path
        except UserError as refusal:  # a CPU without BF16: a row saying why, not a failed run
            raise Unsupported(str(refusal)) from None

    def _fixed_precision(self) -> Unsupported:
        return Unsupported(f"{self.model.label} is {self.model.precision}; other precisions are made from an "
                           "FP32 model, so pass that (a preset, a checkpoint or an FP32 ONNX)")

    def _checkpoint(self, precision: str) -> Path:
        if precision != "fp32":
            raise Unsupported("PyTorch eager is benchmarked in FP32 only; FP16 and INT8 are deployment "
                              "precisions, measured on ONNX Runtime and TensorRT")
        if self.model.kind == "checkpoint":
            return self.model.path
        if self.model.kind != "preset":
            raise Unsupported(f"the torch backend runs a preset or a .pth checkpoint, not the "
                              f"{self.model.kind} file {self.model.label}")
        path = self.cache_dir / f"preset-{self.model.label}-seed{PRESET_SEED}.pth"
        if not path.is_file():
            import torch

            from mirnet_ref.checkpoint import save_checkpoint
            from mirnet_ref.registry import family_named

            family = family_named(self.model.family)
            torch.manual_seed(PRESET_SEED)
            save_checkpoint(family.build(family.config_class(**self.model.config)), path)
        return path

    def _base_name(self, source: Path) -> str:
        return f"{slug(Path(self.model.label).stem)}-{file_sha256(source)[:12]}"

    def onnx_variant(self, variant: str) -> Path:
        """The ONNX model of `variant` (fp32, fp32-cpu, fp16, int8-cpu, ...), made from FP32 if needed."""
        if self.model.kind == "onnx":
            if precision_family(self.model.precision) == precision_family(variant):
                return self.model.path  # a file given runs as it is, on the CPU backends too
            if self.model.precision != "fp32":
                raise self._fixed_precision()
            fp32 = self.model.path
        else:
            fp32 = self._export()
        if variant == "fp32":
            return fp32
        suffix = variant
        if variant == CPU_GRAPH_VARIANT:  # named by the rewrites' code, like INT8 models by theirs
            suffix = f"{variant}-{rewrite_code_sha256()[:8]}"
        elif variant != "fp16":  # an INT8 model is named by the code that made it too: no stale reuse
            from calibration.quantize import quantization_code_sha256

            suffix = f"{variant}-{quantization_code_sha256()[:8]}"
        path = self.cache_dir / f"{self._base_name(fp32)}.{suffix}.onnx"
        if path.is_file():
            return path
        if variant == CPU_GRAPH_VARIANT:
            from export.onnx_file import save_onnx

            graph, rewrites = cpu_graph(fp32, "fp32")
            if graph is None:  # nothing to rewrite (MPRNet has no stacked sums): the export runs as it is
                self.log(f"The CPU engines' graph of {self.model.label} is its export ({rewrites}): {fp32}")
                return fp32
            self.log(f"The CPU engines' graph of {self.model.label} ({rewrites}) -> {path}")
            save_onnx(graph, path)
        elif variant == "fp16":
            from export.precision import convert_to_fp16

            self.log(f"Converting {self.model.label} to FP16 -> {path}")
            convert_to_fp16(fp32, path)
        else:
            from calibration.quantize import quantizable_metadata, quantize_onnx

            quantizable_metadata(fp32)  # refuses a model that cannot be quantized before the calibration set
            target = variant.removeprefix("int8-")
            self.log(f"Quantizing {self.model.label} to INT8 ({target} target) -> {path}")
            quantize_onnx(fp32, path, target=target, calibration=self.calibration_set(),
                          cache_dir=self.cache_dir / "calibration-cache")
        return path

    def _export(self) -> Path:
        """The FP32 export of the preset or checkpoint."""
        checkpoint = self._checkpoint("fp32")
        path = self.cache_dir / f"{self._base_name(checkpoint)}.fp32.onnx"
        if not path.is_file():
            from export.network import load_network
            from export.onnx_export import export_onnx

            self.log(f"Exporting {self.model.label} to ONNX -> {path}")
            network, spec = load_network(checkpoint, self.model.task)
            export_onnx(network, spec, path)
        return path

    def calibration_set(self) -> Path:
        """The small calibration set of the model's task (made once in the cache folder)."""
        from calibration.dataset import build_calibration_set, manifest_path

        task = self.model.task
        path = self.cache_dir / f"calibration-{task}-{CALIBRATION_COUNT}x{CALIBRATION_CROP}.npz"
        if not (path.is_file() and manifest_path(path).is_file()):
            build_calibration_set(task, path, count=CALIBRATION_COUNT, crop=CALIBRATION_CROP, seed=0)
        return path

    def _engine(self, onnx_path: Path, shape: tuple[int, int], batch: int) -> Path:
        from engines.tensorrt_build import build_tensorrt_cached, profiles_from_resolutions

        profiles = profiles_from_resolutions([shape], batch=batch, channels=self.model.channels,
                                             size_multiple=self.model.size_multiple)
        self.log(f"TensorRT engine for {onnx_path.name} at {shape[0]}x{shape[1]}, batch {batch} (cached)")
        return build_tensorrt_cached(onnx_path, self.cache_dir, profiles=profiles).path
