"""An item's body: Markdown (or raw HTML) to sanitised HTML."""

from __future__ import annotations

import functools
import html
import re
import threading

from .text import clean_text

# A paragraph of words with plain punctuation, on one line: Markdown wraps it in <p> and escapes `&`,
# `<` and `>`, and the sanitiser leaves the result alone. Not plain: markup characters, leading spaces,
# Unicode spaces (the no-break space becomes &nbsp;), a `<` that could open a tag or autolink, a `&` in a
# paragraph with a `;` (it could be an entity). A `]` is plain: without a `[` it links nothing. Most
# bodies are only such paragraphs; skipping the Markdown and HTML parsers for them saves ~0.5 ms per
# body. tests/test_content.py compares this with the full path exhaustively on markup tokens and pairs,
# by hypothesis, and on generated bodies.
_PLAIN_PARAGRAPH = re.compile(
    r"[^\W_](?:[^\W_]|[ ,;'\"%?&<>\]\u2010-\u2027\u2030-\u205e\U0001f300-\U0001faff])*(?<! )")
_OPENING_ANGLE = re.compile(r"<(?! )")
_PARAGRAPH_BREAK = re.compile(r"\n{2,}")


# `<b>words</b>`: inline HTML that Markdown passes through and the sanitiser keeps as it is (the only
# markup in ~1.5% of generated bodies, which then cost a full Markdown pass each).
_BOLD = re.compile(r"<b>([^\W_](?:[^\W_]| (?! ))*(?<! ))</b>")
_escape = functools.partial(html.escape, quote=False)  # &, < and >, as Markdown escapes them in text


def _plain_paragraph_html(paragraph: str) -> str | None:
    bare = _BOLD.sub(r"\1", paragraph) if "<b>" in paragraph else paragraph
    if not _PLAIN_PARAGRAPH.fullmatch(bare):
        return None
    if "&" in bare and ";" in bare:
        return None
    if "<" in bare and _OPENING_ANGLE.search(bare):
        return None
    if bare is paragraph:
        return "<p>" + _escape(paragraph) + "</p>"
    html = []
    end = 0
    for match in _BOLD.finditer(paragraph):
        html += [_escape(paragraph[end:match.start()]), "<b>", match[1], "</b>"]
        end = match.end()
    return "<p>" + "".join(html) + _escape(paragraph[end:]) + "</p>"



def render_body(markdown_text: str) -> str:
    """Markdown to HTML, then sanitised: no script, iframe, event handlers or javascript: URLs."""
    if not markdown_text.strip():
        return ""
    html = []
    for paragraph in _PARAGRAPH_BREAK.split(markdown_text.strip("\n")):
        part = _plain_paragraph_html(paragraph)
        if part is None:
            return markdown_html(markdown_text)
        html.append(part)
    return clean_text("\n".join(html))


def markdown_html(markdown_text: str) -> str:
    """The full path of render_body: Python-Markdown ("extra"), then nh3."""
    import nh3

    html = _markdown().reset().convert(markdown_text)
    return clean_text(nh3.clean(html, url_schemes={"http", "https", "mailto"},
                                link_rel="noopener noreferrer nofollow"))


_local = threading.local()


def _markdown():
    """One Markdown converter per thread: building one costs more than converting a typical body."""
    converter = getattr(_local, "markdown", None)
    if converter is None:
        import markdown

        converter = _local.markdown = markdown.Markdown(extensions=["extra"], output_format="html")
    return converter

