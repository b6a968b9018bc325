"""Indexed name lookups for ONNX Runtime's quantizer, for the duration of one `quantize_static` call.

Why: ONNX Runtime's static quantizer finds tensors by scanning. `ONNXModel.replace_input_of_all_nodes`
walks every node of the graph for each tensor it quantizes, and `quant_utils.find_by_name` /
`ONNXModel.get_initializer` walk every initializer for each lookup: O(nodes x quantized tensors).
On the denoise demo model these scans were ~4 of the ~6 CPU-seconds of one quantization, and the
PSNR-budget search quantizes once per candidate. Here the same functions answer from a name index
and return exactly what the scans return, so the written model is byte-identical.

How the index stays exact. An index covers one protobuf container (`graph.node` or
`graph.initializer`) and maps names to the items that carried them when indexed:
- items appended since (ONNX Runtime adds nodes and initializers with `extend`) are indexed on the
  next lookup; any other change of the container (an item removed, the list cleared and refilled,
  which copies every item) is seen by its length or its last indexed item no longer being the same
  object, and the index is rebuilt;
- each candidate is checked against its current names before it is used, so a stale entry is skipped;
- a node input edited through `ONNXModel.replace_node_input` (the one other API that edits inputs of
  existing nodes) drops the node indexes; `replace_input_of_all_nodes` re-indexes what it edits.
What no index can see is an input edited in place behind these APIs. The reviewed ONNX Runtime
(`REVIEWED_SOURCES`) does that only in its QOperator-format operators, never on the QDQ path we
use; any other installed version (its quantization sources hash differently) runs the originals,
untouched. The originals are restored on exit, on error too.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, MutableSequence
from pathlib import Path

import onnx
from onnxruntime.quantization import onnx_model, quant_utils

#: sha256 of the `onnxruntime.quantization` package's Python sources that this module was checked
#: against (onnxruntime 1.32.0), as `quantizer_sources_sha256` computes it.
REVIEWED_SOURCES = "485a4eb24c64211d7253e4f52ceaf72b5a2f276483b258454540d439ac29ef31"

_ONNXModel = onnx_model.ONNXModel
_ORIGINAL_FIND_BY_NAME = quant_utils.find_by_name
_ORIGINAL_REPLACE_NODE_INPUT = _ONNXModel.replace_node_input
_lock = threading.Lock()
_depth = 0  # nested or concurrent `indexed_lookups` share one patching


@functools.cache
def quantizer_sources_sha256() -> str:
    """sha256 of the installed quantizer's Python sources (file names and contents, sorted)."""
    package = Path(quant_utils.__file__).parent
    digest = hashlib.sha256()
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


def is_reviewed() -> bool:
    """Whether the installed quantizer is the one whose internals `indexed_lookups` replaces."""
    return quantizer_sources_sha256() == REVIEWED_SOURCES


class _NameIndex:
    """Name -> the items of one protobuf container that carry it, in container order."""

    def __init__(self, container, names_of: Callable[[object], Iterable[str]]):
        self.container = container  # held, so its id is not reused while indexed
        self._names_of = names_of
        self._rebuild()

    def _rebuild(self) -> None:
        self._items: dict[str, list] = {}
        self._count = 0
        self._last = None
        self._add_tail()

    def _add_tail(self) -> None:
        for item in self.container[self._count:]:
            for name in self._names_of(item):
                self._items.setdefault(name, []).append(item)
        self._count = len(self.container)
        self._last = self.container[self._count - 1] if self._count else None

    def candidates(self, name: str) -> list:
        """Items that carried `name` (callers check each still does); appended items included."""
        count = len(self.container)
        if count < self._count or (self._count and self.container[self._count - 1] is not self._last):
            self._rebuild()
        elif count > self._count:
            self._add_tail()
        return self._items.get(name, [])

    def add(self, name: str, items: list) -> None:
        self._items.setdefault(name, []).extend(items)


