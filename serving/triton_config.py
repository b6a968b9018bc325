"""Triton `config.pbtxt` text, made and checked with Triton's own `ModelConfig` protobuf schema.

The config is built as a `tritonclient.grpc.model_config_pb2.ModelConfig` message, so a field
name or enum value Triton does not know cannot be written at all; the written text is parsed
back with `google.protobuf.text_format` (what Triton's own loader does) and checked against
the rules the schema cannot express (`semantic_problems`). Parsing proves the config is
well-formed for this schema version; it does not prove a server loads the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mirnet_deploy.errors import UserError

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

INSTALL_HINT = ("Triton configs are made and checked with tritonclient's ModelConfig schema: install it with "
                "`pip install 'mirnet-deploy[serving]'` (or `pip install 'tritonclient[grpc]'`).")

#: ONNX TensorProto element types -> Triton data types (the ones image models use).
ONNX_TO_TRITON_TYPE = {1: "TYPE_FP32", 10: "TYPE_FP16", 16: "TYPE_BF16", 11: "TYPE_FP64", 2: "TYPE_UINT8",
                       3: "TYPE_INT8", 6: "TYPE_INT32", 7: "TYPE_INT64"}


#: The keys Triton's ONNX Runtime backend takes for its TensorRT accelerator; any other fails the load
#: (triton-inference-server/onnxruntime_backend src/onnxruntime.cc, ModelState::LoadModel).
ORT_TRT_ACCELERATOR_KEYS = {"precision_mode", "max_workspace_size_bytes", "int8_calibration_table_name",
                            "int8_use_native_calibration_table", "trt_engine_cache_enable",
                            "trt_engine_cache_path"}
#: The parameters Triton's OpenVINO backend reads; others are silently ignored (openvino_backend
#: src/openvino.cc, ParseParameters and the bool flags), so writing one would be a setting that does nothing.
OPENVINO_PARAMETER_KEYS = {"INFERENCE_NUM_THREADS", "COMPILATION_NUM_THREADS", "HINT_BF16", "NUM_STREAMS",
                           "PERFORMANCE_HINT", "CPU_EXTENSION_PATH", "SKIP_OV_DYNAMIC_BATCHSIZE",
                           "ENABLE_BATCH_PADDING", "RESHAPE_IO_LAYERS"}


def model_config_schema() -> Any:
    """The `model_config_pb2` module, or a UserError saying what to install."""
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return model_config_pb2


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as Triton sees it: dims without the batch dimension, -1 = any."""

    name: str
    data_type: str  # TYPE_FP32, ...
    dims: tuple[int, ...]


@dataclass(frozen=True)
class TritonModel:
    """Everything a `config.pbtxt` says about one model, independent of the protobuf."""

    name: str
    platform: str  # tensorrt_plan | onnxruntime_onnx | "" for a backend-only model (openvino)
    backend: str  # tensorrt | onnxruntime | openvino
    model_filename: str  # model.plan | model.onnx
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    instance_kind: str  # KIND_GPU | KIND_CPU
    instance_count: int = 1
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    dynamic_batching: bool = True
    profiles: tuple[str, ...] = ()  # TensorRT: the optimization profiles every instance may pick from
    gpu_accelerator: dict[str, str] | None = None  # ONNX Runtime on GPU: the TensorRT EP's parameters
    parameters: dict[str, str] = field(default_factory=dict)  # backend parameters (string values)


def build_config(model: TritonModel) -> ModelConfig:
    schema = model_config_schema()
    config = schema.ModelConfig(name=model.name, max_batch_size=model.max_batch_size,
                                default_model_filename=model.model_filename)
    if model.platform:
        config.platform = model.platform
    else:
        config.backend = model.backend
    for specs, target in ((model.inputs, config.input), (model.outputs, config.output)):
        for spec in specs:
            target.add(name=spec.name, data_type=schema.DataType.Value(spec.data_type), dims=list(spec.dims))
    config.instance_group.add(kind=schema.ModelInstanceGroup.Kind.Value(model.instance_kind),
                              count=model.instance_count, profile=list(model.profiles))
    if model.dynamic_batching:
        config.dynamic_batching.preferred_batch_size.extend(model.preferred_batch_sizes)
        config.dynamic_batching.max_queue_delay_microseconds = model.max_queue_delay_us
    if model.gpu_accelerator is not None:
        accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
        accelerator = accelerators.add(name="tensorrt")
        accelerator.parameters.update(model.gpu_accelerator)
    for key, value in model.parameters.items():
        config.parameters[key].string_value = value
    return config


def config_text(model: TritonModel) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(build_config(model))


