"""Coverage-guided fuzzing (atheris/libFuzzer) of the front-matter reader.

    python fuzz/fuzz_front_matter.py -max_total_time=60 [corpus_dir]

Any exception escaping `read_item`/`read_topic`, or a result that is neither an Item nor a Problem,
is a crash that libFuzzer reports with the input that caused it. The seed inputs are the bundled
content files plus one of each hostile case of tools/gen_corpus.py.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from syndicator.model import Item, Problem, TopicDef
    from syndicator.reader import read_item, read_topic


def test_one_input(data: bytes) -> None:
    result = read_item(data, "news/fuzz.md", site_url="https://site.example", max_bytes=65_536)
    if not isinstance(result, Item | Problem):
        raise AssertionError(f"read_item returned {type(result).__name__}")
    if isinstance(result, Item):
        # What reaches a feed must be an http(s) URL and clean text.
        for url in (result.url, *(i.url for i in result.images), *(r.url for r in result.related)):
            if not url.startswith(("http://", "https://")):
                raise AssertionError(f"non-http URL reached an item: {url!r}")
    topic = read_topic(data, "topics/fuzz.yaml")
    if topic is not None and not isinstance(topic, TopicDef | Problem):
        raise AssertionError(f"read_topic returned {type(topic).__name__}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
