"""Plain text as XML and people can take it: bytes decoded to text, characters XML cannot carry dropped."""

from __future__ import annotations

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



def decode(raw: bytes) -> str:
    """UTF-8 text with BOM and CRLF normalised; binary files are rejected."""
    if b"\x00" in raw:
        raise Invalid("binary file (contains NUL bytes), not a Markdown item")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid(f"not UTF-8 text (invalid byte at offset {exc.start})") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
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

