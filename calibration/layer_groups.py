"""Layers grouped as the network is built, and a ranking that opens only the groups that matter.

Ranking every layer alone costs one forward pass per layer: 880 passes on the official MIRNet.
But the quantization error of a network sits in a few places (the first convolutions, the
attention branches of some blocks), and error powers of independent layers add up, so a
whole block quantized alone shows how much all of its layers can matter together. The
ranking therefore probes groups first and splits only the ones with the most error,
best first, down to single layers while its probe budget lasts.

The groups come from the graph itself, not from a table per family: exporters name each node
after the module that made it (`/network/body/body.0/blocks.0.0/CA/conv_du.0/Conv`), so the
node names' path prefixes are the network's blocks, whatever the family. A group with more
than `FANOUT` parts is cut into `FANOUT` runs of consecutive parts (graph order, about equal
layer counts), so one layer among N is found in about FANOUT x log_FANOUT(N) probes, even in a
graph whose names carry no structure at all.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: Parts a group is split into at most, per probe round: fewer means more rounds, more means more
#: probes per round. Four keeps both near their minimum (FANOUT x log_FANOUT grows least at 3-4).
FANOUT = 4
#: The ranking's probe budget in multiples of sqrt(layer count): 208 probes for the 880 layers of
#: `full` (cpu target); see `probe_budget`.
PROBES_PER_SQRT_LAYER = 7


@dataclass(frozen=True)
class Group:
    """Layers (indices into the list the tree was built from) under one name prefix."""

    name: str  # the path prefix its layers share ("" for the root); a run of parts ends in "[i:j]"
    layers: tuple[int, ...]
    parts: tuple[Group, ...] = ()  # empty for a single layer


def layer_tree(layers: Sequence[Sequence[str]], fanout: int = FANOUT) -> Group:
    """The layers (each a list of node names, the first one naming it) as a tree of name prefixes,
    chains of single parts collapsed and every group cut to at most `fanout` parts."""
    paths = [tuple(nodes[0].split("/")[:-1]) for nodes in layers]
    return _subtree(list(range(len(layers))), paths, 0, fanout)


def _subtree(indices: list[int], paths: list[tuple[str, ...]], depth: int, fanout: int) -> Group:
    if len(indices) == 1:
        return Group("/".join(paths[indices[0]]), (indices[0],))
    below: dict[str, list[int]] = {}  # next path segment -> its layers, in graph order
    parts: list[Group] = []
    for index in indices:
        if len(paths[index]) > depth:
            below.setdefault(paths[index][depth], []).append(index)
        else:  # a layer named at this very prefix is a part of its own
            parts.append(Group("/".join(paths[index]), (index,)))
    parts += [_subtree(members, paths, depth + 1, fanout) for members in below.values()]
    if len(parts) == 1:
        return parts[0]
    parts.sort(key=lambda part: min(part.layers))
    return _runs("/".join(paths[indices[0]][:depth]), parts, fanout)


def _runs(name: str, parts: list[Group], fanout: int, offset: int = 0) -> Group:
    """A group of `parts`, nested as runs of consecutive parts when there are more than `fanout`."""
    layers = tuple(sorted(index for part in parts for index in part.layers))
    if len(parts) <= fanout:
        return Group(name, layers, tuple(parts))
    runs = _balanced_runs([len(part.layers) for part in parts], fanout)
    return Group(name, layers, tuple(
        parts[start] if end - start == 1
        else _runs(f"{name}[{offset + start}:{offset + end}]", parts[start:end], fanout, offset + start)
        for start, end in runs))


def _balanced_runs(sizes: list[int], count: int) -> list[tuple[int, int]]:
    """`count` non-empty runs (start, end) of consecutive items with about equal sums of `sizes`."""
    total, cuts, seen = sum(sizes), [0], 0
    for position, size in enumerate(sizes[:-1]):
        seen += size
        cuts_left = count - len(cuts)
        if cuts_left and (seen >= total * len(cuts) / count or len(sizes) - position - 1 == cuts_left):
            cuts.append(position + 1)
    return list(zip(cuts, [*cuts[1:], len(sizes)], strict=True))


def probe_budget(tree: Group, cost_cap: int | None = None) -> int:
    """How many probes the ranking may spend: grows as sqrt(layers), never more than one per layer.
    `cost_cap` lowers it, but not below what finding the worst single layer takes (`FANOUT`
    probes per level of the tree)."""
    layers = len(tree.layers)
    budget = min(layers, math.ceil(PROBES_PER_SQRT_LAYER * math.sqrt(layers)))
    return budget if cost_cap is None else min(budget, max(cost_cap, FANOUT * _depth(tree)))


def _depth(group: Group) -> int:
    return 1 + max((_depth(part) for part in group.parts), default=0) if group.parts else 0


@dataclass(frozen=True)
class RankedUnit:
    group: Group
    error: float  # output error (mean squared, vs FP32) with only this group's layers quantized


#: One round of probes: the output error of each layer set quantized alone, in order. The sets of
#: one round are independent, so a caller may run them concurrently (`mixed_precision` does).
ErrorsOf = Callable[[list[tuple[int, ...]]], list[float]]


def rank_best_first(tree: Group, errors_of: ErrorsOf, budget: int,
                    on_probes: Callable[[int], None] = lambda count: None) -> list[RankedUnit]:
    """Units (single layers, or groups left unopened) ordered so that keeping a prefix in float
    removes the most error per layer kept; `errors_of` answers a round of probes.

    Best first: the unit with the largest error is opened (its parts probed, one round) if it is a
    group, or placed next in the ranking if it is one layer. As long as errors add up, a layer
    placed so hurts more than every unit left, group or not, so the ranking's head is the exact
    per-layer ranking. When the next group would overrun `budget` probes, the units left follow in
    order of error per layer, each kept or quantized as a whole."""
    if not tree.parts:  # a single layer
        return [RankedUnit(tree, errors_of([tree.layers])[0])]
    first = _probed_parts(tree, errors_of, on_probes)
    return open_best_first(first, errors_of, budget - len(first), on_probes)


def open_best_first(units: Sequence[RankedUnit], errors_of: ErrorsOf, budget: int,
                    on_probes: Callable[[int], None] = lambda count: None) -> list[RankedUnit]:
    """`units` with their groups opened, the largest error first, while `budget` probes last, in
    ranking order (`rank_best_first`); the search also opens the units between its last miss and
    its first pass this way."""
    placed: list[RankedUnit] = []
    queue = [(-unit.error, min(unit.group.layers), unit) for unit in units]  # a max-heap of errors
    heapq.heapify(queue)
    probes = 0
    while queue:
        unit = queue[0][2]
        if unit.group.parts and probes + len(unit.group.parts) > budget:
            break
        heapq.heappop(queue)
        if unit.group.parts:
            probes += len(unit.group.parts)
            for part in _probed_parts(unit.group, errors_of, on_probes):
                heapq.heappush(queue, (-part.error, min(part.group.layers), part))
        else:
            placed.append(unit)
    rest = sorted((unit for _, _, unit in queue), key=lambda unit: unit.error / len(unit.group.layers),
                  reverse=True)
    return placed + rest


def _probed_parts(group: Group, errors_of: ErrorsOf, on_probes: Callable[[int], None]) -> list[RankedUnit]:
    errors = errors_of([part.layers for part in group.parts])
    on_probes(len(errors))
    return [RankedUnit(part, error) for part, error in zip(group.parts, errors, strict=True)]
