"""The real TensorRT and cuda-python bindings the conformance suite checks the project against.

`prepare()` downloads the wheels of VERSIONS from the package index into `build/conformance/wheels`
(ignored by git) once, unpacks them, and compiles `trt_stubs.c` into the three TensorRT libraries
the bindings link, so that the real `tensorrt.so` of each version imports on a machine without
TensorRT. Every step is skipped when its result is already there, under a file lock (parallel
runs). `Unavailable` says why the suite cannot run here (package index unreachable, no C compiler).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / "build" / "conformance"
STUB_SOURCE = Path(__file__).with_name("trt_stubs.c")
#: The libraries tensorrt.so links (NEEDED entries), each `lib<name>.so.<TensorRT major>`.
TENSORRT_LIBRARIES = ("nvinfer", "nvinfer_plugin", "nvonnxparser")
#: cuda-bindings needs it to import (it locates the CUDA libraries lazily, at first call).
CUDA_PATHFINDER = "cuda-pathfinder==1.9.1"


@dataclass(frozen=True)
class ApiVersion:
    """One TensorRT bindings wheel with the cuda-bindings of the CUDA major it is built for."""

    tensorrt: str  # pip requirement, e.g. "tensorrt-cu12-bindings==10.3.0"
    cuda: str  # pip requirement, e.g. "cuda-bindings==12.9.10"

    @property
    def tensorrt_version(self) -> str:
        return self.tensorrt.split("==")[1]

    @property
    def tensorrt_major(self) -> int:
        return int(self.tensorrt_version.split(".")[0])

    @property
    def label(self) -> str:
        return f"TensorRT {self.tensorrt_version} / cuda-bindings {self.cuda.split('==')[1]}"


#: TensorRT 10.3 is JetPack 6's; 10.16 the last 10.x; 11.4 the current. cuda-bindings: the last 12.x
#: (CUDA 12 drivers, JetPack 6) with the cu12 wheels, 13.x with the cu13 one.
VERSIONS = (
    ApiVersion("tensorrt-cu12-bindings==10.3.0", "cuda-bindings==12.9.10"),
    ApiVersion("tensorrt-cu12-bindings==10.16.1.11", "cuda-bindings==12.9.10"),
    ApiVersion("tensorrt-cu13-bindings==11.4.0.106", "cuda-bindings==13.5.0"),
)


class Unavailable(Exception):
    """The bindings cannot be prepared on this machine; the message is the skip reason."""


@dataclass(frozen=True)
class Prepared:
    version: ApiVersion
    python_path: tuple[Path, ...]  # the unpacked TensorRT, cuda-bindings and cuda-pathfinder wheels
    library_path: Path  # the stub libraries of this TensorRT major


def prepare(root: Path = ROOT) -> list[Prepared]:
    """Every version of VERSIONS, ready to import; downloads and compiles only what is missing."""
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / ".lock"):
        specs = sorted({CUDA_PATHFINDER, *(v.tensorrt for v in VERSIONS), *(v.cuda for v in VERSIONS)})
        site = {spec: _unpack(_download(spec, root / "wheels"), root / "site") for spec in specs}
        stubs = {major: _compile_stubs(root / "stubs" / str(major), major)
                 for major in {v.tensorrt_major for v in VERSIONS}}
    return [Prepared(v, (site[v.tensorrt], site[v.cuda], site[CUDA_PATHFINDER]), stubs[v.tensorrt_major])
            for v in VERSIONS]


def _wheel_prefix(spec: str) -> str:
    name, version = spec.split("==")
    return f"{name.replace('-', '_')}-{version}-"


def _download(spec: str, folder: Path) -> Path:
    """The wheel of `spec` in `folder`, from the package index unless it is there already."""
    found = sorted(folder.glob(_wheel_prefix(spec) + "*.whl"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--dest", str(folder), spec]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"`pip download {spec}` took over 10 minutes: is the package index "
                          f"reachable?") from None
    found = sorted(folder.glob(_wheel_prefix(spec) + "*.whl"))
    if done.returncode or not found:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Unavailable(f"`pip download {spec}` failed, so the TensorRT API-conformance suite cannot "
                          f"run (it needs the package index once; the wheels are then cached in {folder}): "
                          f"{last}")
    return found[0]


def _unpack(wheel: Path, folder: Path) -> Path:
    """The wheel's files under `folder/<wheel name>`, unpacked once (into a temporary sibling, renamed)."""
    target = folder / wheel.name.removesuffix(".whl")
    if target.is_dir():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=folder))
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(staging)
    os.replace(staging, target)
    return target


def _compile_stubs(folder: Path, major: int) -> Path:
    """lib<name>.so.<major> for each TensorRT library, compiled from trt_stubs.c when missing or older."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise Unavailable("no C compiler (cc) to build the TensorRT stub libraries the bindings link")
    folder.mkdir(parents=True, exist_ok=True)
    for name in TENSORRT_LIBRARIES:
        library = folder / f"lib{name}.so.{major}"
        if library.is_file() and library.stat().st_mtime >= STUB_SOURCE.stat().st_mtime:
            continue
        staging = folder / f".{library.name}.tmp"
        subprocess.run([compiler, "-shared", "-fPIC", "-Wall", "-Wextra", "-Wno-unused-parameter", "-o",
                        str(staging), f"-Wl,-soname,{library.name}", str(STUB_SOURCE)], check=True)
        os.replace(staging, library)
    return folder
