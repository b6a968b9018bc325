"""The NVIDIA driver and platform of this machine, read from the driver itself; standard library only.

`make setup GPU=1` runs this module with the system Python, before any virtualenv exists, to
install what matches the driver: the CUDA build of PyTorch, TensorRT and cuda-bindings of the
driver's CUDA major. cuda-bindings 13.x needs a CUDA 13 driver (>= 580); on a CUDA 12 driver
(JetPack 6, older x86 drivers) it reports "insufficient driver", so the major is read from the
driver (libcuda's `cuDriverGetVersion`, else nvidia-smi), never guessed (DEPLOY_STACK.md §4).

On Jetson (`/etc/nv_tegra_release`) TensorRT's Python bindings and NVIDIA's PyTorch are system
packages of JetPack: the virtualenv sees them through `--system-site-packages` and installs neither.
"""

from __future__ import annotations

import argparse
import ctypes
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TEGRA_RELEASE = Path("/etc/nv_tegra_release")

#: Driver CUDA major -> the PyTorch wheel index of that CUDA major and this project's pip extra.
TORCH_CUDA_INDEX = {12: "https://download.pytorch.org/whl/cu126", 13: "https://download.pytorch.org/whl/cu130"}
#: TensorRT's pip packages come from NVIDIA's index (PyPI's are placeholders that download from it).
NVIDIA_INDEX = "https://pypi.nvidia.com"
#: L4T major (first field of /etc/nv_tegra_release) -> JetPack generation and its TensorRT.
JETPACK = {36: "JetPack 6 (TensorRT 10.3, CUDA 12.6)",
           38: "JetPack 7 (TensorRT 11.4.1 needs JetPack >= 7.2.2)"}


@dataclass(frozen=True)
class Driver:
    cuda: tuple[int, int]  # the newest CUDA the driver runs, e.g. (12, 4)
    source: str  # where it was read

    @property
    def cuda_text(self) -> str:
        return f"{self.cuda[0]}.{self.cuda[1]}"


def driver_from_libcuda() -> Driver | None:
    """`cuDriverGetVersion` of libcuda.so.1 (needs no cuInit, no GPU context); None without a driver."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    version = ctypes.c_int(0)
    if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
        return None
    return Driver((version.value // 1000, version.value % 1000 // 10), "libcuda.so.1 cuDriverGetVersion")


def driver_from_nvidia_smi() -> Driver | None:
    """The "CUDA Version: 12.4" of nvidia-smi's header; None where nvidia-smi is absent or fails."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        text = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", text)
    return Driver((int(found[1]), int(found[2])), "nvidia-smi") if found else None


def find_driver() -> Driver | None:
    return driver_from_libcuda() or driver_from_nvidia_smi()


def jetson_release(path: Path = TEGRA_RELEASE) -> str | None:
    """'L4T R36.4.3, JetPack 6 (...)' on Jetson, None elsewhere."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not found:
        return "L4T (release not recognised)"
    major = int(found[1])
    return f"L4T R{major}.{found[2]}, {JETPACK.get(major, 'a JetPack this toolkit has no notes on')}"


def cuda_extra(driver: Driver) -> str:
    """This project's pip extra with the cuda-bindings of the driver's CUDA major ('cuda12', 'cuda13')."""
    return f"cuda{driver.cuda[0]}"


class SetupRefused(Exception):
    """This machine cannot get the GPU setup; the message says why and what to do instead."""


def setup_commands(driver: Driver | None, jetson: str | None, *, venv: str, python: str,
                   torch_spec: str) -> list[list[str]]:
    """The commands that create `venv` for this GPU machine, in order; SetupRefused where none fit."""
    if driver is None:
        raise SetupRefused(
            "make setup GPU=1 needs an NVIDIA GPU driver, and this machine has none: libcuda.so.1 cannot be "
            "loaded and nvidia-smi is not installed, so there is no CUDA version to match PyTorch, TensorRT "
            "and cuda-bindings to. Install the NVIDIA driver first, or run `make setup` for the CPU setup.")
    if driver.cuda[0] not in TORCH_CUDA_INDEX:
        raise SetupRefused(
            f"The NVIDIA driver here runs CUDA {driver.cuda_text} (read from {driver.source}); this toolkit "
            f"needs a CUDA {' or '.join(map(str, TORCH_CUDA_INDEX))} driver (TensorRT 10/11). Update the "
            f"driver, or run `make setup` for the CPU setup.")
    pip = [f"{venv}/bin/python", "-m", "pip", "install"]
    project = [*pip, "-e", f".[dev,{cuda_extra(driver)}]"]
    if jetson:  # JetPack's TensorRT and NVIDIA's PyTorch are system packages: use them, install neither
        return [[python, "-m", "venv", "--system-site-packages", venv], [*pip, "--upgrade", "pip"], project]
    return [[python, "-m", "venv", venv], [*pip, "--upgrade", "pip"],
            [*pip, "--index-url", TORCH_CUDA_INDEX[driver.cuda[0]], torch_spec],
            [*pip, "--extra-index-url", NVIDIA_INDEX, f"tensorrt-cu{driver.cuda[0]}"],
            project]


def jetson_system_packages(python: str) -> list[str]:
    """What JetPack must already provide to the system Python (`python3-libnvinfer`, NVIDIA's PyTorch)."""
    missing = []
    for module, package in (("tensorrt", "JetPack's python3-libnvinfer (`sudo apt install nvidia-jetpack`)"),
                            ("torch", "NVIDIA's PyTorch wheel for this JetPack (see README.md, 'Jetson')")):
        found = subprocess.run([python, "-c", f"import {module}"], capture_output=True, check=False)
        if found.returncode:
            missing.append(f"`import {module}` fails in {python}: install {package}")
    return missing


def setup(venv: str, python: str, torch_spec: str, dry_run: bool) -> None:
    driver, jetson = find_driver(), jetson_release()
    commands = setup_commands(driver, jetson, venv=venv, python=python, torch_spec=torch_spec)
    print(f"NVIDIA driver: CUDA {driver.cuda_text} (from {driver.source})" + (f"; Jetson: {jetson}" if jetson
                                                                             else ""))
    if Path(venv).exists() and not dry_run:
        raise SetupRefused(f"{venv} exists (the CPU setup, or an earlier GPU one): its PyTorch would be "
                           f"kept. Remove it (`rm -rf {venv}`) and run `make setup GPU=1` again.")
    if jetson and not dry_run:
        missing = jetson_system_packages(python)
        if missing:
            raise SetupRefused("On Jetson the virtualenv uses JetPack's TensorRT and PyTorch, but "
                               + "; ".join(missing) + ".")
    for command in commands:
        print("+ " + " ".join(command), flush=True)
        if not dry_run:
            subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m engines.nvidia",
                                     description="`make setup GPU=1`: a venv matched to the NVIDIA driver.")
    parser.add_argument("--venv", default=".venv")
    parser.add_argument("--python", default=sys.executable, help="the Python that creates the virtualenv")
    parser.add_argument("--torch", default="torch==2.13.0", help="the PyTorch requirement")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    try:
        setup(args.venv, args.python, args.torch, args.dry_run)
    except SetupRefused as refusal:
        raise SystemExit(f"Error: {refusal}") from None
    except subprocess.CalledProcessError as failure:
        raise SystemExit(f"Error: `{' '.join(failure.cmd)}` failed with exit status {failure.returncode} "
                         f"(its output is above).") from None


if __name__ == "__main__":
    main()