class _Indexes:
    """The live indexes, by the id of the container they cover (cleared when the last user leaves)."""

    def __init__(self) -> None:
        self.nodes: dict[int, _NameIndex] = {}
        self.initializers: dict[int, _NameIndex] = {}

    @staticmethod
    def _get(table: dict[int, _NameIndex], container, names_of) -> _NameIndex:
        index = table.get(id(container))
        if index is None or index.container is not container:
            index = table[id(container)] = _NameIndex(container, names_of)
        return index

    def consumers(self, graph) -> _NameIndex:
        return self._get(self.nodes, graph.node, lambda node: dict.fromkeys(node.input))

    def initializer(self, container) -> _NameIndex:
        return self._get(self.initializers, container, lambda tensor: (tensor.name,))


_indexes = _Indexes()


def _find_initializer(container, name: str):
    """The first initializer of `container` named `name`, or None (what the scans return)."""
    for tensor in _indexes.initializer(container).candidates(name):
        if tensor.name == name:
            return tensor
    return None


def _find_by_name(item_name, item_list):
    """`quant_utils.find_by_name`, indexed when `item_list` is a graph's initializers."""
    if _is_initializer_container(item_list):
        return _find_initializer(item_list, item_name)
    return _ORIGINAL_FIND_BY_NAME(item_name, item_list)


def _is_initializer_container(items) -> bool:
    """A protobuf list of tensors (an empty one is scanned as fast as it is indexed)."""
    return (isinstance(items, MutableSequence) and hasattr(items, "add") and len(items) > 0
            and isinstance(items[0], onnx.TensorProto))


def _get_initializer(self, name):
    """`ONNXModel.get_initializer`, indexed."""
    return _find_initializer(self.model.graph.initializer, name)


def _replace_input_of_all_nodes(self, old_input_name, new_input_name):
    """`ONNXModel.replace_input_of_all_nodes`, visiting only the nodes that read `old_input_name`."""
    graph = self.model.graph
    if len(graph.node):  # the original asserts the names' types once per node
        assert isinstance(old_input_name, str)
        assert isinstance(new_input_name, str)
    index = _indexes.consumers(graph)
    readers = [node for node in index.candidates(old_input_name) if old_input_name in node.input]
    for node in readers:
        _ORIGINAL_REPLACE_NODE_INPUT(node, old_input_name, new_input_name)
    index.add(new_input_name, readers)


def _replace_node_input(node, old_input_name, new_input_name):
    """`ONNXModel.replace_node_input`; it edits a node the indexes cannot place, so they are dropped."""
    _indexes.nodes.clear()
    _ORIGINAL_REPLACE_NODE_INPUT(node, old_input_name, new_input_name)


def _find_by_name_modules() -> list:
    """The loaded quantizer modules that imported `find_by_name` by name (each holds its own reference)."""
    return [module for name, module in list(sys.modules.items())
            if name.startswith("onnxruntime.quantization") and module is not None
            and getattr(module, "find_by_name", None) is _ORIGINAL_FIND_BY_NAME]


@contextlib.contextmanager
def indexed_lookups() -> Iterator[bool]:
    """Within the block, ONNX Runtime's quantizer looks names up in indexes; yields whether it does
    (False: an unreviewed ONNX Runtime, left untouched). Reentrant and shared between threads."""
    global _depth
    if not is_reviewed():
        logging.getLogger(__name__).debug("onnxruntime's quantizer is not the reviewed one: no indexes")
        yield False
        return
    with _lock:
        if _depth == 0:
            patched = [(module, "find_by_name", _find_by_name) for module in _find_by_name_modules()]
            patched += [(_ONNXModel, "get_initializer", _get_initializer),
                        (_ONNXModel, "replace_input_of_all_nodes", _replace_input_of_all_nodes),
                        (_ONNXModel, "replace_node_input", staticmethod(_replace_node_input))]
            _saved.extend((owner, name, owner.__dict__[name]) for owner, name, _ in patched)
            for owner, name, replacement in patched:
                setattr(owner, name, replacement)
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for owner, name, original in reversed(_saved):
                    setattr(owner, name, original)
                _saved.clear()
                _indexes.nodes.clear()
                _indexes.initializers.clear()


_saved: list[tuple[object, str, object]] = []
