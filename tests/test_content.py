"""Reading one file: the seed item, every hostile case, dates, URLs, ids and sanitised bodies."""

from __future__ import annotations

import datetime as dt

import pytest
from helpers import SEED, generate
from hypothesis import given, settings
from hypothesis import strategies as st

from syndicator import body as body_module
from syndicator import model, urls
from syndicator import text as text_module
from syndicator.body import markdown_html, render_body
from syndicator.frontmatter import split_front_matter
from syndicator.model import Item, Problem
from syndicator.reader import read_item, read_topic
from syndicator.text import decode
from syndicator.urls import absolute_url, canonical_url, item_id, parsed_absolute_url, slugify

UTC = dt.timezone.utc


def item(text: str, **kw) -> Item | Problem:
    return read_item(text.encode("utf-8"), "news/x.md", **kw)


BASE = """---
title: "A story"
publishedDateTime: 2024-01-02T03:04:05Z
webUrl: "https://news.example.org/a-story"
topics:
  - Azure
"""


def test_seed_item_reads_every_field():
    result = read_item(SEED.read_bytes(), "news/seed.md")
    assert isinstance(result, Item)
    assert result.title == "Microsoft builds massive supercomputer for smarter AI"
    assert result.url == "https://www.cnet.com/news/microsoft-builds-massive-supercomputer-for-smarter-ai/"
    assert result.published == dt.datetime(2020, 5, 19, 21, 0, tzinfo=UTC)
    assert result.provider.name == "CNET" and result.provider.domain == "cnet.com"
    assert result.topics == ("Azure",)
    assert [(i.width, i.height, i.mime_type) for i in result.images] == [(756, 567, "image/jpeg")]
    assert [r.title for r in result.related] == [
        "Microsoft Builds Massive Supercomputer For OpenAI",
        "Microsoft Says It’s Built a Top-Five Supercomputer in the Cloud for AI",  # its mojibake repaired
    ]
    assert result.related[0].provider == "Forbes"
    assert result.id.startswith("urn:uuid:")


