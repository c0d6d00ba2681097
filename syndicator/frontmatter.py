"""Front matter: split from the body, and loaded as YAML with bounds on size, nesting and aliases."""

from __future__ import annotations

from typing import Any

import yaml

from . import fastyaml
from .model import Invalid

try:  # libyaml is ~7x faster; fall back to the pure-Python safe loader where it is missing.
    SafeLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    SafeLoader = yaml.SafeLoader

# Bounds on what one YAML document may expand to; an alias bomb is cheap to load (shared references)
# but explodes when walked, so the walk itself is bounded.
MAX_NODES = 20_000
MAX_DEPTH = 32


def _check_shape(data: Any) -> None:
    """Walk the loaded document with a budget; aliases are followed, so bombs hit the budget."""
    budget = MAX_NODES
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise Invalid(f"front matter expands to more than {MAX_NODES} values (YAML alias bomb?)")
        if depth > MAX_DEPTH:
            raise Invalid(f"front matter is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node.keys())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def load_yaml(text: str, first_line: int = 1) -> Any:
    """Safe-load one YAML document, bounded; raises Invalid with a short reason located in the file, whose
    line `first_line` is the document's first (2 for front matter, after its `---` line)."""
    data = fastyaml.load(text, MAX_NODES, MAX_DEPTH)
    if data is not None:
        return data  # PyYAML's own result, bounds checked on the way (see fastyaml)
    try:
        data = yaml.load(text, Loader=SafeLoader)  # noqa: S506 - SafeLoader/CSafeLoader only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + first_line}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        if "constructor" in problem:
            problem = f"{problem} (only plain YAML is allowed)"
        raise Invalid(f"invalid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise Invalid(f"invalid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise Invalid(f"front matter is nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML's constructors raise these for well-formed but impossible values (found by fuzzing:
        # a timestamp in month 13 raises ValueError, not YAMLError).
        raise Invalid(f"invalid YAML value: {exc}") from None
    _check_shape(data)
    return data


def split_front_matter(text: str) -> tuple[str, str]:
    """Split `---` front matter from the Markdown body. Raises Invalid when there is none."""
    if not text.startswith("---"):
        raise Invalid("no YAML front matter (the file must start with a '---' line)")
    first_break = text.find("\n")
    if first_break == -1 or text[:first_break].strip() != "---":
        raise Invalid("no YAML front matter (the file must start with a '---' line)")
    rest = text[first_break + 1:]
    closing = _closing_line(rest)
    if closing is None:
        raise Invalid("front matter is not terminated (no closing '---' line)")
    start, end = closing
    return rest[:start], rest[end:].lstrip("\n")


def _closing_line(text: str) -> tuple[int, int] | None:
    """Start and end of the first line that is `---` or `...` with only spaces or tabs after it.

    str.find instead of a multi-line regex: the regex tried a match at every character of the front
    matter (~25 µs per file)."""
    probe = "\n" + text  # probe[i + 1] is text[i]: a line start is always just after a "\n"
    position = 0
    while True:
        dashes, dots = probe.find("\n---", position), probe.find("\n...", position)
        found = dashes if dots == -1 or -1 < dashes < dots else dots
        if found == -1:
            return None
        line_end = probe.find("\n", found + 4)
        if line_end == -1:
            line_end = len(probe)
        if not probe[found + 4:line_end].strip(" \t"):
            return found, line_end - 1
        position = found + 1

