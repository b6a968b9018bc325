"""Signature-checking doubles of the TensorRT and cuda-python bindings, generated from the real ones.

`tensorrt_double(real)` walks the real `tensorrt` pybind11 module of one version (imported on a
machine without TensorRT thanks to stub libraries, see bindings.py) and generates a module of the
same shape: every class with the methods and properties that version has, every enum with its
members. A call on the double is bound against the overloads pybind11 writes into each docstring
(`name(self: C, a: int, b: Dims = ...) -> R`): argument count, keyword names and argument types must
fit one of them, else `ApiMismatch` names the version and the signatures. Names the version lacks
raise AttributeError. A call then returns what `Fake` (fake_gpu.py) answers, checked against the
documented return type, or a double of that type.

`cuda_runtime_double(real)` does the same for `cuda.bindings.runtime` (Cython functions: their
`inspect.signature`, and the number and types of the values their docstring's "Returns" lists);
its enums and structs are the real ones.

What this proves: the project's code only touches names, signatures, keywords and enum members that
exist in that version. What it does not: that TensorRT accepts the network, builds or runs it.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.machinery
import inspect
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Offset of `tp_as_buffer` in CPython's PyTypeObject on 64-bit builds (20 pointer-sized fields in).
_TP_AS_BUFFER = 20 * ctypes.sizeof(ctypes.c_void_p)

INT_TYPES = {"int", "typing.SupportsInt", "SupportsInt", "typing.SupportsIndex", "SupportsIndex", "size_t"}
FLOAT_TYPES = {"float", "typing.SupportsFloat", "SupportsFloat"}
BUFFER_TYPES = {"buffer", "Buffer", "typing_extensions.Buffer", "collections.abc.Buffer", "bytes"}
SEQUENCE = re.compile(r"(?:collections\.abc\.|typing\.)?(?:Sequence|List|list|Iterable|tuple|Tuple)\[(.*)\]")
OPTIONAL = re.compile(r"(?:typing\.)?Optional\[(.*)\]")
UNION = re.compile(r"(?:typing\.)?Union\[(.*)\]")
#: Dunder methods whose pybind11 signatures are checked; the others keep Python's defaults.
CHECKED_DUNDERS = {"__init__", "__len__", "__getitem__", "__setitem__", "__iter__"}


class ApiMismatch(TypeError):
    """A call that no signature of this version of the bindings accepts."""


def _has_buffer_protocol(cls: type) -> bool:
    return ctypes.c_void_p.from_address(id(cls) + _TP_AS_BUFFER).value is not None


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """`text` split at `separator`s outside brackets: 'a: List[int, int], b' -> ['a: List[int, int]', 'b']."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += char in "([{<"
        depth -= char in ")]}>"
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


# ---------------------------------------------------------------------------------------------------
# pybind11 signatures


@dataclass(frozen=True)
class Param:
    name: str
    annotation: str
    has_default: bool = False
    positional_only: bool = False  # pybind11's unnamed `argN`, or before `/`
    keyword_only: bool = False  # after `*`
    variadic: str = ""  # "*" for *args, "**" for **kwargs


@dataclass(frozen=True)
class Overload:
    params: tuple[Param, ...]  # without `self`
    returns: str
    text: str  # the signature as the docstring writes it


def _parse_param(text: str, keyword_only: bool) -> Param:
    text = text.strip()
    if text.startswith("**"):
        return Param(text[2:].split(":")[0], "object", variadic="**")
    if text.startswith("*"):
        return Param(text[1:].split(":")[0], "object", variadic="*")
    name, _, rest = text.partition(":")
    annotation, has_default = rest, False
    pieces = split_top_level(rest, "=")
    if len(pieces) > 1:
        annotation, has_default = pieces[0], True
    name = name.strip()
    return Param(name, annotation.strip() or "object", has_default,
                 positional_only=bool(re.fullmatch(r"arg\d+", name)), keyword_only=keyword_only)


def parse_signature(text: str, *, drop_self: bool) -> Overload:
    """`(self: C, a: int, b: Dims = <...>) -> bool` (with or without the name in front) as an Overload."""
    arguments, returns = re.fullmatch(r"[\w.]*\((.*)\)\s*->\s*(.+)", text.strip()).groups()
    params, keyword_only = [], False
    for piece in split_top_level(arguments):
        if piece.strip() == "*":
            keyword_only = True
            continue
        if piece.strip() == "/":
            params = [Param(**{**p.__dict__, "positional_only": True}) for p in params]
            continue
        params.append(_parse_param(piece, keyword_only))
    if drop_self and params:
        params = params[1:]
    return Overload(tuple(params), returns.strip(), text.strip())


def parse_overloads(name: str, doc: str | None, *, drop_self: bool) -> list[Overload]:
    """Every signature of `name` in a pybind11 docstring (one, or the numbered list of an overloaded one)."""
    pattern = re.compile(rf"^\s*(?:\d+\.\s+)?{re.escape(name)}(\(.*\)\s*->.*)$")
    return [parse_signature(found[1], drop_self=drop_self)
            for found in map(pattern.match, (doc or "").splitlines()) if found]


# ---------------------------------------------------------------------------------------------------
# The generated TensorRT module


class DoubleEnumMeta(enum.EnumMeta):
    def __getattr__(cls, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(f"{cls._label}: tensorrt.{cls.__name__} has no member {name!r}")


class DoubleEnum(enum.Enum, metaclass=DoubleEnumMeta):
    """A pybind11 enum member: compared by identity, `int()`-able, with `.name` and `.value`."""

    def __int__(self) -> int:
        return int(self.value)

    def __index__(self) -> int:
        return int(self.value)


class DoubleMeta(type):
    def __getattr__(cls, name: str) -> Any:
        raise AttributeError(f"{cls._api.label}: tensorrt.{cls._real_name} has no attribute {name!r}")


class DoubleObject(metaclass=DoubleMeta):
    """Base of the generated classes. `_fake` holds what the fake GPU keeps about this object."""

    _api: TensorRTDouble
    _real_name = "object"

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # pybind11's "No constructor defined!"
        raise self._api.mismatch(f"tensorrt.{self._real_name} has no constructor")

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"{self._api.label}: tensorrt.{type(self)._real_name} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        generated = "_real_name" in type(self).__dict__  # a subclass by the project may add attributes
        if generated and not name.startswith("_fake") and not hasattr(type(self), name):
            self._api.mismatch(f"tensorrt.{type(self)._real_name} has no attribute {name!r} to set")
        object.__setattr__(self, name, value)


class CheckedCall:
    """A method or function of the real bindings: binds each call to one of its overloads or fails."""

    def __init__(self, api: TensorRTDouble, owner: str, name: str, overloads: list[Overload]):
        self.api, self.owner, self.name, self.overloads = api, owner, name, overloads

    @property
    def qualname(self) -> str:
        return f"{self.owner}.{self.name}" if self.owner else self.name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return _Unbound(self)
        return types.MethodType(self.call_on, obj)

    def call_on(self, obj: Any, *args: Any, **kwargs: Any) -> Any:
        overload, bound = self.bind(args, kwargs)
        self.api.returning.append(overload.returns)
        try:
            result = self.api.fake.answer(self, obj, bound)
        finally:
            self.api.returning.pop()
        if result is NotImplemented:
            return self.api.default(overload.returns)
        if not (result is None and self.api.is_class(overload.returns)) \
                and not self.api.conforms(result, overload.returns):
            raise AssertionError(f"the fake GPU answered {self.qualname} with {result!r}, which is not the "
                                 f"documented {overload.returns}")
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # module-level and static functions
        return self.call_on(None, *args, **kwargs)

    def bind(self, args: tuple, kwargs: dict) -> tuple[Overload, dict[str, Any]]:
        reasons = []
        for overload in self.overloads:
            bound = self._bind(overload, args, kwargs)
            if isinstance(bound, dict):
                return overload, bound
            reasons.append(f"{overload.text}: {bound}")
        shown = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        raise self.api.mismatch(f"tensorrt.{self.qualname}({shown}) fits no signature of this version: "
                                + " | ".join(reasons or ["no signature documented"]))

    def _bind(self, overload: Overload, args: tuple, kwargs: dict) -> dict[str, Any] | str:
        named = [p for p in overload.params if not p.variadic]
        variadic = {p.variadic for p in overload.params}
        positional = [p for p in named if not p.keyword_only]
        if len(args) > len(positional) and "*" not in variadic:
            return f"takes {len(positional)} positional arguments, got {len(args)}"
        bound = {p.name: value for p, value in zip(positional, args, strict=False)}
        for key, value in kwargs.items():
            param = next((p for p in named if p.name == key), None)
            if param is None:
                if "**" in variadic:
                    continue
                return f"no parameter named {key!r}"
            if param.positional_only:
                return f"{key!r} cannot be passed by keyword"
            if key in bound:
                return f"{key!r} given twice"
            bound[key] = value
        missing = [p.name for p in named if p.name not in bound and not p.has_default]
        if missing:
            return f"missing {', '.join(missing)}"
        for param in named:
            if param.name in bound and not self.api.conforms(bound[param.name], param.annotation):
                return f"{param.name}={bound[param.name]!r} is not {param.annotation}"
        return bound


class _Unbound:
    """`trt.ILogger.__init__` reached through the class: called with the instance first."""

    def __init__(self, call: CheckedCall):
        self._call = call

    def __call__(self, obj: Any, *args: Any, **kwargs: Any) -> Any:
        return self._call.call_on(obj, *args, **kwargs)


def _accessor(function: Callable) -> Overload:
    """A property getter's or setter's signature, `(arg0: C, arg1: int) -> None`; untyped if undocumented."""
    lines = (getattr(function, "__doc__", None) or "").strip().splitlines()
    if lines and re.fullmatch(r"[\w.]*\(.*\)\s*->.*", lines[0].strip()):
        return parse_signature(lines[0], drop_self=True)
    return Overload((Param("value", "object"),), "object", "(undocumented)")


class CheckedProperty:
    """A pybind11 property: its getter's and (when it has one) setter's types."""

    def __init__(self, api: TensorRTDouble, owner: str, name: str, real: property):
        self.api, self.owner, self.name = api, owner, name
        self.get_type = _accessor(real.fget).returns
        self.set_type = _accessor(real.fset).params[0].annotation if real.fset is not None else None

    @property
    def qualname(self) -> str:
        return f"{self.owner}.{self.name}"

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        stored = obj.__dict__.get("_fake_properties", {})
        if self.name in stored:
            return stored[self.name]
        answer = self.api.fake.answer(self, obj, {})
        return self.api.default(self.get_type) if answer is NotImplemented else answer

    def __set__(self, obj: Any, value: Any) -> None:
        if self.set_type is None:
            raise self.api.mismatch(f"tensorrt.{self.qualname} is read-only in this version")
        if not self.api.conforms(value, self.set_type):
            raise self.api.mismatch(f"tensorrt.{self.qualname} = {value!r}: not {self.set_type}")
        obj.__dict__.setdefault("_fake_properties", {})[self.name] = value


class TensorRTDouble:
    """The generated module of one TensorRT version, and the checks its calls make."""

    def __init__(self, real: types.ModuleType, version: str, fake: Any):
        self.label = f"TensorRT {version}"
        self.fake = fake
        self.mismatches: list[str] = []
        self.classes: dict[str, type] = {}
        self.enums: dict[type, type[DoubleEnum]] = {}
        self.from_sequence: set[str] = set()  # classes pybind11 builds from a list (Dims)
        self.returning: list[str] = []  # the documented return types of the calls being answered
        self.module = types.ModuleType("tensorrt", f"Signature-checking double of {self.label}")
        self.module.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
        self.module.__version__ = version
        for name, value in vars(real).items():
            if isinstance(value, type):
                setattr(self.module, name, self._double(value))
            elif callable(value) and not name.startswith("_"):
                setattr(self.module, name, CheckedCall(self, "", name, parse_overloads(name, value.__doc__,
                                                                                       drop_self=False)))

    def mismatch(self, message: str) -> ApiMismatch:
        """Record and return (to raise) a call this version does not have."""
        self.mismatches.append(message)
        return ApiMismatch(f"{self.label}: {message}")

    # -- generation

    def _double(self, real: type) -> type:
        if isinstance(getattr(real, "__members__", None), dict):
            return self._double_enum(real)
        if real.__name__ in self.classes:
            return self.classes[real.__name__]
        bases = tuple(self._double(b) for b in real.__bases__ if b.__module__.startswith("tensorrt"))
        if _has_buffer_protocol(real) and bytes not in bases:
            bases = (*bases, bytes)
        namespace: dict[str, Any] = {"_real_name": real.__name__, "_api": self, "__module__": "tensorrt"}
        cls = DoubleMeta(real.__name__, bases or (DoubleObject,), namespace)
        self.classes[real.__name__] = cls
        for name, value in vars(real).items():
            if isinstance(value, property):
                setattr(cls, name, CheckedProperty(self, real.__name__, name, value))
            elif isinstance(value, type):
                setattr(cls, name, self._double(value))
            elif isinstance(getattr(type(value), "__members__", None), dict):  # an enum member
                setattr(cls, name, self._double_enum(type(value))[value.name])
            elif isinstance(value, staticmethod):
                setattr(cls, name, staticmethod(CheckedCall(self, real.__name__, name, parse_overloads(
                    name, value.__func__.__doc__, drop_self=False))))
            elif callable(value) and (not name.startswith("__") or name in CHECKED_DUNDERS):
                overloads = parse_overloads(name, getattr(value, "__doc__", ""), drop_self=True)
                setattr(cls, name, CheckedCall(self, real.__name__, name, overloads))
                if name == "__init__" and any(
                        len(o.params) == 1 and SEQUENCE.fullmatch(o.params[0].annotation) for o in overloads):
                    self.from_sequence.add(real.__name__)  # Dims([1, 3, 64, 64])
        return cls

    def _double_enum(self, real: type) -> type[DoubleEnum]:
        if real not in self.enums:
            members = {name: int(value) for name, value in real.__members__.items()}
            self.enums[real] = DoubleEnum(real.__name__, members)
            self.enums[real]._label = self.label
            self.classes.setdefault(real.__name__, self.enums[real])
        return self.enums[real]

    # -- objects the fake GPU hands out

    def make(self, class_name: str, payload: Any = None, **state: Any) -> Any:
        """A new object of the generated class (its constructor is not called: TensorRT returns it)."""
        cls = self.classes[class_name]
        obj = bytes.__new__(cls, payload or b"") if issubclass(cls, bytes) else object.__new__(cls)
        object.__setattr__(obj, "_fake", {"payload": payload, **state})
        return obj

    def make_returned(self, payload: Any = None, **state: Any) -> Any:
        """A new object of the class the call being answered documents (`X`, `Optional[X]`, `list[X]`)."""
        annotation = self._short(self.returning[-1])
        for pattern in (OPTIONAL, SEQUENCE):
            found = pattern.fullmatch(annotation)
            annotation = self._short(found[1]) if found else annotation
        return self.make(annotation, payload, **state)

    def default(self, annotation: str) -> Any:
        """What a call returns when the fake GPU has nothing to say: a double of the documented type."""
        annotation = self._short(annotation)
        optional = OPTIONAL.fullmatch(annotation)
        if optional:
            return self.default(optional[1])
        if annotation in ("None", "object", "typing.Any"):
            return None
        if annotation == "bool":
            return True
        simple = {**dict.fromkeys(INT_TYPES, 0), **dict.fromkeys(FLOAT_TYPES, 0.0), "str": ""}
        if annotation in simple:
            return simple[annotation]
        if SEQUENCE.fullmatch(annotation):
            return []
        cls = self.classes.get(annotation)
        if isinstance(cls, type) and issubclass(cls, DoubleEnum):
            return next(iter(cls))
        if cls is not None:
            return self.make(annotation)
        return None

    # -- type checks

    @staticmethod
    def _short(annotation: str) -> str:
        return re.sub(r"\btensorrt(?:_bindings)?\.(?:tensorrt\.)?", "", annotation.strip())

    def is_class(self, annotation: str) -> bool:
        return self._short(annotation) in self.classes

    def conforms(self, value: Any, annotation: str) -> bool:
        """Whether pybind11 would accept `value` for `annotation` (unknown annotations accept anything)."""
        annotation = self._short(annotation)
        parts = split_top_level(annotation, "|")
        if len(parts) > 1:
            return any(self.conforms(value, part) for part in parts)
        for pattern, allows_none in ((OPTIONAL, True), (UNION, False)):
            found = pattern.fullmatch(annotation)
            if found:
                return (allows_none and value is None) or any(
                    self.conforms(value, part) for part in split_top_level(found[1]))
        if annotation == "None":
            return value is None
        if annotation in INT_TYPES:
            return isinstance(value, int) or hasattr(type(value), "__index__")
        if annotation in FLOAT_TYPES:
            return isinstance(value, int | float)
        if annotation == "bool":
            return isinstance(value, bool | int)
        if annotation == "str":
            return isinstance(value, str | bytes)
        if annotation in BUFFER_TYPES:
            try:
                memoryview(value)
            except TypeError:
                return False
            return True
        sequence = SEQUENCE.fullmatch(annotation)
        if sequence:
            inner = split_top_level(sequence[1])
            return isinstance(value, list | tuple) and (
                len(inner) != 1 or all(self.conforms(item, inner[0]) for item in value))
        cls = self.classes.get(annotation)
        if cls is None:
            return True
        if isinstance(value, cls):
            return True
        if issubclass(cls, DoubleEnum):
            return False
        if annotation in self.from_sequence and isinstance(value, list | tuple):
            return all(isinstance(item, int) for item in value)
        return value is None  # pybind11 passes None as a null pointer


def tensorrt_double(real: types.ModuleType, version: str, fake: Any) -> TensorRTDouble:
    return TensorRTDouble(real, version, fake)


# ---------------------------------------------------------------------------------------------------
# cuda-python


@dataclass(frozen=True)
class CudaReturn:
    count: int  # how many values the call returns, the error code first
    types: tuple[str, ...]


def parse_cuda_returns(doc: str | None) -> CudaReturn:
    """The "Returns" section of a cuda-bindings docstring: `cudaError_t` then `name : type` per value."""
    text = (doc or "").split("Returns\n-------\n", 1)
    if len(text) < 2:
        return CudaReturn(0, ())
    entries = []
    lines = text[1].splitlines()
    for index, line in enumerate(lines):
        if index + 1 < len(lines) and set(lines[index + 1].strip()) == {"-"}:
            break  # the next section's header
        if line and not line[0].isspace():
            entries.append(line.split(" : ")[-1].replace(":py:obj:`~.", "").strip("` "))
    return CudaReturn(len(entries), tuple(entries))


class CudaRuntimeDouble:
    """`cuda.bindings.runtime` with every function checked against the real one's signature."""

    def __init__(self, real: types.ModuleType, version: str, fake: Any):
        self.label = f"cuda-bindings {version}"
        self.real, self.fake = real, fake
        self.mismatches: list[str] = []
        self.module = types.ModuleType("cuda.bindings.runtime", f"Signature-checking double of {self.label}")
        for name in dir(real):
            value = getattr(real, name)
            if type(value).__name__ == "cython_function_or_method":
                setattr(self.module, name, self._checked(name, value))
            else:
                setattr(self.module, name, value)  # enums, structs, constants: the real ones

    def _checked(self, name: str, real: Callable) -> Callable:
        signature = inspect.signature(real)
        returns = parse_cuda_returns(real.__doc__)

        def call(*args: Any, **kwargs: Any) -> tuple:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as error:
                message = f"{name}{signature} does not accept ({args}, {kwargs}): {error}"
                self.mismatches.append(message)
                raise ApiMismatch(f"{self.label}: {message}") from None
            answer = self.fake.cuda(name, *args, **kwargs)
            if len(answer) != returns.count or not self._conforms(answer, returns.types):
                raise AssertionError(f"the fake GPU answered {name} with {answer!r}; {self.label} documents "
                                     f"{returns.count} values: {', '.join(returns.types)}")
            return answer

        call.__name__ = name
        return call

    def _conforms(self, answer: tuple, documented: tuple[str, ...]) -> bool:
        for value, name in zip(answer, documented, strict=True):
            expected = {"int": int, "bytes": bytes, "Any": object}.get(name) or getattr(
                self.real, name.split(".")[0], None)
            if isinstance(expected, type) and not isinstance(value, expected):
                return False
        return True
