"""Real content as its publishers meant it, read back by feedparser from our feeds: clean text, videos,
downloads, people, logos, topic trees, renamed topics, feeds per kind, withdrawn items, feed images and
long related lists. The corpus is tools/gen_corpus.py's, which writes every one of these shapes."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
import yaml
from helpers import SEED, generate, parse, write_item

from syndicator.config import Settings
from syndicator.web import create_app

ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-f]+|[a-z]+\d*);", re.I)
TAGS = re.compile(r"</?(?:b|i|em|strong|span|a|img|script|iframe|p)\b", re.I)
SITE = "https://example.org/site"


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A 400-item corpus of every shape, its front matter by file name, and an app over it."""
    root = generate(tmp_path_factory.mktemp("real") / "c", items=400, topics=12)
    fronts = {}
    for path in (root / "news").glob("*.md"):
        fronts[path.name] = yaml.safe_load(path.read_text(encoding="utf-8").split("\n---", 1)[0].removeprefix("---"))
    app = create_app(Settings(content=str(root), site_url=SITE, base_url="https://feeds.example.org",
                              feed_limit=500, logo_url="https://feeds.example.org/logo.png",
                              icon_url="https://feeds.example.org/icon.png"))
    return root, fronts, app.test_client()


def feeds_of(client, path="/feeds/all"):
    return {fmt: client.get(f"{path}.{fmt}").data for fmt in ("rss", "atom", "json")}


def by_kind(fronts, kind):
    return [f for f in fronts.values() if f.get("type") == kind and f.get("published", True)
            and not f.get("removed")]


def test_text_is_decoded_once_in_every_format_and_on_the_pages(real):
    root, fronts, client = real
    raw = "".join(str(f.get("title", "")) + str(f.get("excerpt", "")) for f in fronts.values())
    assert ENTITY.search(raw) and "â€" in raw and "<b>" in raw  # the corpus has all three
    docs = feeds_of(client)
    rss, atom = parse(docs["rss"]), parse(docs["atom"])
    entries = json.loads(docs["json"])["items"]
    assert len(rss.entries) == len(atom.entries) == len(entries) > 300
    # RSS descriptions are HTML (feedparser hands them over as such): what a reader shows is them decoded.
    shown = [(e.title, html.unescape(e.get("summary", ""))) for e in rss.entries]
    shown += [(e.title, e.get("summary", "")) for e in atom.entries]
    for pair in shown:
        for text in pair:
            assert not ENTITY.search(text) and not TAGS.search(text) and "â€" not in text, text
    for e in entries:
        for text in (e["title"], e.get("summary", "")):
            assert not ENTITY.search(text) and not TAGS.search(text) and "â€" not in text, text
    # One of each, decoded: an entity and a mojibake sequence.
    titles = {e.title for e in rss.entries} | {e.get("summary", "") for e in rss.entries}
    assert any("’" in t for t in titles)
    for slug in ("ai", "azure"):
        page = client.get(f"/topics/{slug}/").get_data(as_text=True)
        body = page.split("<main", 1)[1]
        assert not re.search(r"&amp;#\d+;|&amp;[a-z]+;|â€", body)


def test_the_seed_items_mojibake_is_repaired():
    raw = SEED.read_bytes()
    assert "Itâ€™s".encode() in raw
    from syndicator.reader import read_item

    item = read_item(raw, "news/seed.md")
    assert "Microsoft Says It’s Built a Top-Five Supercomputer in the Cloud for AI" in [r.title for r in item.related]


