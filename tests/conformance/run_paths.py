"""Run the project's TensorRT and CUDA code paths against the doubles of one version of the bindings.

    python tests/conformance/run_paths.py MODELS_DIR WORK_DIR

with the real bindings' wheels on PYTHONPATH and the stub libraries on LD_LIBRARY_PATH (see
test_tensorrt_conformance.py). It imports the real `tensorrt_bindings` and `cuda.bindings.runtime`,
installs the doubles generated from them as `tensorrt` and `cuda.bindings.runtime`, runs each path
(the `mirnet build --backend tensorrt` CLI on FP32/FP16/INT8 ONNX, the runner on dynamic shapes, the
precision check, the timing cache, the CUDA probe and memory sampler) and prints one JSON report.
Exit status 1 when a path failed or touched a name or signature this version lacks.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from double import CudaRuntimeDouble, TensorRTDouble
from fake_gpu import TIMING_MAGIC, FakeGpu

RESOLUTIONS = "64x48,160x120"  # two optimization profiles
BATCH = 2
SHAPES = [(1, 3, 48, 64), (2, 3, 100, 160), (1, 3, 13, 17), (1, 3, 16, 16)]


def install_doubles() -> tuple[FakeGpu, TensorRTDouble, CudaRuntimeDouble]:
    import cuda.bindings
    import tensorrt_bindings
    from cuda.bindings import runtime

    version = tensorrt_bindings.__version__
    fake = FakeGpu(int(version.split(".")[0]), int(cuda.bindings.__version__.split(".")[0]))
    fake.runtime = runtime
    fake.api = TensorRTDouble(tensorrt_bindings.tensorrt, version, fake)
    cuda_double = CudaRuntimeDouble(runtime, cuda.bindings.__version__, fake)
    sys.modules["tensorrt"] = fake.api.module
    sys.modules["cuda.bindings.runtime"] = cuda.bindings.runtime = cuda_double.module
    return fake, fake.api, cuda_double


def raised(kind: type[Exception], call: Callable[[], Any]) -> str:
    """The message of the `kind` exception `call` raises; AssertionError when it raises none."""
    try:
        call()
    except kind as error:
        return str(error)
    raise AssertionError(f"{kind.__name__} expected, nothing raised")


class Paths:
    """The checks, each a method `check_*` that raises on failure."""

    def __init__(self, fake: FakeGpu, models: Path, work: Path):
        self.fake, self.models, self.work = fake, models, work
        self.engines: dict[str, Path] = {}

    def engine(self, precision: str) -> Path:
        if precision not in self.engines:
            raise AssertionError(f"needs the {precision} engine of cli_build_fp32_fp16_int8, which failed")
        return self.engines[precision]

    def _cli_build(self, precision: str) -> dict[str, Any]:
        from mirnet_deploy.cli import main

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main(["build", str(self.models / f"toy.{precision}.onnx"), "--backend", "tensorrt", "--res",
                  RESOLUTIONS, "--batch", str(BATCH), "--cache-dir", str(self.work / "engines"), "--json"],
                 standalone_mode=False)
        return json.loads(out.getvalue())

    def check_double_has_this_versions_api(self) -> str:
        """The double is this version's: 11.x lost BuilderFlag.FP16, and a wrong call is refused."""
        import tensorrt as trt
        from double import ApiMismatch

        major = self.fake.tensorrt_major
        assert hasattr(trt.BuilderFlag, "FP16") == (major == 10), "BuilderFlag.FP16 present in 11.x"
        assert hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
        config = self.fake.api.make("IBuilderConfig")
        message = raised(ApiMismatch, lambda: config.set_timing_cache(None))  # ignore_mismatch missing
        assert "missing ignore_mismatch" in message, message
        self.fake.api.mismatches.pop()  # that one was on purpose
        return f"BuilderFlag.FP16 {'present' if major == 10 else 'absent'}; a wrong call refused"

    def check_cli_build_fp32_fp16_int8(self) -> str:
        expected = {"fp32": "Float", "fp16": "Half", "int8": "Int8"}
        notes = []
        for precision, layer_type in expected.items():
            result = self._cli_build(precision)
            manifest = result["manifest"]
            assert result["backend"] == "tensorrt", result["reason"]
            assert manifest["precision"] == precision, manifest["precision"]
            assert set(manifest["layer_precisions"]) == {layer_type}, manifest["layer_precisions"]
            assert manifest["build_options"]["strongly_typed"] is True
            self.engines[precision] = Path(result["engine"])
            notes.append(f"{precision}: {manifest['layer_precisions']}")
        (timing,) = (self.work / "engines").glob("timing.*.cache")
        entries = json.loads(timing.read_bytes()[len(TIMING_MAGIC):])
        assert len(entries) == 3, entries  # each build added its timings to the shared cache
        again = self._cli_build("fp16")
        assert again["reused"], "the second build of the same request was not reused"
        return "; ".join(notes) + f"; timing cache {len(entries)} entries; rebuild reused"

    def check_runner_on_dynamic_shapes(self) -> str:
        from engines.runners import TensorRTRunner
        from mirnet_deploy.errors import UserError

        with TensorRTRunner(self.engine("fp32")) as runner:
            assert len(runner.profiles) == 2, runner.profiles
            for shape in SHAPES:
                batch = np.random.default_rng(0).random(shape, dtype=np.float32)
                np.testing.assert_array_equal(runner.run(batch), batch)  # the fake engine is the identity
            message = raised(UserError, lambda: runner.run(np.zeros((1, 3, 240, 320), np.float32)))
            assert "outside every optimization profile" in message, message
        self._nothing_left("after close()")
        return f"shapes {SHAPES} through 2 profiles; all memory freed by close()"

    def _nothing_left(self, when: str) -> None:
        left = {"device buffers": len(self.fake.device), "pinned buffers": len(self.fake.pinned),
                "streams": len(self.fake.streams)}
        assert not any(left.values()), f"{when}: {left} still allocated"

    def check_unclosed_runner_is_finalized(self) -> str:
        from engines.runners import TensorRTRunner

        runner = TensorRTRunner(self.engine("fp16"))
        runner.run(np.zeros(SHAPES[0], np.float32))
        del runner
        gc.collect()
        self._nothing_left("after a runner that was never closed was collected")
        return "pinned and device memory freed by the finalizer"

    def check_failed_constructor_leaks_nothing(self) -> str:
        from engines.runners import TensorRTRunner
        from mirnet_deploy.errors import UserError

        self.fake.extra_inputs = 1
        try:
            message = raised(UserError, lambda: TensorRTRunner(self.engine("fp32")))
        finally:
            self.fake.extra_inputs = 0
        assert "2 inputs" in message, message
        self._nothing_left("after the constructor raised")
        return "UserError, no stream left"

    def check_failed_allocation_keeps_buffers(self) -> str:
        from engines.runners import TensorRTRunner
        from engines.runners.cuda_memory import CudaError

        small = np.full(SHAPES[3], 0.25, np.float32)
        with TensorRTRunner(self.engine("fp32")) as runner:
            runner.run(small)
            self.fake.memory_limit = small.nbytes
            try:
                raised(CudaError, lambda: runner.run(np.zeros(SHAPES[1], np.float32)))
            finally:
                self.fake.memory_limit = 1 << 40
            np.testing.assert_array_equal(runner.run(small), small)  # its buffers are still valid
        self._nothing_left("after close()")
        return "out of memory: CudaError, the runner's earlier buffers still work"

    def check_refused_address_is_reported(self) -> str:
        from engines.runners import TensorRTRunner
        from mirnet_deploy.errors import UserError

        with TensorRTRunner(self.engine("fp32")) as runner:
            self.fake.refuse_addresses = True
            try:
                message = raised(RuntimeError, lambda: runner.run(np.zeros(SHAPES[0], np.float32)))
            finally:
                self.fake.refuse_addresses = False
            assert "refused the address" in message, message
            aligned = next(iter(self.fake.device))
            message = raised(UserError, lambda: runner._execute(aligned + 4, aligned))
            assert "multiple of 256" in message, message
        return "refused address -> RuntimeError; misaligned -> UserError before TensorRT"

    def check_precision_check_refuses_fp32_as_fp16(self) -> str:
        from engines.tensorrt_build import build_tensorrt_engine, profiles_from_resolutions
        from mirnet_deploy.errors import UserError

        engine = self.work / "mislabelled.engine"
        message = raised(UserError, lambda: build_tensorrt_engine(
            self.models / "toy.undeclared.onnx", engine, precision="fp16",
            profiles=profiles_from_resolutions(["64x48"]), progress=False))
        assert "no FP16 layer" in message, message
        assert not engine.exists()
        return "no FP16 layer -> refused, nothing written"

    def _build_with_cache(self, cache: Path, name: str) -> None:
        from engines.tensorrt_build import build_tensorrt_engine, profiles_from_resolutions

        build_tensorrt_engine(self.models / "toy.fp32.onnx", self.work / f"{name}.engine",
                              profiles=profiles_from_resolutions(["64x48"]), timing_cache_path=cache,
                              progress=False)

    @staticmethod
    def _entries(cache: Path) -> set[str]:
        data = cache.read_bytes()
        assert data.startswith(TIMING_MAGIC), f"{cache} is not a timing cache: {data[:40]!r}"
        return set(json.loads(data[len(TIMING_MAGIC):]))

    def check_corrupt_timing_cache_is_replaced(self) -> str:
        cache = self.work / "corrupt.cache"
        cache.write_bytes(b"not a timing cache")
        self._build_with_cache(cache, "after-corrupt")
        assert len(self._entries(cache)) == 1
        return "rejected cache -> fresh cache, build published, file replaced"

    def check_concurrent_builds_merge_timing_caches(self) -> str:
        cache = self.work / "shared.cache"
        cache.write_bytes(TIMING_MAGIC + json.dumps(["earlier"]).encode())

        def another_build_saves() -> None:  # while this build runs, another one saves its timings
            cache.write_bytes(TIMING_MAGIC + json.dumps(["earlier", "concurrent"]).encode())

        self.fake.during_build = another_build_saves
        try:
            self._build_with_cache(cache, "merged")
        finally:
            self.fake.during_build = None
        entries = self._entries(cache)
        assert {"earlier", "concurrent"} <= entries, entries
        assert len(entries) == 3, entries
        return "the other build's timings kept, ours added"

    def check_cuda_probe_and_memory_sampler(self) -> str:
        from bench.gpu import DeviceMemorySampler
        from engines.probe import probe_cuda

        found = probe_cuda()
        assert found.available, found.reason
        assert found.devices[0].name == "Fake GPU", found.devices
        assert found.devices[0].compute_capability == "8.6"
        assert found.driver_version == f"{self.fake.driver_version // 1000}.6", found.driver_version
        with DeviceMemorySampler() as sampler:
            self.fake.cudaMalloc(4 << 20)
        assert sampler.peak_mb >= 4, sampler.peak_mb
        self.fake.device.clear()
        return found.reason


def main() -> None:
    models, work = map(Path, sys.argv[1:3])
    fake, tensorrt, cuda = install_doubles()
    paths = Paths(fake, models, work)
    checks: list[dict[str, Any]] = []
    for name in [n for n in vars(Paths) if n.startswith("check_")]:  # in the order written
        check: Callable[[], str] = getattr(paths, name)
        try:
            checks.append({"name": name[6:], "passed": True, "note": check()})
        except Exception as failure:  # every failure goes into the report
            detail = "".join(traceback.format_exception_only(failure)).strip()
            checks.append({"name": name[6:], "passed": False, "note": detail,
                           "traceback": traceback.format_exc()})
    report = {"tensorrt": tensorrt.label, "cuda": cuda.label, "checks": checks,
              "mismatches": [*tensorrt.mismatches, *cuda.mismatches]}
    print(json.dumps(report, indent=2))
    sys.exit(0 if all(c["passed"] for c in checks) and not report["mismatches"] else 1)


if __name__ == "__main__":
    main()