def parse_config(text: str, where: str = "config.pbtxt") -> ModelConfig:
    """Parse config text with Triton's schema; unknown fields or bad values are a UserError."""
    from google.protobuf import text_format

    schema = model_config_schema()
    try:
        return text_format.Parse(text, schema.ModelConfig())
    except text_format.ParseError as error:
        raise UserError(f"{where} does not parse as Triton's ModelConfig: {error}") from None


def semantic_problems(config: ModelConfig, profile_count: int | None = None) -> list[str]:
    """Rules Triton enforces at load time that the protobuf schema cannot express; [] when none is broken."""
    schema = model_config_schema()
    problems = []
    if not config.platform and not config.backend:
        problems.append("neither platform nor backend is set")
    if config.max_batch_size < 0:
        problems.append(f"max_batch_size {config.max_batch_size} is negative")
    if not config.input or not config.output:
        problems.append("the model needs at least one input and one output")
    for tensor in [*config.input, *config.output]:
        if not tensor.dims:
            problems.append(f"{tensor.name!r} has no dims")
        if any(d == 0 or d < -1 for d in tensor.dims):
            problems.append(f"{tensor.name!r} has dims {list(tensor.dims)}: each must be -1 or positive")
        if config.max_batch_size == 0 and tensor.dims and tensor.dims[0] == -1 and config.HasField(
                "dynamic_batching"):
            problems.append(f"{tensor.name!r}: with max_batch_size 0 the dims include the batch dimension, "
                            f"and dynamic batching needs max_batch_size >= 1")
    names = [t.name for t in [*config.input, *config.output]]
    if len(set(names)) != len(names):
        problems.append(f"tensor names repeat: {names}")
    if config.HasField("dynamic_batching"):
        if config.max_batch_size < 1:
            problems.append("dynamic batching needs max_batch_size >= 1")
        too_big = [b for b in config.dynamic_batching.preferred_batch_size
                   if b < 1 or b > config.max_batch_size]
        if too_big:
            problems.append(f"preferred batch sizes {too_big} are outside 1..max_batch_size "
                            f"({config.max_batch_size})")
    gpu_kind = schema.ModelInstanceGroup.Kind.Value("KIND_GPU")
    for group in config.instance_group:
        if config.platform == "tensorrt_plan" and group.kind != gpu_kind:
            problems.append("TensorRT plans run only on KIND_GPU instances")
        if config.backend == "openvino" and group.kind == gpu_kind:
            problems.append("Triton's OpenVINO backend supports only KIND_CPU instances")
        if group.profile and config.platform != "tensorrt_plan":
            problems.append("instance_group.profile is for TensorRT plans only")
        known = [str(i) for i in range(profile_count or 0)]
        if profile_count is not None and any(p not in known for p in group.profile):
            problems.append(f"profiles {list(group.profile)} are not all in 0..{profile_count - 1}")
    problems += _backend_parameter_problems(config)
    return problems


def _backend_parameter_problems(config: ModelConfig) -> list[str]:
    """Accelerator and backend parameters the serving backend would reject or ignore."""
    problems = []
    for accelerator in config.optimization.execution_accelerators.gpu_execution_accelerator:
        if config.platform != "onnxruntime_onnx" or accelerator.name != "tensorrt":
            problems.append(f"GPU accelerator {accelerator.name!r} is written only for onnxruntime_onnx")
            continue
        unknown = sorted(set(accelerator.parameters) - ORT_TRT_ACCELERATOR_KEYS)
        if unknown:
            problems.append(f"the ONNX Runtime backend rejects TensorRT accelerator parameters {unknown}")
        precision = accelerator.parameters.get("precision_mode", "FP32")
        if precision not in ("FP32", "FP16", "INT8"):
            problems.append(f"precision_mode {precision!r} is not FP32/FP16/INT8")
    if config.backend == "openvino":
        ignored = sorted(set(config.parameters) - OPENVINO_PARAMETER_KEYS)
        if ignored:
            problems.append(f"Triton's OpenVINO backend ignores the parameters {ignored}")
    return problems


def validate_config_text(text: str, where: str = "config.pbtxt", *,
                         profile_count: int | None = None) -> ModelConfig:
    """Parse and check one config; any problem is a UserError naming them all."""
    config = parse_config(text, where)
    problems = semantic_problems(config, profile_count)
    if problems:
        raise UserError(f"{where} is not a valid Triton model config: {'; '.join(problems)}.")
    return config


def default_preferred_batch_sizes(max_batch_size: int, tuned: Sequence[int] = ()) -> tuple[int, ...]:
    """The batch sizes the engine was tuned for (TensorRT profiles' opt), else the largest batch."""
    sizes = sorted({b for b in tuned if 1 < b <= max_batch_size} or {max_batch_size})
    return tuple(sizes)