def test_videos_carry_a_player_and_a_duration_not_a_web_page_as_media(real):
    root, fronts, client = real
    videos = {f.get("webUrl") or f["originalUrl"]: f for f in by_kind(fronts, "video")}
    assert len(videos) > 50
    docs = feeds_of(client)
    assert b"<iframe" not in docs["rss"] and b"&lt;iframe" not in docs["rss"] and b"media:group" not in docs["rss"]
    assert b"<iframe" not in docs["atom"] and b"media:group" not in docs["atom"]
    for fmt in ("rss", "atom"):
        seen = 0
        for e in parse(docs[fmt]).entries:
            source = videos.get(e.link)
            if source is None:
                continue
            seen += 1
            media = [m for m in e.get("media_content", []) if m.get("medium") == "video"]
            assert len(media) == 1 and "url" not in media[0], media  # never the watch page as a media url
            src = re.search(r'src="([^"]+)"', source["featuredContent"])[1]
            assert e.media_player["url"] == src and src.startswith("https://")
            match = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", str(source.get("length", "")))
            if match is None:  # no length, or one that is no duration: no duration, and no failure
                assert "duration" not in media[0] and "Watch the video</a>" in e.content[0].value
                continue
            seconds = int(match[1] or 0) * 3600 + int(match[2] or 0) * 60 + int(match[3] or 0)
            assert int(media[0]["duration"]) == seconds
            minutes = f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
                else f"{seconds // 60}:{seconds % 60:02d}"
            content = e.content[0].value
            assert f"Watch the video ({minutes})" in content and "Read the full story" not in content
            if source.get("images"):
                assert e.media_thumbnail[0]["url"] == source["images"][0]["url"]
        assert seen == len(videos), fmt
    for entry in json.loads(docs["json"])["items"]:
        if entry["url"] in videos:
            assert entry["_video"]["player"].startswith("https://")
            duration = entry["_video"].get("duration_in_seconds")
            assert (duration is None) != ("Watch the video (" in entry["summary"])
            assert all(a["mime_type"] != "text/html" for a in entry.get("attachments", []))
    page = client.get("/topics/ai/").get_data(as_text=True)
    assert re.search(r"Video &middot; \d+:\d\d", page)


def test_a_bad_video_length_is_ignored_not_fatal(tmp_path):
    write_item(tmp_path / "news", "v.md", title="A video", publishedDateTime="2024-01-01T00:00:00Z",
               originalUrl="https://www.youtube.com/watch?v=x", type="video", length="about ten minutes",
               featuredContent='<iframe src="http://insecure.example/embed/x"></iframe>', topics=["T"])
    client = create_app(Settings(content=str(tmp_path))).test_client()
    entry = parse(client.get("/feeds/all.rss").data).entries[0]
    media = [m for m in entry.media_content if m.get("medium") == "video"]
    assert media and "duration" not in media[0] and "media_player" not in entry  # http player dropped too
    assert "Watch the video" in entry.content[0].value and client.get("/status").get_json()["problems"] == []


def test_downloads_are_enclosures_with_their_type_and_title(real):
    root, fronts, client = real
    files = {}
    for f in by_kind(fronts, "download"):
        for action in f.get("actions", []):
            if action.get("type") == "download":
                files.setdefault(f["originalUrl"], action)
    assert len(files) > 20
    docs = feeds_of(client)
    rss = {e.link: e for e in parse(docs["rss"]).entries}
    atom = {e.link: e for e in parse(docs["atom"]).entries}
    for url, action in files.items():
        ext = action["url"].rsplit(".", 1)[-1]
        expected_type = "application/zip" if ext == "zip" else "application/octet-stream"
        assert [(x.href, x.type, x.length) for x in rss[url].enclosures] == [(action["url"], expected_type, "0")]
        links = [x for x in atom[url].links if x.rel == "enclosure" and x.href == action["url"]]
        assert links and links[0].type == expected_type and "length" not in links[0]
        assert links[0].title == f"{action['title']} (.{ext})"
        assert f"{action['title']} (.{ext})" in rss[url].content[0].value
    for entry in json.loads(docs["json"])["items"]:
        if entry["url"] in files:
            first, action = entry["attachments"][0], files[entry["url"]]
            assert first["url"] == action["url"] and first["title"].startswith(action["title"])
            assert "size_in_bytes" not in first
    assert "Download Source Code (." in client.get("/topics/ai/").get_data(as_text=True) + client.get(
        "/topics/azure/").get_data(as_text=True)


def test_the_person_who_wrote_it_is_the_author_and_the_provider_stays_beside_them(real):
    root, fronts, client = real
    people = {f.get("webUrl") or f["originalUrl"]: f for f in fronts.values()
              if (f.get("provider") or {}).get("authors") and f.get("published", True) and not f.get("removed")}
    assert people
    docs = feeds_of(client)
    for fmt in ("rss", "atom"):
        for e in parse(docs[fmt]).entries:
            if e.link in people:
                person = people[e.link]["provider"]["authors"][0]["name"]
                provider = people[e.link]["provider"]["name"]
                assert e.author.startswith(person), (fmt, e.author)
                if fmt == "rss":
                    assert provider in e.author
                else:
                    assert [c.name for c in e.contributors] == [provider]
    for entry in json.loads(docs["json"])["items"]:
        if entry["url"] in people:
            assert entry["authors"][0]["name"] == people[entry["url"]]["provider"]["authors"][0]["name"]
            assert entry["authors"][-1]["name"] == people[entry["url"]]["provider"]["name"]


