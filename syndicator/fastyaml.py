"""A fast reader for the plain block YAML that front matter is nearly always written in.

PyYAML stays the parser of record. `load(text)` returns exactly what PyYAML's safe loader returns for
the documents it recognises (block mappings and sequences of one-line plain, single-quoted or simple
double-quoted scalars), and None for everything else, including every document PyYAML would reject:
the caller then asks PyYAML, which gives the real result or the real error. Anything unusual (flow
collections, anchors, aliases, tags, block scalars, multi-line scalars, escapes, tabs, comments after a
value, merge keys, a value PyYAML's constructors would refuse) takes that path.

Why: libyaml composes nodes in C, but PyYAML resolves and constructs every scalar in Python; that is
~0.5 ms for a typical 2 KB front matter, most of a cold start's time. This reader is one regex per
line. Scalars are resolved with PyYAML's own implicit-resolver table and built by its own constructors,
so `yes`, `0o17`, `1_000`, `2020-05-19T21:00:00Z` and `~` mean what PyYAML says. Property tests compare
the two on generated documents, and the test corpus (with hostile files) is read both ways.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import ScalarNode

# The table of the loader content.load_yaml uses (the C one where libyaml is present).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_RESOLVERS: dict[Any, list[tuple[str, re.Pattern]]] = _LOADER.yaml_implicit_resolvers
_CONSTRUCTOR = SafeConstructor()
# The resolver table is what PyYAML consults for plain scalars; wildcard (None) entries would apply to
# every value and are not handled here, so their presence switches this reader off.
ENABLED = None not in _RESOLVERS

# Anything but newline and plainly printable characters: tab (indentation rules), CR, NEL and the
# Unicode line and paragraph separators (line breaks to YAML 1.1), BOM (skipped at a line start), and
# the control characters libyaml refuses.
_SPECIAL = re.compile("[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
# libyaml gives up on a key whose `:` is more than 1024 characters from its start; real keys are short.
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_-]{0,199}):(?: +(.*))?")
_LINE = re.compile(r"^( *)([^ #\n](?:[^\n]*[^ \n])?) *$", re.M)
_SINGLE = re.compile(r"'((?:[^']|'')*)'")
# Double-quoted with the escapes emitters write on one line; others (\0, \e, \N, \/, line
# continuations, ...) are left to PyYAML.
_DOUBLE = re.compile(r'"((?:[^"\\]|\\(?:[\\"nt]|x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}))*)"')
_ESCAPE = re.compile(r'\\(?:([\\"nt])|x([0-9A-Fa-f]{2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8}))')
_SIMPLE_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t"}
# A plain scalar may not start with an indicator (a lone `-`, `?` or `:` before text is legal YAML, but
# rare enough to leave to PyYAML).
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")


class _Unsure(Exception):
    """The document is outside what this reader recognises; PyYAML decides."""


def load(text: str, max_nodes: int, max_depth: int) -> dict | None:
    """PyYAML's safe-load result for a recognised block-mapping document, else None.

    None also when the result would exceed `max_nodes` values or `max_depth` levels, so that the caller's
    own bounded check reports it."""
    if not ENABLED or _SPECIAL.search(text):
        return None
    # (indent, content) of each line; blank lines and whole-line comments carry nothing between block
    # entries. Indents stay strings of spaces: they compare like their lengths.
    lines: list[tuple[str, str]] = _LINE.findall(text)
    # A line adds at most three values (`- key: value`), and the document itself counts as one, as in
    # frontmatter._check_shape: below this many lines the node bound cannot be reached, above it PyYAML and
    # the exact check decide.
    if not lines or 3 * len(lines) + 1 > max_nodes:
        return None
    try:
        # Only a line indented less than 0 could end the top-level mapping early, so it reads them all.
        return _mapping(lines, 0, "", 1, max_depth)[0]
    except (_Unsure, RecursionError):
        return None


def _mapping(lines: list[tuple[str, str]], i: int, indent: str, depth: int, max_depth: int) -> tuple[dict, int]:
    if depth > max_depth:
        raise _Unsure
    result: dict = {}
    n = len(lines)
    while i < n:
        ind, content = lines[i]
        if ind != indent:
            if ind < indent:
                break
            raise _Unsure  # a continuation line or a wrongly indented entry
        key, value = _entry(content)
        i += 1
        if type(value) is _Marker:
            if value is _FRESH_LIST:
                value = []
            elif value is _FRESH_DICT:
                value = {}
            elif i < n and lines[i][0] > indent:
                value, i = _block(lines, i, depth + 1, max_depth)
            elif i < n and lines[i][0] == indent and lines[i][1][:2] == "- ":
                value, i = _sequence(lines, i, indent, depth + 1, max_depth)  # indentless sequence
            else:
                value = None
        result[key] = value
    return result, i


class _Marker:
    """What _entry returns in place of a value that is not a shareable scalar."""


_NO_VALUE, _FRESH_LIST, _FRESH_DICT = _Marker(), _Marker(), _Marker()


# Only texts up to this long are remembered (below), so files of long unique lines cannot make the
# caches hold megabytes each.
MEMO_WIDTH = 200


def _remembered(function: Callable[[str], Any], size: int) -> Callable[[str], Any]:
    """`function` with an LRU cache of `size` results for texts up to MEMO_WIDTH characters."""
    cached = functools.lru_cache(maxsize=size)(function)

    def call(text: str) -> Any:
        return cached(text) if len(text) <= MEMO_WIDTH else function(text)

    call.cache_info = cached.cache_info  # type: ignore[attr-defined]
    return call


# Most lines of front matter recur from one file to the next (`type: article`, `  width: 50`, a
# provider's lines): remembering a line's key and value saves its regex and resolver work. Only
# immutable values are remembered; `[]` and `{}` are built fresh for every document.
def _read_entry(content: str) -> tuple[Any, Any]:
    """(key, value) of a `key: value` line, with a _Marker for no value, `[]` or `{}`."""
    match = _KEY.fullmatch(content)
    if match is None:
        raise _Unsure
    key, rest = match.groups()
    if not rest:
        return _plain(key), _NO_VALUE
    return _plain(key), (_FRESH_LIST if rest == "[]" else _FRESH_DICT if rest == "{}" else _scalar(rest))


_entry = _remembered(_read_entry, 8192)


def _block(lines: list[tuple[str, str]], i: int, depth: int, max_depth: int) -> tuple[Any, int]:
    indent, content = lines[i]
    if content[:2] == "- ":
        return _sequence(lines, i, indent, depth, max_depth)
    return _mapping(lines, i, indent, depth, max_depth)


def _sequence(lines: list[tuple[str, str]], i: int, indent: str, depth: int, max_depth: int) -> tuple[list, int]:
    if depth > max_depth:
        raise _Unsure
    result: list = []
    n = len(lines)
    while i < n:
        ind, content = lines[i]
        if ind != indent or content[:2] != "- ":
            break  # the mapping this sequence belongs to decides whether that line fits there
        rest = content[2:].lstrip(" ")
        if _KEY.fullmatch(rest):
            # `- key: value` opens a mapping whose keys line up with this first one
            lines[i] = (ind + " " * (len(content) - len(rest)), rest)
            value, i = _mapping(lines, i, lines[i][0], depth + 1, max_depth)
        else:
            value = _scalar(rest)  # (a nested `- -` sequence starts with an indicator: PyYAML's)
            i += 1
        result.append(value)
    return result, i


def _scalar(text: str) -> Any:
    """The value of a one-line scalar (leading and trailing spaces already removed)."""
    first = text[0]
    if first not in _INDICATORS:
        if ": " in text or " #" in text or text[-1] == ":":
            raise _Unsure
        return _plain(text)
    if first == '"':
        match = _DOUBLE.fullmatch(text)
        if match is None:
            raise _Unsure
        inner = match.group(1)
        return _ESCAPE.sub(_unescape, inner) if "\\" in inner else inner
    if first == "'":
        match = _SINGLE.fullmatch(text)
        if match is None:
            raise _Unsure
        return match.group(1).replace("''", "'")
    if text == "[]":
        return []
    if text == "{}":
        return {}
    raise _Unsure


def _plain(text: str) -> Any:
    """A plain scalar, typed the way PyYAML's safe loader types it."""
    return _resolved(text) if text[0] in _RESOLVERS else text


