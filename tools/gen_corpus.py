#!/usr/bin/env python3
# Vendored copy of ../shared/tools/gen_corpus.py so tests and benchmarks run from a clean clone.
"""Generate a realistic content directory of news items for tests and benchmarks.

Every item is a Markdown file with YAML front matter in the shape of
../seeds/000_882cc4a5fc2a4bd2.txt: title, excerpt, publishedDateTime, webUrl,
provider, topics, images and related articles. Output is deterministic for a
given --seed, so two runs with the same arguments write identical trees.

    python3 gen_corpus.py --out corpus --items 10000 --topics 200
    python3 gen_corpus.py --out corpus-bad --items 500 --bad 0.1

Layout written:
    OUT/news/YYYY-MM-DD-slug.md      one item per file
    OUT/topics/NN-slug.yaml          one topic definition per file
With --bad FRACTION, that share of the item files is replaced by one of the
hostile cases in BAD_CASES (the file name says which). Only the standard
library and PyYAML are needed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re

import yaml

PROVIDERS = [
    ("CNET", "cnet.com"), ("Forbes", "forbes.com"), ("The Verge", "theverge.com"),
    ("TechCrunch", "techcrunch.com"), ("ZDNet", "zdnet.com"), ("Reuters", "reuters.com"),
    ("Heise Online", "heise.de"), ("Le Monde Informatique", "lemondeinformatique.fr"),
    ("日経クロステック", "xtech.nikkei.com"), ("Microsoft", "microsoft.com"),
    ("Data Center Knowledge", "datacenterknowledge.com"), ("Ars Technica", "arstechnica.com"),
]
WORDS = (
    "cloud azure supercomputer gpu cluster model training inference latency region "
    "datacenter kubernetes serverless storage network security identity devops "
    "database analytics quantum edge preview release pricing outage migration "
    "openai copilot sovereign compliance hybrid arm silicon cooling capacity"
).split()
ACCENTED = ["Überblick", "café", "naïve", "São Paulo", "Zürich", "東京", "Ελλάδα", "emoji 🚀"]
TRICKY = ['AT&T', '<b>bold</b>', '"quoted"', "it's", "a < b > c", "R&D ]]> end", "50% & more"]


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:80] or "item"


def topic_names(n: int, rng: random.Random) -> list[str]:
    names, seen = [], set()
    base = ["Azure", "AI", "Machine Learning", "Power Apps", "Security", "C# & .NET",
            "Kubernetes", "Quantum Computing", "Données", "Cloud Native"]
    for name in base[:n]:
        names.append(name)
        seen.add(name)
    while len(names) < n:
        name = " ".join(w.capitalize() for w in rng.sample(WORDS, rng.choice([1, 2, 2, 3])))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def sentence(rng: random.Random, lo: int, hi: int) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(lo, hi))]
    if rng.random() < 0.15:
        words.insert(rng.randrange(len(words)), rng.choice(TRICKY))
    if rng.random() < 0.10:
        words.insert(rng.randrange(len(words)), rng.choice(ACCENTED))
    text = " ".join(words)
    return text[0].upper() + text[1:]


def provider_block(rng: random.Random) -> dict:
    name, domain = rng.choice(PROVIDERS)
    block = {"name": name, "domain": domain}
    if rng.random() < 0.7:
        block["images"] = [{"url": f"https://img.example.org/org/{domain}-50x50.jpg",
                            "width": 50, "height": 50}]
    return block


def image_list(rng: random.Random, slug: str, k: int) -> list[dict]:
    images = []
    for i in range(k):
        ext = rng.choice(["jpg", "jpg", "png", "webp", "gif"])
        image = {"url": f"https://img.example.org/{slug}/{i}.{ext}",
                 "width": rng.choice([480, 756, 1200, 1280]),
                 "height": rng.choice([360, 567, 630, 720])}
        if rng.random() < 0.5:
            image["title"] = sentence(rng, 3, 8)
        if rng.random() < 0.3:
            image["isCached"] = True
        images.append(image)
    return images


def when(rng: random.Random, start: dt.datetime, span_days: int) -> dt.datetime:
    return start + dt.timedelta(seconds=rng.randrange(span_days * 86400))


def make_item(i: int, rng: random.Random, topics: list[str], weights: list[float]) -> tuple[str, dict, str]:
    title = sentence(rng, 4, 12)
    published = when(rng, dt.datetime(2019, 1, 1, tzinfo=dt.timezone.utc), 2000)
    slug = f"{slugify(title)}-{i}"
    kind = "video" if rng.random() < 0.15 else "article"
    chosen = []
    while len(chosen) < rng.choice([1, 1, 2, 2, 3]):
        topic = rng.choices(topics, weights)[0]
        if topic not in chosen:
            chosen.append(topic)
    item = {
        "category": "news",
        "title": title,
        "excerpt": sentence(rng, 15, 45),
        "publishedDateTime": published.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if kind == "video":
        vid = f"v{i:08d}"
        item["originalUrl"] = f"https://video.example.org/watch?v={vid}"
        item["featuredContent"] = (f'<iframe width="800" height="500" '
                                   f'src="https://video.example.org/embed/{vid}" allowfullscreen></iframe>')
    else:
        item["webUrl"] = f"https://news.example.org/{published:%Y/%m/%d}/{slug}"
        if rng.random() < 0.5:
            item["ampWebUrl"] = item["webUrl"] + "/amp"
    item.update({"type": kind, "quality": rng.randint(10, 160),
                 "heat": rng.randint(10, 200), "published": True})
    if rng.random() < 0.05:
        item["updatedDateTime"] = (published + dt.timedelta(hours=rng.randint(1, 72))).strftime("%Y-%m-%dT%H:%M:%SZ")
    item["provider"] = provider_block(rng)
    item["topics"] = chosen
    item["images"] = image_list(rng, slug, rng.choice([0, 1, 1, 1, 2, 3]))
    related = []
    for _ in range(rng.choice([0, 0, 1, 2, 3, 4])):
        rtitle = sentence(rng, 4, 10)
        rel = {"title": rtitle, "excerpt": sentence(rng, 8, 20),
               "publishedDateTime": when(rng, published, 3).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "webUrl": f"https://other.example.net/{slugify(rtitle)}",
               "type": "article", "provider": provider_block(rng), "quality": rng.randint(10, 120)}
        if rng.random() < 0.3:
            rel["images"] = image_list(rng, slugify(rtitle), 1)
        related.append(rel)
    if related:
        item["related"] = related
    item["secured"] = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789+/") for _ in range(64)) + "=="
    body = ""
    if rng.random() < 0.3:
        body = "\n" + "\n\n".join(sentence(rng, 20, 60) for _ in range(rng.randint(1, 4))) + "\n"
    name = f"{published:%Y-%m-%d}-{slug}.md"
    return name, item, body


DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def render(item: dict, body: str) -> str:
    front = yaml.dump(item, Dumper=DUMPER, sort_keys=False, allow_unicode=True, width=1000)
    # Real files write timestamps bare, which YAML reads as datetimes, not strings.
    front = re.sub(r"(DateTime: )'([0-9TZ:-]+)'", r"\1\2", front)
    return f"---\n{front}---\n{body}"


# Hostile files a content directory can hold. Each must be skipped with a clear
# message naming the file, while every good item keeps being served.
BAD_CASES = {
    "broken-yaml": lambda good: "---\ntitle: [unclosed\ntopics: {\n---\n",
    "no-front-matter": lambda good: "Just a note someone left here.\n",
    "missing-title": lambda good: good.replace("title:", "headline:", 1),
    "bad-date": lambda good: re.sub(r"publishedDateTime: .*", "publishedDateTime: 'last tuesday'", good, count=1),
    "topics-not-list": lambda good: re.sub(r"topics:\n- (.*)\n(?:- .*\n)*", r"topics: \1\n", good, count=1),
    "binary": lambda good: "\x00\x01\x02\xff garbage \x00",
    "bom-crlf": lambda good: "\ufeff" + good.replace("\n", "\r\n"),
    "control-chars": lambda good: good.replace("title: ", "title: \x0b\x1bctl ", 1),
    "python-tag": lambda good: good.replace("quality:", "evil: !!python/object/apply:os.system ['true']\nquality:", 1),
    "alias-bomb": lambda good: ("---\na: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                                "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                                "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
                                "g: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\ntitle: bomb\ntopics: [Azure]\n---\n"),
    "huge-excerpt": lambda good: good.replace("excerpt: ", "excerpt: " + "x" * 2_000_000 + " ", 1),
    "unterminated": lambda good: good.rsplit("---", 1)[0],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory to write (created if missing)")
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--topics", type=int, default=50)
    ap.add_argument("--seed", type=int, default=73)
    ap.add_argument("--bad", type=float, default=0.0, help="fraction of item files replaced by hostile cases")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    topics = topic_names(args.topics, rng)
    weights = [1.0 / (rank + 1) for rank in range(len(topics))]  # Zipf-like popularity
    news_dir = os.path.join(args.out, "news")
    topic_dir = os.path.join(args.out, "topics")
    os.makedirs(news_dir, exist_ok=True)
    os.makedirs(topic_dir, exist_ok=True)

    for n, name in enumerate(topics):
        definition = {"taxonomy": "topic", "_id": slugify(name), "name": name,
                      "keywords": [name.lower()], "hashtags": ["#" + re.sub(r"\W", "", name)]}
        with open(os.path.join(topic_dir, f"{n:02d}-{slugify(name)}.yaml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(definition, f, sort_keys=False, allow_unicode=True)

    bad_names = sorted(BAD_CASES)
    bad_count = 0
    for i in range(args.items):
        name, item, body = make_item(i, rng, topics, weights)
        text = render(item, body)
        if args.bad and rng.random() < args.bad:
            case = bad_names[bad_count % len(bad_names)]
            bad_count += 1
            text = BAD_CASES[case](text)
            name = f"bad-{case}-{i}.md"
        with open(os.path.join(news_dir, name), "w", encoding="utf-8", newline="") as f:
            f.write(text)
    print(f"wrote {args.items} items ({bad_count} hostile) and {len(topics)} topics to {args.out}")


if __name__ == "__main__":
    main()