def test_provider_logos_resolve_under_the_site_url_with_its_path(real):
    root, fronts, client = real
    relative = [f for f in fronts.values() if str(((f.get("provider") or {}).get("images") or [{}])[0].get(
        "url", "")).startswith("/") and f.get("published", True) and not f.get("removed")]
    assert relative
    entries = {e["url"]: e for e in json.loads(client.get("/feeds/all.json").data)["items"]}
    for f in relative:
        url = f.get("webUrl") or f.get("originalUrl")
        avatar = entries[url]["authors"][-1]["avatar"]
        assert avatar == SITE + f["provider"]["images"][0]["url"]
    pages = "".join(client.get(f"/topics/{t['slug']}/").get_data(as_text=True)
                    for t in client.get("/status").get_json()["topics"])
    assert f'class="logo" src="{SITE}/assets/' in pages


def test_a_parent_topics_feeds_hold_its_subtopics_items_once(real):
    root, fronts, client = real
    topics = {t["slug"]: t for t in client.get("/status").get_json()["topics"]}
    children = [t for t in topics.values() if t["parent"]]
    assert children
    for child in children:
        parent_ids = [e.id for e in parse(client.get(f"/feeds/{child['parent']}.atom").data).entries]
        child_ids = [e.id for e in parse(client.get(f"/feeds/{child['slug']}.atom").data).entries]
        assert len(parent_ids) == len(set(parent_ids)) == topics[child["parent"]]["items"]
        assert set(child_ids) <= set(parent_ids)
        page = client.get(f"/topics/{child['slug']}/").get_data(as_text=True)
        assert f'/topics/{child["parent"]}/">' in page.split("</nav>")[0]  # the parent in the breadcrumb
        assert f'/topics/{child["slug"]}/">' in client.get(f"/topics/{child['parent']}/").get_data(as_text=True)


def _tree(tmp_path: Path, *definitions: str) -> dict:
    (tmp_path / "topics").mkdir(parents=True)
    for n, text in enumerate(definitions):
        (tmp_path / "topics" / f"{n}.yaml").write_text(text, encoding="utf-8")
    write_item(tmp_path / "news", "a.md", title="A", publishedDateTime="2024-01-01T00:00:00Z",
               webUrl="https://x.org/a", topics=["Child"])
    client = create_app(Settings(content=str(tmp_path))).test_client()
    return client.get("/status").get_json()


def test_an_unknown_parent_or_a_cycle_is_a_problem_and_the_topic_stays_top_level(tmp_path):
    status = _tree(tmp_path / "unknown", "name: Child\nparent: Nowhere\n")
    assert [t["parent"] for t in status["topics"]] == [None]
    assert [p["path"] for p in status["problems"]] == ["topics/0.yaml"]
    assert "parent topic 'Nowhere' is not a known topic" in status["problems"][0]["reason"]
    status = _tree(tmp_path / "cycle", "name: Child\nparent: Middle\n", "name: Middle\nparent: Top\n",
                   "name: Top\nparent: Child\n")
    assert sum(t["parent"] is None for t in status["topics"]) == 1
    assert len(status["problems"]) == 1 and "cycle" in status["problems"][0]["reason"]


def test_a_renamed_topic_redirects_every_url_of_its_old_slug(tmp_path):
    (tmp_path / "topics").mkdir()
    (tmp_path / "topics" / "k.yaml").write_text("name: Kubernetes\naliases: [K8s]\n", encoding="utf-8")
    write_item(tmp_path / "news", "a.md", title="A", publishedDateTime="2024-01-01T00:00:00Z",
               webUrl="https://x.org/a", topics=["Kubernetes"])
    client = create_app(Settings(content=str(tmp_path), base_url="https://f.example")).test_client()
    for old, new in (("/feeds/k8s.rss", "/feeds/kubernetes.rss"), ("/feeds/k8s/article.atom",
                     "/feeds/kubernetes/article.atom"), ("/topics/k8s/", "/topics/kubernetes/"),
                     ("/feeds/k8s.json?limit=1", "/feeds/kubernetes.json?limit=1")):
        response = client.get(old)
        assert response.status_code == 301 and response.headers["Location"] == "https://f.example" + new, old
        assert client.get(new).status_code == 200
    assert client.get("/feeds/nothing.rss").status_code == 404


