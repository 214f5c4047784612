"""One YAML loader for every file and value facequant reads as YAML (--config, scenarios, device
profiles, name maps, camera presets, --model-override values): yaml's SafeLoader (no tags that
build Python objects) with aliases refused (a few hundred bytes of nested aliases, "billion
laughs", expand to billions of items), nesting capped, and a key given twice an error naming
the key and the line of each. Its errors are yaml.MarkedYAMLError, so every reader's existing
"not valid YAML at line N" message carries them; excerpt() keeps a value echoed in an error short."""

from __future__ import annotations

import reprlib
from typing import IO

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode

#: Deepest nesting of lists and mappings: facequant's files use two or three levels.
MAX_DEPTH = 32


class StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases, deeper than MAX_DEPTH nesting or duplicate keys."""

    def __init__(self, stream: str | bytes | IO[str] | IO[bytes]) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise ComposerError(None, None, f"aliases (*{excerpt(event.anchor)}) are not accepted", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[object, object]:
        first: dict[object, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode):
                continue  # a list or mapping as a key: the constructor refuses it as unhashable
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in first:
                raise ConstructorError(None, None, f"duplicate key {excerpt(key)} (first at line {first[key]})",
                                       key_node.start_mark)
            first[key] = line
        return super().construct_mapping(node, deep=deep)


def safe_load(stream: str | bytes | IO[str] | IO[bytes]) -> object:
    """yaml.safe_load with StrictLoader's refusals (raised as yaml.YAMLError)."""
    loader = StrictLoader(stream)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict = 2, 4, 4, 4
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 60, 60, 40


def excerpt(value: object) -> str:
    """repr(value), cut to a few dozen characters however large the value (an error message
    names a value; it never reprints a file)."""
    return _SHORT.repr(value)


def error_line(exc: yaml.YAMLError) -> int | None:
    """The 1-based line a YAML error points at, when it points at one."""
    mark = getattr(exc, "problem_mark", None)
    return mark.line + 1 if mark is not None else None


def error_reason(exc: yaml.YAMLError) -> str:
    """A YAML error as one short line (its problem, not the quoted file)."""
    text = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return text if len(text) <= 200 else text[:200] + "..."