# Texts some resolver may claim (keys like `title` or `type`, numbers, `true`) repeat from one front
# matter to the next; a hit costs a lookup instead of a few regex matches. Every value it holds is
# immutable (str, int, float, bool, None, date, datetime), so sharing one among documents is safe;
# a text PyYAML must decide raises and is not remembered.
def _resolve(text: str) -> Any:
    for tag, pattern in _RESOLVERS[text[0]]:
        if pattern.match(text):
            return _construct(tag, text)
    return text


_resolved = _remembered(_resolve, 4096)


# The timestamp emitters write (and our corpus holds): UTC, to the second.
_UTC_TIMESTAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z")


def _construct(tag: str, text: str) -> Any:
    if tag == "tag:yaml.org,2002:int" and text.isdigit() and text[0] != "0":
        return int(text)  # what construct_yaml_int computes for a plain decimal, without the detour
    if tag == "tag:yaml.org,2002:timestamp":
        match = _UTC_TIMESTAMP.fullmatch(text)
        if match is not None:  # what construct_yaml_timestamp computes for it
            try:
                year, month, day, hour, minute, second = map(int, match.groups())
                return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.timezone.utc)
            except ValueError:
                raise _Unsure from None  # out of range: PyYAML raises its own error
    try:
        return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, ScalarNode(tag, text))
    except Exception:  # noqa: BLE001 - a value PyYAML refuses, or a tag with no constructor of its own
        # (merge `<<`, value `=`): PyYAML raises its own error
        raise _Unsure from None


def _unescape(match: re.Match) -> str:
    simple, *codes = match.groups()
    if simple is not None:
        return _SIMPLE_ESCAPES[simple]
    value = int(next(code for code in codes if code is not None), 16)
    if 0xD800 <= value <= 0xDFFF or value > 0x10FFFF:
        raise _Unsure  # libyaml refuses these escape codes
    return chr(value)
