"""The fast front-matter reader gives PyYAML's exact result whenever it answers, and answers for the
documents real content is written in (the cold-start speed of issue 5 depends on that)."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml
from helpers import generate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syndicator import fastyaml
from syndicator.frontmatter import MAX_DEPTH, MAX_NODES, split_front_matter
from syndicator.text import decode

UTC = dt.timezone.utc
# Derandomized like the other property tests; more examples than those because each one is cheap.
MANY = settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def pyyaml(text: str):
    """PyYAML's answer: the loaded value, or the exception it raised."""
    try:
        return yaml.load(text, Loader=yaml.CSafeLoader)  # noqa: S506 - the safe loader
    except Exception as exc:  # noqa: BLE001 - any refusal counts as "PyYAML says no"
        return exc


def assert_agrees(text: str) -> bool:
    """When the fast reader answers, PyYAML loads the same value (types, order and all). True if it answered."""
    fast = fastyaml.load(text, MAX_NODES, MAX_DEPTH)
    if fast is None:
        return False
    slow = pyyaml(text)
    assert not isinstance(slow, Exception), f"fast reader accepted what PyYAML refuses ({slow}): {text!r}"
    assert repr(fast) == repr(slow), text
    return True


# Text that exercises YAML's significant characters, resolvers and escapes.
SPECIAL = ["-", "?", ":", ",", "[", "]", "{", "}", "#", "&", "*", "!", "|", ">", "'", '"', "%", "@", "`",
           "\\", " ", "  ", "\t", ": ", " #", "\u2028", "\ufeff", "\x85", "é", "東京", "🚀", "\u00a0"]
WORDS = ["yes", "No", "on", "OFF", "true", "null", "~", "Null", "0", "012", "0o17", "0x1F", "0b101", "1_000",
         "-3", "+4", "3.5", "1e3", "1.5e+3", ".inf", "-.Inf", ".NaN", "1:20", "2020-05-19", "2020-13-40",
         "2020-05-19T21:00:00Z", "2020-02-30T21:00:00Z", "2020-05-19T24:00:00Z", "2020-05-19T21:00:00.5Z",
         "2020-05-19t21:00:00z", "2020-05-19 21:00:00.5 +02:00", "<<", "=", "a", "word", "https://x.org/a?b=1",
         "it's", "AT&T", "[]", "{}", "[a, b]", "{a: 1}"]
fragments = st.lists(st.sampled_from(SPECIAL) | st.sampled_from(WORDS) | st.text(max_size=3), max_size=6).map("".join)
quoted = st.one_of(fragments, fragments.map(lambda t: f'"{t}"'), fragments.map(lambda t: f"'{t}'"),
                   st.sampled_from(['"\\x41\\u00e9\\U0001F680\\\\\\"\\n\\t"', '"\\ud800"', '"\\e"', '"a\\"',
                                    "'it''s'", "'a'b'", '"\\U00110000"', '"\\udfff"', '"\\x1b\\u2028"']))
keys = st.sampled_from(["title", "a", "b", "on", "null", "123", "a-b", "k k", "<<", "=", "-a", "a_", "Yes",
                        "2020-01-01", '"q"', "'s'", "a:b"])
line = st.tuples(st.integers(0, 5), st.sampled_from(["", "- ", "-  ", "-"]),
                 st.one_of(st.none(), keys), st.sampled_from([":", ": ", ":  ", ":\t"]), quoted)


def render(lines) -> str:
    out = []
    for indent, dash, key, colon, value in lines:
        text = " " * indent + dash
        text += value if key is None else key + colon + value
        out.append(text)
    return "\n".join(out) + "\n"


@MANY
@given(st.lists(line, min_size=1, max_size=12))
def test_line_soup_agrees_with_pyyaml(lines):
    """Random lines built from YAML's tricky parts: whenever the fast reader answers, it is PyYAML's answer."""
    assert_agrees(render(lines))


PIECES = WORDS + SPECIAL + ["foo:", "foo #x", "foo# x", "x:y", "x: y", "-1", "- x", "-x", "?x", ":x", "a,b", "a]",
                            "\\x41", "\\u00e9", "\\U0001F680", "\\U00110000", "\\ud800", "\\udfff", "\\e", "\\/", "\\N",
                            "\\\\", '\\"', "\\t", "\\n", "\\", "\\x4"]
FORMS = ["key: {}\n", "key:\n- {}\n", "key:\n  - {}\n", "- {}\n", "key: '{}'\n", 'key: "{}"\n', "{}: 1\n",
         "key:\n  {}: 1\n"]


@pytest.mark.parametrize("form", FORMS)
def test_every_scalar_piece_and_pair_agrees_with_pyyaml(form):
    """Each tricky piece, and each pair of them, as a plain, quoted, listed or key scalar (exhaustive).
    Many of them are answered here, so the comparison is not only PyYAML agreeing with itself."""
    answered = sum(assert_agrees(form.format(first + second)) for first in PIECES for second in ["", *PIECES])
    if form.startswith("- "):
        assert answered == 0  # a document that is a list is not front matter's shape: PyYAML's
    else:
        assert answered > len(PIECES)


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30),
                    st.sampled_from(WORDS + SPECIAL), st.datetimes(timezones=st.just(UTC)), st.dates())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8) | keys, inner,
                                                                       max_size=4)),
                      max_leaves=25)