def test_every_kind_has_its_own_feeds_that_hold_only_that_kind(real):
    root, fronts, client = real
    kinds = {t["slug"]: t["kinds"] for t in client.get("/status").get_json()["topics"]}
    assert {k["kind"] for ks in kinds.values() for k in ks} == {"article", "video", "download"}
    slug = max(kinds, key=lambda s: len(kinds[s]))
    videos = {f["originalUrl"] for f in by_kind(fronts, "video")}
    for entry in kinds[slug]:
        parsed = parse(client.get(f"/feeds/{slug}/{entry['kind']}.atom").data)
        assert len(parsed.entries) == min(entry["items"], 500)
        assert all((e.link in videos) == (entry["kind"] == "video") for e in parsed.entries)
        assert parsed.feed.title.endswith({"article": "articles", "video": "videos", "download": "downloads"}[
            entry["kind"]])
    assert client.get(f"/feeds/{slug}/podcast.rss").status_code == 404


def test_withdrawn_items_are_not_served_and_are_no_problem(real):
    root, fronts, client = real
    withdrawn = {f.get("webUrl") or f.get("originalUrl") for f in fronts.values()
                 if f.get("removed") or f.get("deleted") or f.get("published") is False}
    assert withdrawn
    links = {e.link for e in parse(client.get("/feeds/all.rss").data).entries}
    assert not withdrawn & links
    assert not any("removed" in p["reason"] for p in client.get("/status").get_json()["problems"])


def test_a_feeds_image_is_its_topics_or_the_sites_never_an_items(real, tmp_path):
    root, fronts, client = real
    assert parse(client.get("/feeds/azure.rss").data).feed.image["href"] == "https://feeds.example.org/logo.png"
    atom = parse(client.get("/feeds/azure.atom").data)
    assert (atom.feed.logo, atom.feed.icon) == ("https://feeds.example.org/logo.png", "https://feeds.example.org/icon.png")
    feed = json.loads(client.get("/feeds/azure.json").data)
    assert (feed["icon"], feed["favicon"]) == ("https://feeds.example.org/logo.png", "https://feeds.example.org/icon.png")
    (tmp_path / "topics").mkdir()
    (tmp_path / "topics" / "t.yaml").write_text("name: T\nimage: https://img.example/t.png\n", encoding="utf-8")
    write_item(tmp_path / "news", "a.md", title="A", publishedDateTime="2024-01-01T00:00:00Z",
               webUrl="https://x.org/a", topics=["T", "U"], images=[{"url": "https://img.example/item.jpg"}])
    own = create_app(Settings(content=str(tmp_path))).test_client()
    assert parse(own.get("/feeds/t.atom").data).feed.logo == "https://img.example/t.png"
    assert parse(own.get("/feeds/t.rss").data).feed.image["href"] == "https://img.example/t.png"
    # No topic image and no site logo: no feed image, although the item has one.
    assert "logo" not in parse(own.get("/feeds/u.atom").data).feed
    assert "image" not in parse(own.get("/feeds/u.rss").data).feed


def test_long_related_lists_show_the_first_ones_and_keep_the_count(real):
    root, fronts, client = real
    busy = [f for f in fronts.values() if len(f.get("related") or []) >= 40 and f.get("published", True)
            and not f.get("removed")]
    assert busy
    source = busy[0]
    url = source.get("webUrl") or source.get("originalUrl")
    entry = next(e for e in parse(client.get("/feeds/all.atom").data).entries if e.link == url)
    related = [x for x in entry.links if x.rel == "related"]
    actions = [a for a in source.get("actions", []) if a.get("type") != "download"]
    assert len(related) == 10
    assert [x.href for x in related] == ([a["url"] for a in actions] + [r["webUrl"] for r in source["related"]])[:10]
    item = next(e for e in json.loads(client.get("/feeds/all.json").data)["items"] if e["url"] == url)
    assert item["_syndicator"]["related_count"] == len(actions) + len(source["related"])
    assert len(item["_syndicator"]["related"]) == 10
