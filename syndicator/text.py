"""Text as its publisher meant it: bytes decoded (mojibake repaired), and plain-text fields with their
HTML entities resolved, tags stripped, whitespace collapsed and characters XML cannot carry dropped.
Each output format escapes the result exactly once.
"""

from __future__ import annotations

import html
import re

from .model import Invalid

MAX_TEXT = 100_000  # characters kept of any single text field
# Characters XML 1.0 forbids (C0 controls except tab/newline/CR, surrogates, U+FFFE/U+FFFF), and the C1
# controls it discourages: readers and browsers reinterpret those as Windows-1252 (found by property tests).
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def clean_text(value: str, limit: int = MAX_TEXT) -> str:
    """Drop characters XML cannot carry and surrounding whitespace; cap the length."""
    # Printable text (most fields) holds nothing _XML_FORBIDDEN matches: all it matches is unprintable.
    text = (value if value.isprintable() else _XML_FORBIDDEN.sub("", value)).strip()
    return text[:limit]


# A tag as HTML parsers see one: `<` then a letter, `/`, `!` or `?` (so "a < b > c" is text), to the next `>`.
# Block-level tags stand between words; inline ones (b, em, a, span...) inside them.
_TAG = re.compile(r"<(?:/?(p|br|div|li|ul|ol|tr|td|th|h[1-6]|hr|blockquote|table)\b|[A-Za-z/!?])[^<>]*>", re.I)


def _untagged(value: str) -> str:
    return _TAG.sub(lambda m: " " if m[1] else "", value)
_SPACES = re.compile(r"\s{2,}|[^\S ]")  # runs of whitespace, or any whitespace but a plain space


def plain_text(value: str, limit: int = MAX_TEXT) -> str:
    """A plain-text field as a reader should see it: tags stripped (jekyll-feed's strip_html, WordPress's
    the_title_rss), entities resolved once (`&#8217;` -> ’, `&amp;` -> &), whitespace (`&nbsp;` included)
    collapsed to single spaces, and characters XML cannot carry dropped. A tag that only appears once
    entities are resolved (`&lt;iframe&gt;`) is stripped too: readers differ on whether a title is HTML,
    and to half of them it would be markup."""
    if not value.isascii():  # again: a YAML escape (\x9d) may have been the end of a mojibake sequence
        value = repair_mojibake(value)
    if "<" in value:
        value = _untagged(value)
    if "&" in value:
        value = html.unescape(value)
        if "<" in value:
            value = _untagged(value)
    if not value.isprintable():  # before the spaces: a dropped control character may sit between two
        value = _XML_FORBIDDEN.sub("", value)
    if _SPACES.search(value):
        value = " ".join(value.split())
    return value.strip()[:limit]


def drop_empty_paragraphs(body_html: str) -> str:
    """Body HTML without paragraphs that hold nothing but (non-breaking) spaces: `<p>&nbsp;</p>`."""
    return _EMPTY_PARAGRAPH.sub("", body_html) if "<p" in body_html else body_html


_EMPTY_PARAGRAPH = re.compile(r"<p>(?:\s|&nbsp;|&#160;|&#xa0;|\xa0)*</p>\n?", re.I)
# Mojibake is UTF-8 read as cp1252 or Latin-1: a lead byte's character (Â Ã Ä Å â ...) followed by one
# that stood for a continuation byte. Only text with such a pair is handed to ftfy, which decides.
_MOJIBAKE = re.compile("[\u00c2-\u00c5\u00e2\u00ef\u00f0][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178"
                       "\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026"
                       "\u2030\u2039\u203a\u20ac\u2122]")


def repair_mojibake(text: str) -> str:
    """`text` with UTF-8-read-as-cp1252 sequences repaired (`Itâ€™s` -> It’s), where ftfy detects them."""
    if not _MOJIBAKE.search(text):
        return text
    import ftfy

    return ftfy.fix_encoding(text)


def decode(raw: bytes) -> str:
    """UTF-8 text with BOM and CRLF normalised; binary files are rejected."""
    if b"\x00" in raw:
        raise Invalid("binary file (contains NUL bytes), not a Markdown item")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid(f"not UTF-8 text (invalid byte at offset {exc.start})") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Before the control characters go: cp1252 mojibake of a closing quote ends in U+009D.
    if not text.isascii():
        text = repair_mojibake(text)
    # Control characters are dropped rather than rejected: YAML and XML both refuse them, readers never
    # need them, and one stray escape code should not hide a story.
    if _maybe_forbidden(raw):
        text = _XML_FORBIDDEN.sub("", text)
    return text


# Every byte that starts the UTF-8 form of a character _XML_FORBIDDEN matches (valid UTF-8 holds no
# surrogates): C0 controls but tab, LF and CR; DEL; 0xC2, the lead byte of C1 controls (and of common
# characters such as the no-break space, so it only asks for a closer look); 0xEF, lead byte of U+FFFE
# and U+FFFF. Checking bytes with translate is C at memcpy speed; the regex costs ~5 ns a character.
_FORBIDDEN_LEADS = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0xC2, 0xEF])


def _maybe_forbidden(raw: bytes) -> bool:
    return len(raw.translate(None, _FORBIDDEN_LEADS)) != len(raw)