@pytest.mark.parametrize("value, expected", [
    ("2024-01-02T03:04:05Z", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("'2024-01-02T03:04:05Z'", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("'2024-01-02T05:04:05+02:00'", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2024-01-02", dt.datetime(2024, 1, 2, tzinfo=UTC)),
    ("'2024-01-02 03:04:05'", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),  # naive means UTC
    ("2024-01-02 03:04:05", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
])
def test_dates_in_every_shape_are_utc(value, expected):
    text = BASE.replace("2024-01-02T03:04:05Z", value) + "---\n"
    assert item(text).published == expected


def test_bad_date_is_a_problem_naming_the_field():
    result = item(BASE.replace("2024-01-02T03:04:05Z", "'last tuesday'") + "---\n")
    assert isinstance(result, Problem)
    assert "publishedDateTime" in result.reason and "last tuesday" in result.reason


@pytest.mark.parametrize("text, words", [
    ("no front matter here\n", "no YAML front matter"),
    ("---\ntitle: [unclosed\n---\n", "invalid YAML at line"),
    (BASE, "not terminated"),
    (BASE.replace('title: "A story"\n', "") + "---\n", "missing required field 'title'"),
    (BASE.replace("topics:\n  - Azure\n", "topics: {a: 1}\n") + "---\n", "'topics' must be a list"),
    (BASE + "images: 5\n---\n", "'images' must be a list"),
    (BASE + "evil: !!python/object/apply:os.system ['true']\n---\n", "constructor"),
    (BASE.replace("https://news", "javascript://news") + "---\n", "not an http(s) URL"),
    ("---\n- a list\n---\n", "must be a mapping"),
    (BASE + "published: maybe\n---\n", "'published' must be true or false"),
])
def test_broken_files_are_problems_with_reasons(text, words):
    result = item(text)
    assert isinstance(result, Problem), result
    assert words in result.reason
    assert "\n" not in result.reason


def test_binary_and_non_utf8_are_problems():
    assert "binary" in read_item(b"\x00\x01\xff", "x.md").reason
    assert "UTF-8" in read_item(b"---\ntitle: \xff\xfe\n---\n", "x.md").reason


def test_bom_and_crlf_are_served():
    result = item("\ufeff" + (BASE + "---\nbody text\n").replace("\n", "\r\n"))
    assert isinstance(result, Item) and result.title == "A story"
    assert "body text" in result.body_html


def test_topics_as_a_string_is_one_topic():
    result = item(BASE.replace("topics:\n  - Azure\n", "topics: C# & .NET\n") + "---\n")
    assert result.topics == ("C# & .NET",)


def test_control_characters_are_stripped():
    result = item(BASE.replace('"A story"', '"\x0b\x1bA\x07 story"') + "---\n")
    assert isinstance(result, Item)
    assert result.title == "A story"


def test_alias_bomb_is_bounded_problem():
    bomb = ("---\na: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
            "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
            "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\ntitle: bomb\n---\n")
    result = item(bomb)
    assert isinstance(result, Problem) and "alias" in result.reason


def test_deep_nesting_is_a_problem():
    result = item("---\ntitle: x\nnest: " + "[" * 200 + "]" * 200 + "\n---\n")
    assert isinstance(result, Problem) and "nested deeper" in result.reason


def test_oversized_file_is_a_problem():
    result = read_item(b"x" * 2000, "big.md", max_bytes=1000)
    assert isinstance(result, Problem) and "over the 1,000-byte limit" in result.reason


def test_relative_urls_resolve_against_site_url_or_are_dropped():
    text = BASE + "images:\n  - url: /assets/a.png\n    width: 10\n    height: 20\n  - url: javascript:alert(1)\n---\n"
    dropped = item(text)
    assert dropped.images == ()
    resolved = item(text, site_url="https://site.example.com/blog")
    assert [i.url for i in resolved.images] == ["https://site.example.com/blog/assets/a.png"]


def test_body_markdown_is_rendered_and_sanitised():
    body = ("Hello *world*\n\n<script>alert(1)</script>\n\n<iframe src='https://evil'></iframe>\n\n"
            "<img src=x onerror=alert(1)>\n\n[click](javascript:alert(1))\n")
    result = item(BASE + "---\n" + body)
    html = result.body_html
    assert "<em>world</em>" in html
    for bad in ("<script", "<iframe", "onerror", "javascript:"):
        assert bad not in html.lower()


def test_id_survives_rename_rehosting_scheme_and_tracking():
    ids = {
        item_id("https://www.example.org/story/"),
        item_id("http://example.org/story"),
        item_id("https://example.org/story?utm_source=x&utm_medium=y"),
        item_id("https://EXAMPLE.org:443/story#comments"),
    }
    assert len(ids) == 1
    assert item_id("https://example.org/other") not in ids
    # The file name plays no part.
    a = read_item(SEED.read_bytes(), "news/a.md")
    b = read_item(SEED.read_bytes(), "archive/2020/renamed.md")
    assert a.id == b.id


def test_canonical_url_keeps_meaningful_parameters_in_order():
    assert canonical_url("https://x.org/watch?v=2&a=1&utm_campaign=z") == "x.org/watch?a=1&v=2"


def test_explicit_id_wins():
    assert item(BASE + "id: tag:example.org,2024:story-1\n---\n").id == "tag:example.org,2024:story-1"


def test_draft_flag_and_original_url():
    text = BASE.replace("webUrl", "originalUrl") + "published: false\n---\n"
    result = item(text)
    assert result.draft is True and result.url == "https://news.example.org/a-story"


def test_slugs_are_ascii_and_stable():
    assert slugify("C# & .NET") == "c-sharp-and-net"
    assert slugify("Données") == "donnees"
    assert slugify("東京") == slugify("東京") and slugify("東京").startswith("topic-")
    assert slugify("東京") != slugify("大阪")


def test_topic_definition_files():
    jekyll = read_topic(b"taxonomy: topic\n_id: azure\nname: Azure\nkeywords: [azure]\nhashtags: ['#Azure']\n",
                        "_data/topics/azure.yaml")
    assert jekyll.slug == "azure" and jekyll.keywords == ("azure",) and jekyll.hashtags == ("#Azure",)
    assert read_topic(b"name: Not a topic\n", "config/site.yaml") is None
    missing = read_topic(b"_id: x\n", "topics/x.yaml")
    assert isinstance(missing, Problem) and "name" in missing.reason


@pytest.mark.parametrize("text, words", [
    # Inputs the fuzzer found (fuzz/fuzz_front_matter.py): each used to raise out of the reader.
    ("---\ntitle: x\nwhen: 2024-13-01 10:00:00\n---\n", "month must be in 1..12"),
    ("---\ntitle: x\nwhen: 2024-01-01 10:00:61\n---\n", "second must be in 0..59"),
])
def test_impossible_yaml_values_are_problems(text, words):
    result = item(text)
    assert isinstance(result, Problem) and "invalid YAML value" in result.reason and words in result.reason


@pytest.mark.parametrize("url", ["http://[abc/story", "https://news.example.org:99999/x", "http://x.org:port/"])
def test_malformed_urls_are_rejected_not_raised(url):
    result = item(BASE.replace("https://news.example.org/a-story", url) + "---\n")
    assert isinstance(result, Problem) and "not an http(s) URL" in result.reason


def test_url_scheme_case_is_normalised():
    result = item(BASE.replace("https://news", "HttPs://news") + "---\n")
    assert result.url == "https://news.example.org/a-story"


# Paragraphs of words and plain punctuation (what the plain-paragraph shortcut accepts) with up to two
# tokens only Markdown and the sanitiser know how to treat: emphasis, lists, headings, quotes, entities,
# tags, links, code, tables, footnotes, abbreviations, attribute lists, line breaks, no-break spaces.
_PLAIN = ["a", "Word", "9", "2020", "é", "東京", "Zürich", " ", " ", " ", "  ", ",", ";", "'", '"', "%", "?"]
_MARKUP = ["*", "**", "_", "__", "1.", "1)", "-", "+", "#", ">", "&", "&amp;", "<b>", "</b>", "<", "[x](y)", "[x]",
           "`", "```", "~~~", "|", ":", "=", "---", "[^1]", "*[HTML]:", "{: .c}", "\\", "!", ".", "\u00a0", "\t",
           "\n", "  \n", "\n    ", "🚀", "http://x.org", "<http://x.org>", "x_y", "*a*", "_a_", "1. a", "# a", "a\n---",
           "]", "]]>", "a]", "&T", "&#1;", "&x;", "&", ";", "< ", "<1", "a<b", ";&", ">a", "<", "…", "—", "“x”",
           "\u2028", "\u205f", "\u3000", "\u200b", "\ufdd0", "<b>x</b>", "<b>x y</b>", "<b> x</b>", "<b>x </b>",
           "<b></b>", "<B>x</B>", "<b>x<b>", "<b>x&y</b>", "<b>*x*</b>", "<b>é 1</b>", "<b>x</b>>", "<b>x  y</b>"]
_WORDS = st.lists(st.sampled_from(_PLAIN) | st.text(st.characters(categories=["L", "N", "M", "P", "S"]), max_size=3),
                  max_size=8).map("".join)
_PARAGRAPH = st.tuples(_WORDS, st.sampled_from(["", "", *_MARKUP]), _WORDS, st.sampled_from(["", "", *_MARKUP]),
                       _WORDS).map("".join)


@settings(max_examples=600, deadline=None, derandomize=True)
@given(st.lists(_PARAGRAPH, min_size=1, max_size=4), st.sampled_from(["\n\n", "\n\n\n", "\n"]))
def test_plain_paragraphs_render_exactly_as_markdown_does(paragraphs, separator):
    """render_body's shortcut for plain paragraphs gives the full Markdown + sanitiser output, byte for byte."""
    body = separator.join(paragraphs)
    assert render_body(body) == markdown_html(body)


def test_markup_tokens_and_pairs_render_exactly_as_markdown_does():
    """Each markup token and each pair of them, around and inside plain words (exhaustive)."""
    bodies = [shape.format(token) for token in _MARKUP + _PLAIN for shape in ["{}", "a{}", "{}a", "a {} b", "a{}b"]]
    bodies += [shape.format(first, second) for first in _MARKUP for second in _MARKUP
               for shape in ["{0}a{1}", "a{0}b{1}c", "a {0} b {1} c", "{0} a\n\n{1}"]]
    for body in bodies:
        assert render_body(body) == markdown_html(body), body


def test_generated_bodies_render_exactly_as_markdown_does(tmp_path, monkeypatch):
    """Every body of a generated corpus (words, accents, tricky markup) renders the same both ways, and
    most of them take the shortcut (the reason it exists)."""
    root = generate(tmp_path / "c", items=400, topics=5)
    bodies = [split_front_matter(decode(path.read_bytes()))[1] for path in (root / "news").iterdir()]
    # Markdown bodies: the raw HTML bodies the corpus also has (samples, players) are the full path's.
    bodies = [body for body in bodies if body.strip() and not body.lstrip().startswith("<")]
    assert len(bodies) > 50
    expected = [markdown_html(body) for body in bodies]
    full_path = []  # bodies that render_body handed to Markdown (the real function, counted)
    monkeypatch.setattr(body_module, "markdown_html", lambda text: full_path.append(text) or markdown_html(text))
    for body, html in zip(bodies, expected, strict=True):
        assert render_body(body) == html, body
    assert len(full_path) < 0.2 * len(bodies)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.from_regex(urls._PLAIN_URL, fullmatch=True), st.sampled_from(["", "https://site.example/news"]))
def test_plain_urls_are_what_the_parser_accepts_unchanged(url, site_url):
    """absolute_url returns URLs of this shape without parsing them; the parser agrees they are kept as is."""
    assert absolute_url(url, site_url) == url
    assert parsed_absolute_url(url, site_url) == url


def _split_by_regex(text: str) -> tuple[str, str] | None:
    """The front matter split as a multi-line regex states it (the reference for split_front_matter)."""
    import re

    first_break = text.find("\n")
    if not text.startswith("---") or first_break == -1 or text[:first_break].strip() != "---":
        return None
    match = re.search(r"^(---|\.\.\.)[ \t]*$", text[first_break + 1:], re.M)
    if match is None:
        return None
    rest = text[first_break + 1:]
    return rest[:match.start()], rest[match.end():].lstrip("\n")


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(["---", "...", "\n", " ", "\t", "a", "-", ".", "--- x", "....", "\n---\n", "\n...",
                                 "\u3000", "b: c\n"]), max_size=16).map("".join))
def test_front_matter_split_matches_its_regex_statement(text):
    text = "---\n" + text
    try:
        result = split_front_matter(text)
    except Exception:  # noqa: BLE001 - compared below
        result = None
    assert result == _split_by_regex(text)


# Characters around the edges of what decode drops: C0, DEL, C1, the non-characters U+FFFE/FFFF, their
# UTF-8 neighbours (no-break space and other U+00xx, U+FFFD, the BOM), and line ends.
EDGES = ["\x00", "\x01", "\x08", "\t", "\n", "\x0b", "\x0c", "\r", "\r\n", "\x1f", " ", "~", "\x7f", "\x80", "\x85",
         "\x9f", "\xa0", "\xc2", "é", "\ufeff", "\ufffd", "\ufffe", "\uffff", "\uefbf", "東", "🚀"]


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(EDGES) | st.text(max_size=3), max_size=12).map("".join), st.booleans())
def test_decode_drops_exactly_what_xml_forbids(text, bom):
    """decode's byte-level shortcut gives what the full regex pass gives (after the mojibake repair,
    which needs the C1 characters the pass drops), for any UTF-8 text."""
    raw = ("\ufeff" if bom else "").encode() + text.encode("utf-8", "surrogatepass")
    try:
        normal = raw.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
        expected = text_module._XML_FORBIDDEN.sub("", text_module.repair_mojibake(normal))
    except UnicodeDecodeError:
        expected = None  # surrogates: not UTF-8
    if "\x00" in text:
        expected = None
    try:
        result = decode(raw)
    except model.Invalid:
        result = None
    assert result == expected


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.from_regex(urls._PLAIN_STORY_URL, fullmatch=True)
       | st.from_regex(r"https?://(www\.)?[a-zA-Z0-9.-]{1,12}(:[0-9]{1,4})?(/[!-~]{0,12})?", fullmatch=True)
       | st.tuples(st.sampled_from(["http://", "https://"]),
                   st.sampled_from(["x.org", "www.x.org", "X.org", "a-b.c", "0", "x.org:80", "x.org:8080", "www."]),
                   st.lists(st.sampled_from(["/", "a", "/a", "//", "?", "#", "?a=1", "%20", ".", "utm_x=1"]),
                            max_size=5).map("".join)).map("".join))
def test_canonical_urls_of_plain_urls_are_the_parsers(url):
    """canonical_url's shortcut for plain story URLs gives what the URL parser gives (and near misses:
    upper case, www., ports, queries and fragments take the parser's path)."""
    def outcome(function):
        try:
            return function(url)
        except ValueError as exc:  # a port that is not a number in range: the same error both ways
            return str(exc)

    assert outcome(canonical_url) == outcome(urls.parsed_canonical_url)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(max_size=40))
def test_entry_ids_are_rfc_4122_uuid5(name):
    import uuid

    assert urls.uuid5_text(name) == str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def test_every_character_xml_forbids_is_unprintable():
    """clean_text skips its regex for printable text: that is only right if no forbidden character is
    printable (checked over every code point)."""
    assert not [c for c in map(chr, range(0x110000)) if c.isprintable() and text_module._XML_FORBIDDEN.match(c)]