dump_styles = st.fixed_dictionaries({
    "default_style": st.sampled_from([None, None, '"', "'"]),
    "indent": st.sampled_from([2, 3, 4]),
    "allow_unicode": st.booleans(),
    "width": st.sampled_from([20, 80, 1000]),
    "default_flow_style": st.sampled_from([False, False, None]),
})


@MANY
@given(st.dictionaries(st.text(max_size=8) | keys, values, min_size=1, max_size=8), dump_styles)
def test_dumped_documents_agree_with_pyyaml(doc, style):
    """Documents as PyYAML itself writes them, in its different styles."""
    text = yaml.dump(doc, Dumper=yaml.CSafeDumper, sort_keys=False, **style)
    assert_agrees(text)


def test_plain_block_documents_take_the_fast_path():
    """The shapes real front matter has are read here, not handed to PyYAML."""
    seed = (
        'title: "Microsoft builds massive supercomputer"\n'
        "publishedDateTime: 2020-05-19T21:00:00Z\n"
        "quality: 102\n"
        "published: true\n"
        "provider:\n  name: CNET\n  images:\n    - url: \"https://x.org/a.jpg\"\n      width: 50\n\n"
        "topics:\n  - Azure\n"
        "images: []\n"
        "related:\n- title: 'It''s here'\n  provider:\n    name: Forbes\n  images:\n  - url: https://y.org/b\n"
        "# a comment line\n"
        "secured: \"E//wb+\\U0001F680==\"\n"
    )
    assert assert_agrees(seed)
    assert fastyaml.load(seed, MAX_NODES, MAX_DEPTH)["related"][0]["title"] == "It's here"


@pytest.mark.parametrize("text", [
    "a: [1, 2]\n", "a: &x 1\nb: *x\n", "a: !!str 1\n", "a: |\n  text\n", "a: b\n  c\n", "a: 1 # note\n",
    "<<: {a: 1}\n", "k" * 1100 + ": 1\n", "- " + "k" * 1030 + ": 1\n", "a: \x1b\n",
    "a:\n\t- x\n", "- a\n- b\n", "a: 2020-13-40\n", "a: '''\n", "a: \"\\e\"\n",
])
def test_everything_else_goes_to_pyyaml(text):
    """Flow collections, anchors, tags, block scalars, continuation lines, comments after values, merge
    keys, tabs, top-level lists, values PyYAML refuses, unusual escapes: PyYAML decides."""
    assert fastyaml.load(text, MAX_NODES, MAX_DEPTH) is None


def test_bounds_are_left_to_the_exact_check():
    """A document that might pass the node or depth bound is not answered, so the reader's own check
    measures it and names the problem."""
    wide = "a:\n" + "".join(f"- {i}\n" for i in range(100))  # 101 lines: at most 3 values each, +1
    assert fastyaml.load(wide, 303, MAX_DEPTH) is None
    assert fastyaml.load(wide, 304, MAX_DEPTH) == {"a": list(range(100))}
    deep = "".join("  " * d + f"k{d}:\n" for d in range(6)) + "  " * 6 + "k: v\n"
    assert fastyaml.load(deep, MAX_NODES, 6) is None
    assert fastyaml.load(deep, MAX_NODES, 7) is not None
    nested = "a:\n- b:\n  - c:\n    - d\n"  # an indentless list in a list entry's mapping: 6 levels
    assert fastyaml.load(nested, MAX_NODES, 5) is None
    assert fastyaml.load(nested, MAX_NODES, 6) == {"a": [{"b": [{"c": ["d"]}]}]}


def test_generated_corpus_with_hostile_files(tmp_path):
    """Every front matter of a generated corpus (a third of it hostile) reads the same both ways, and the
    well-formed ones are read by the fast path."""
    root = generate(tmp_path / "c", items=300, topics=12, bad=0.3)
    answered = total = 0
    for path in sorted((root / "news").iterdir()):
        try:
            front = split_front_matter(decode(path.read_bytes()))[0]
        except Exception:  # noqa: BLE001 - files with no front matter never reach YAML
            continue
        total += 1
        if assert_agrees(front):
            answered += 1
        elif not path.name.startswith("bad-"):
            pytest.fail(f"fast reader handed a plain generated file to PyYAML: {path.name}")
    assert total > 250 and answered > 200


def test_empty_collections_are_not_shared_between_documents():
    """Lines are remembered from one document to the next; an empty list or mapping must still be a new
    object each time, or changing one document's value would change another's."""
    first = fastyaml.load("a: []\nb: {}\nc: x\n", 100, 10)
    first["a"].append(1)
    first["b"]["k"] = 2
    assert fastyaml.load("a: []\nb: {}\nc: x\n", 100, 10) == {"a": [], "b": {}, "c": "x"}


def test_long_lines_are_not_remembered():
    """The caches of recurring lines and scalars hold short texts only: files of long unique lines (up to
    the file size limit) cannot make them hold megabytes each."""
    fastyaml.load("title: x\nn: 1\n", 100, 10)  # the keys, remembered once
    sizes = fastyaml._entry.cache_info().currsize, fastyaml._resolved.cache_info().currsize
    for i in range(20):
        doc = fastyaml.load(f"title: {'x' * 5000}{i}\nn: {'1' * 300}{i}\n", 100, 10)
        assert doc == {"title": "x" * 5000 + str(i), "n": int("1" * 300 + str(i))}
    assert (fastyaml._entry.cache_info().currsize, fastyaml._resolved.cache_info().currsize) == sizes
