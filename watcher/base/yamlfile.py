"""YAML loading that remembers line numbers, so that config errors can say FILE:LINE: KEY.

PyYAML does the parsing (a safe loader: no Python objects from input). We only keep, for every
mapping and sequence, the line of each key or item.
"""

from __future__ import annotations

from typing import Any

import yaml

# An alias bomb ("billion laughs") expands a few lines into billions of nodes: refuse documents
# whose expanded size passes this many nodes.
MAX_NODES = 200_000


class YMap(dict[Any, Any]):
    """A mapping with `line` (of its first key) and `key_lines` (key -> line, 1-based)."""

    line: int | None = None
    key_lines: dict[Any, int]


class YList(list[Any]):
    line: int | None = None
    item_lines: list[int]


# libyaml's parser (PyYAML's C binding, in its wheels) where it is there: PyYAML's own scanner
# is quadratic in the nesting depth (a 10 KB document of nested brackets took 3 s), libyaml is
# linear and refuses nesting past its limit. Both are safe loaders and give the same marks.
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type, misc]
    pass


def _check_size(doc: Any) -> None:
    """PyYAML shares an aliased node instead of copying it, so a bomb loads fast and small;
    it explodes in whoever walks the tree. Walk it once here, with a budget."""
    budget = MAX_NODES
    stack = [doc]
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:
            raise YamlProblem(None, f"document too large after expanding aliases (over {MAX_NODES} values)")
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> YMap:
    loader.flatten_mapping(node)
    result = YMap()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> YList:
    result = YList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


class YamlProblem(Exception):
    def __init__(self, line: int | None, message: str):
        self.line = line
        self.message = message
        super().__init__(message)


def load(text: str) -> Any:
    """Parse one YAML document. Raises YamlProblem(line, message) on any YAML error."""
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        message = " ".join(p for p in (exc.context, exc.problem) if p) or str(exc)
        raise YamlProblem(line, message) from None
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as exc:
        raise YamlProblem(None, f"not valid YAML: {exc}") from None
    _check_size(doc)
    return doc
