"""What a GPU with TensorRT answers, as far as the project's paths need it, behind the generated doubles.

Behaviour only: the doubles (double.py) check every call against the real bindings' signatures
first, and check each answer here against the documented return type. The fake is deliberately
simple: the "engine" copies its input to its output; its layers take the data types of the ONNX
graph (Q/DQ -> Int8, FLOAT16 -> Half, else Float), so that the project's precision check judges
something real; device memory is host memory addressed by 256-aligned fake pointers, and pinned
host memory is real (the runner views it with ctypes). What real TensorRT does that matters to the
project is modelled where the project must handle it: a rejected timing cache (`create_timing_cache`
returns None for bytes it cannot read), refused tensor addresses (misaligned or unknown), shapes
outside the active profile, inspector types "N/A" without input shapes, out-of-memory.
"""

from __future__ import annotations

import ctypes
import json
import math
from collections.abc import Callable
from typing import Any

import onnx

PLAN_MAGIC = b"FAKE-TENSORRT-PLAN\n"
TIMING_MAGIC = b"FAKE-TIMING-CACHE\n"
ALIGNMENT = 256
#: How each TensorRT major's engine inspector writes a tensor's type (10.x: one "Format/Datatype"
#: string; 11.x: separate keys, spelled "DataType" in the 11.x documents).
INSPECTOR_TYPES = {
    10: {"Float": {"Format/Datatype": "Row major linear FP32"},
         "Half": {"Format/Datatype": "Channel major FP16 format where channel % 8 == 0"},
         "Int8": {"Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}},
    11: {name: {"DataType": name, "Format": "Row major linear"} for name in ("Float", "Half", "Int8")},
}
UNKNOWN_TYPE = {10: {"Format/Datatype": "N/A due to dynamic shapes"},
                11: {"DataType": "N/A", "Format": "N/A"}}


def onnx_layer_types(path: str) -> tuple[str, list[str]]:
    """(input name, per Conv node the data type TensorRT would give it) for a strongly typed build."""
    model = onnx.load(path, load_external_data=False)
    ops = {node.op_type for node in model.graph.node}
    half = any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
    kind = "Int8" if "QuantizeLinear" in ops else "Half" if half else "Float"
    convs = sum(node.op_type == "Conv" for node in model.graph.node)
    return model.graph.input[0].name, [kind] * max(convs, 1)


class FakeGpu:
    """One CUDA device with TensorRT, answering the doubles' calls."""

    def __init__(self, tensorrt_major: int, cuda_major: int):
        self.tensorrt_major = tensorrt_major
        self.driver_version = cuda_major * 1000 + 60
        self.api: Any = None  # the TensorRT double (double.TensorRTDouble), once generated
        self.runtime: Any = None  # the real cuda.bindings.runtime: its enums and structs
        self.device: dict[int, bytearray] = {}
        self.pinned: dict[int, Any] = {}
        self.streams: set[int] = set()
        self._next_pointer = 0x7F00_0000_0000
        self.memory_limit = 1 << 40
        self.refuse_addresses = False
        self.extra_inputs = 0  # the next engine deserialized gets this many more inputs
        self.during_build: Callable[[], None] | None = None

    # ------------------------------------------------------------------------------------------
    # TensorRT: `answer` dispatches "Class.member" to a method named Class__member

    def answer(self, member: Any, obj: Any, args: dict[str, Any]) -> Any:
        owner = type(obj)._real_name if obj is not None and hasattr(type(obj), "_real_name") else member.owner
        for name in (f"{owner}__{member.name}", f"{member.owner}__{member.name}"):
            handler = getattr(self, name.replace(".", "_"), None)
            if handler is not None:
                if obj is not None and "_fake" not in obj.__dict__:
                    object.__setattr__(obj, "_fake", {})
                return handler(obj, **args)
        return NotImplemented

    def _returned(self, payload: Any = None, **state: Any) -> Any:
        """An object of the class the call being answered returns in this version."""
        return self.api.make_returned(payload, **state)

    def _dims(self, shape: tuple[int, ...]) -> Any:
        return self._returned(shape=tuple(shape))

    def Dims____len__(self, dims: Any) -> int:
        return len(dims._fake["shape"])

    def Dims____getitem__(self, dims: Any, **args: Any) -> int:
        (index,) = args.values()
        return dims._fake["shape"][index]  # IndexError ends iteration, as pybind11's does

    def Builder____init__(self, builder: Any, logger: Any) -> None:
        builder._fake["logger"] = logger

    def OnnxParser____init__(self, parser: Any, network: Any, logger: Any) -> None:
        parser._fake["network"] = network

    def OnnxParser__parse_from_file(self, parser: Any, model: str) -> bool:
        parser._fake["network"]._fake["onnx"] = onnx_layer_types(model)
        return True

    def OnnxParser__num_errors(self, parser: Any) -> int:
        return 0

    def IOptimizationProfile__set_shape(self, profile: Any, input: str, min: Any, opt: Any, max: Any) -> None:
        profile._fake["shapes"] = [tuple(min), tuple(opt), tuple(max)]

    def IBuilderConfig__add_optimization_profile(self, config: Any, profile: Any) -> int:
        config._fake.setdefault("profiles", []).append(profile._fake["shapes"])
        return len(config._fake["profiles"]) - 1

    def IBuilderConfig__create_timing_cache(self, config: Any, serialized_timing_cache: Any) -> Any:
        data = bytes(memoryview(serialized_timing_cache))
        if not data:
            return self._returned(entries=set())
        if not data.startswith(TIMING_MAGIC):
            return None  # TensorRT returns null for a cache it cannot read
        return self._returned(entries=set(json.loads(data[len(TIMING_MAGIC):])))

    def IBuilderConfig__set_timing_cache(self, config: Any, cache: Any, ignore_mismatch: bool) -> bool:
        config._fake["timing_cache"] = cache
        return cache is not None

    def IBuilderConfig__get_timing_cache(self, config: Any) -> Any:
        return config._fake.get("timing_cache")

    def ITimingCache__serialize(self, cache: Any) -> Any:
        return self._returned(TIMING_MAGIC + json.dumps(sorted(cache._fake["entries"])).encode())

    def ITimingCache__combine(self, cache: Any, input_cache: Any, ignore_mismatch: bool) -> bool:
        cache._fake["entries"] |= input_cache._fake["entries"]
        return True

    def Builder__build_serialized_network(self, builder: Any, network: Any, config: Any) -> Any:
        input_name, layers = network._fake["onnx"]
        profiles = config._fake.get("profiles", [])
        if not profiles:
            return None  # dynamic inputs without a profile: TensorRT logs an error and returns null
        monitor = config.__dict__.get("_fake_properties", {}).get("progress_monitor")
        if monitor is not None:  # as TensorRT calls the project's IProgressMonitor
            monitor.phase_start("Building engine", None, 2)
            for step in range(2):
                if not monitor.step_complete("Building engine", step):
                    return None
            monitor.phase_finish("Building engine")
        builder._fake["logger"].log(self.api.module.ILogger.Severity.INFO, "fake build finished")
        if self.during_build is not None:
            self.during_build()
        cache = config._fake.get("timing_cache")
        if cache is not None:
            cache._fake["entries"].add(f"{layers[0]}:{json.dumps(profiles)}")
        plan = {"inputs": [input_name], "output": "output", "layers": layers, "profiles": profiles}
        return self._returned(PLAN_MAGIC + json.dumps(plan).encode())

    def Runtime__deserialize_cuda_engine(self, runtime: Any, **args: Any) -> Any:
        data = bytes(memoryview(next(iter(args.values()))))
        if not data.startswith(PLAN_MAGIC):
            return None
        plan = json.loads(data[len(PLAN_MAGIC):])
        plan["inputs"] += [f"extra{i}" for i in range(self.extra_inputs)]
        return self._returned(plan=plan)

    def _io_names(self, engine: Any) -> list[str]:
        return [*engine._fake["plan"]["inputs"], engine._fake["plan"]["output"]]

    def ICudaEngine__num_io_tensors(self, engine: Any) -> int:
        return len(self._io_names(engine))

    def ICudaEngine__get_tensor_name(self, engine: Any, index: int) -> str:
        return self._io_names(engine)[index]

    def ICudaEngine__get_tensor_mode(self, engine: Any, name: str) -> Any:
        modes = self.api.module.TensorIOMode
        return modes.OUTPUT if name == engine._fake["plan"]["output"] else modes.INPUT

    def ICudaEngine__get_tensor_dtype(self, engine: Any, name: str) -> Any:
        return self.api.module.DataType.FLOAT

    def ICudaEngine__get_tensor_shape(self, engine: Any, name: str) -> Any:
        return self._dims((-1, 3, -1, -1))

    def ICudaEngine__num_optimization_profiles(self, engine: Any) -> int:
        return len(engine._fake["plan"]["profiles"])

    def ICudaEngine__get_tensor_profile_shape(self, engine: Any, name: str, profile_index: int) -> list:
        return [self._dims(shape) for shape in engine._fake["plan"]["profiles"][profile_index]]

    def ICudaEngine__create_execution_context(self, engine: Any, **args: Any) -> Any:
        return self._returned(engine=engine, profile=0, shape=None, addresses={})

    def ICudaEngine__create_engine_inspector(self, engine: Any) -> Any:
        return self._returned(engine=engine)

    def IExecutionContext__set_optimization_profile_async(self, context: Any, profile_index: int,
                                                          stream_handle: int) -> bool:
        if not 0 <= profile_index < len(context._fake["engine"]._fake["plan"]["profiles"]):
            return False
        context._fake["profile"] = profile_index
        return True

    def IExecutionContext__set_input_shape(self, context: Any, name: str, shape: Any) -> bool:
        low, _, high = context._fake["engine"]._fake["plan"]["profiles"][context._fake["profile"]]
        shape = tuple(shape)
        if len(shape) != len(low) or not all(a <= n <= b for a, n, b in zip(low, shape, high, strict=True)):
            return False
        context._fake["shape"] = shape
        return True

    def IExecutionContext__get_tensor_shape(self, context: Any, name: str) -> Any:
        return self._dims(context._fake["shape"] or (-1, 3, -1, -1))

    def IExecutionContext__set_tensor_address(self, context: Any, name: str, memory: int) -> bool:
        if self.refuse_addresses or memory % ALIGNMENT or self._region(memory, 1) is None:
            return False
        context._fake["addresses"][name] = memory
        return True

    def IExecutionContext__execute_async_v3(self, context: Any, stream_handle: int) -> bool:
        addresses, shape = context._fake["addresses"], context._fake["shape"]
        names = self._io_names(context._fake["engine"])
        if shape is None or set(addresses) != set(names) or stream_handle not in self.streams:
            return False
        count = math.prod(shape) * 4
        source, target = self._region(addresses[names[0]], count), self._region(addresses[names[-1]], count)
        if source is None or target is None:
            return False
        target[0][target[1]:target[1] + count] = source[0][source[1]:source[1] + count]
        return True

    def EngineInspector__get_engine_information(self, inspector: Any, format: Any) -> str:
        context = inspector.__dict__.get("_fake_properties", {}).get("execution_context")
        known = context is not None and context._fake["shape"] is not None
        styles = INSPECTOR_TYPES[self.tensorrt_major]
        layers = []
        for index, kind in enumerate(inspector._fake["engine"]._fake["plan"]["layers"]):
            tensor = styles[kind] if known else UNKNOWN_TYPE[self.tensorrt_major]
            layers.append({"Name": f"conv{index}", "LayerType": "CaskConvolution",
                           "Inputs": [{"Name": f"t{index}", **tensor}],
                           "Outputs": [{"Name": f"t{index + 1}", **tensor}]})
        return json.dumps({"Layers": layers, "Bindings": ["input", "output"]})

    # ------------------------------------------------------------------------------------------
    # CUDA runtime: `cuda(name, ...)` answers as cuda.bindings.runtime does, error code first

    def _region(self, pointer: int, count: int) -> tuple[bytearray, int] | None:
        for base, memory in self.device.items():
            if base <= pointer and pointer + count <= base + len(memory):
                return memory, pointer - base
        return None

    def cuda(self, name: str, *args: Any) -> tuple:
        handler = getattr(self, name, None)
        if handler is None:
            raise AssertionError(f"the fake GPU does not implement {name}")
        return handler(*args)

    def _ok(self, *values: Any) -> tuple:
        return (self.runtime.cudaError_t.cudaSuccess, *values)

    def _error(self, name: str, *values: Any) -> tuple:
        return (getattr(self.runtime.cudaError_t, name), *values)

    def cudaDriverGetVersion(self) -> tuple:
        return self._ok(self.driver_version)

    def cudaGetDeviceCount(self) -> tuple:
        return self._ok(1)

    def cudaGetDeviceProperties(self, device: int) -> tuple:
        if device != 0:
            return self._error("cudaErrorInvalidDevice", None)
        prop = self.runtime.cudaDeviceProp()
        prop.name = b"Fake GPU".ljust(256, b"\0")
        prop.major, prop.minor, prop.totalGlobalMem = 8, 6, 16 << 30
        return self._ok(prop)

    def cudaGetErrorString(self, error: Any) -> tuple:
        return self._ok(f"fake CUDA error {int(error)}".encode())

    def cudaSetDevice(self, device: int) -> tuple:
        return self._ok() if device == 0 else self._error("cudaErrorInvalidDevice")

    def cudaMalloc(self, size: int) -> tuple:
        if size > self.memory_limit:
            return self._error("cudaErrorMemoryAllocation", None)
        pointer = self._next_pointer
        self._next_pointer += (size // ALIGNMENT + 2) * ALIGNMENT
        self.device[pointer] = bytearray(size)
        return self._ok(pointer)

    def cudaFree(self, pointer: int) -> tuple:
        return self._ok() if self.device.pop(int(pointer), None) is not None else self._error(
            "cudaErrorInvalidValue")

    def cudaMallocHost(self, size: int) -> tuple:
        memory = ctypes.create_string_buffer(size)
        self.pinned[ctypes.addressof(memory)] = memory
        return self._ok(ctypes.addressof(memory))

    def cudaFreeHost(self, pointer: int) -> tuple:
        return self._ok() if self.pinned.pop(int(pointer), None) is not None else self._error(
            "cudaErrorInvalidValue")

    def cudaStreamCreate(self) -> tuple:
        handle = 0x5000 + len(self.streams) + 1
        while handle in self.streams:
            handle += 1
        self.streams.add(handle)
        return self._ok(self.runtime.cudaStream_t(handle))

    def cudaStreamDestroy(self, stream: Any) -> tuple:
        if int(stream) not in self.streams:
            return self._error("cudaErrorInvalidResourceHandle")
        self.streams.remove(int(stream))
        return self._ok()

    def cudaStreamSynchronize(self, stream: Any) -> tuple:
        return self._ok() if int(stream) in self.streams else self._error("cudaErrorInvalidResourceHandle")

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: Any, stream: Any) -> tuple:
        kinds = self.runtime.cudaMemcpyKind
        device_side = self._region(dst if kind == kinds.cudaMemcpyHostToDevice else src, count)
        if device_side is None or int(stream) not in self.streams:
            return self._error("cudaErrorInvalidValue")
        memory, offset = device_side
        if kind == kinds.cudaMemcpyHostToDevice:
            memory[offset:offset + count] = ctypes.string_at(src, count)
        else:
            ctypes.memmove(dst, bytes(memory[offset:offset + count]), count)
        return self._ok()

    def cudaMemGetInfo(self) -> tuple:
        used = sum(map(len, self.device.values()))
        return self._ok((16 << 30) - used, 16 << 30)
