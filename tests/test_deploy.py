"""`syndicator deploy` against a real S3 API over HTTP: moto's standalone server on 127.0.0.1, boto3 as
the client, exports written by `syndicator build`. Then nginx in front of the bucket (deploy/nginx-s3.conf)
answering a reader's If-None-Match with 304s from the store's ETags.

moto, boto3 and nginx must be installed (the test extras and .ci/run): a missing one fails, never skips.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from helpers import ROOT, SYNDICATOR, free_port, stop, wait_http, write_item
from test_nginx import adapt, fetch, nginx_running
from test_websub_archive import Hub

from syndicator import deploy as deploy_module
from syndicator.config import Settings
from syndicator.objects import ARCHIVE, FEED, stage
from syndicator.web import create_app

BASE = "https://feeds.example.org"
FEED_LIMIT = "5"  # small pages: topics get full archive pages, a partial newest one, or none
DAY30 = "public, max-age=2592000, stale-while-revalidate=2592000"
FRESH = "public, max-age=60, stale-while-revalidate=60"
SITE = ROOT / "deploy" / "nginx-s3.conf"


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    """moto's S3 server on a free loopback port (dummy credentials for every client); yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as env:
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                            ("AWS_DEFAULT_REGION", "us-east-1")):
            env.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
            env.delenv(name, raising=False)
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"moto-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_http(url + "/moto-api/", timeout=60, proc=proc, log=log)
            yield url
        finally:
            stop(proc)
            log.unlink(missing_ok=True)


@pytest.fixture
def s3(moto):
    return boto3.client("s3", endpoint_url=moto)


@pytest.fixture
def bucket(s3) -> str:
    """A fresh bucket, readable without credentials (as a CDN origin is) for the nginx test."""
    name = f"syndicator-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_policy(Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/*"}]}))
    return name


def build(content: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*SYNDICATOR, "build", "--content", str(content), "--out", str(out), "--base-url", BASE,
                             "--feed-limit", FEED_LIMIT, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result


def cli_deploy(moto: str, out: Path, to: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SYNDICATOR, "deploy", "--from", str(out), "--to", to, "--endpoint-url", moto, *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def documents_of(out: Path) -> dict[str, bytes]:
    """Every document of an export (what a deploy must put in the bucket): no dot files, no .gz."""
    export = out.resolve()
    return {p.relative_to(export).as_posix(): p.read_bytes() for p in export.rglob("*")
            if p.is_file() and not p.name.endswith(".gz")
            and not any(part.startswith(".") for part in p.relative_to(export).parts)}


def listing(s3, bucket: str, prefix: str) -> dict[str, dict]:
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", ()):
            found[obj["Key"][len(prefix):]] = obj
    return found


def md5(body: bytes) -> str:
    return '"' + hashlib.md5(body).hexdigest() + '"'


def recording(client, fail_after: int | None = None) -> list[str]:
    """Keys of the client's PutObject calls, in the order they were made; with `fail_after`, every call
    after that many raises before it reaches the store (the store gone half-way through)."""
    keys: list[str] = []
    lock = threading.Lock()

    def before(params, **_):
        with lock:
            if fail_after is not None and len(keys) >= fail_after:
                raise ConnectionError("store unreachable (test)")
            keys.append(params["Key"])

    client.meta.events.register("provide-client-params.s3.PutObject", before)
    return keys


def settings(moto: str, **values) -> Settings:
    return Settings(base_url=BASE, endpoint_url=moto, feed_limit=int(FEED_LIMIT), **values)


@pytest.fixture(scope="module")
def exported(corpus_template, tmp_path_factory) -> Path:
    """One export of the corpus, for the tests that only deploy it."""
    out = tmp_path_factory.mktemp("export") / "out"
    build(corpus_template, out)
    return out


def test_first_deploy_uploads_every_document_in_order_with_the_servers_headers(moto, s3, bucket, exported,
                                                                                corpus_template, capsys):
    client = boto3.client("s3", endpoint_url=moto)
    order = recording(client)
    code = deploy_module.deploy(exported, f"s3://{bucket}/site", settings(moto), client=client)
    err = capsys.readouterr().err
    assert code == 0, err
    docs = documents_of(exported)
    remote = listing(s3, bucket, "site/")
    assert set(remote) == set(docs)  # no .gz siblings, no .manifest.json or .redirects.nginx
    assert all(remote[rel]["ETag"] == md5(body) for rel, body in docs.items())
    # Stages: what nothing links to yet, then the feeds, then the index and OPML.
    stages = [stage(key.removeprefix("site/")) for key in order]
    assert stages == sorted(stages) and set(stages) == {0, 1, 2}
    assert order[-2:] in (["site/index.html", "site/topics.opml"], ["site/topics.opml", "site/index.html"])
    # A line per tenth, and the summary.
    percents = re.findall(r"^  uploaded [\d,]+ of [\d,]+ objects \((\d+)%\)$", err, re.M)
    assert len(percents) == 10 and percents[-1] == "100", err
    assert f"uploaded {len(docs):,} (" in err and "unchanged 0, deleted 0" in err

    # The headers of each kind of document, read back, are those the server sends for the same URL.
    app = create_app(Settings(content=str(corpus_template), base_url=BASE, feed_limit=int(FEED_LIMIT))).test_client()
    newest: dict[tuple[str, str], int] = {}
    for rel in docs:
        if m := ARCHIVE.match(rel):
            newest[(m.group(1), m.group(3))] = max(newest.get((m.group(1), m.group(3)), 0), int(m.group(2)))
    kinds_seen = set()
    for rel in docs:
        head = s3.head_object(Bucket=bucket, Key="site/" + rel)
        served = app.get("/" + rel.removesuffix("index.html"))
        assert served.status_code == 200, rel
        assert head["ContentType"] == served.headers["Content-Type"], rel
        assert "charset=utf-8" in head["ContentType"], rel
        assert "ContentEncoding" not in head, rel
        if rel.startswith("static/"):
            kind = "static"
            assert head["CacheControl"] == "public, max-age=3600", rel  # as deploy/nginx-static.conf
        elif m := ARCHIVE.match(rel):
            is_newest = int(m.group(2)) == newest[(m.group(1), m.group(3))]
            kind = "newest archive" if is_newest else "full archive"
            assert head["CacheControl"] == (FRESH if is_newest else DAY30), rel
            assert head["CacheControl"] == served.headers["Cache-Control"], rel
        else:
            kind = ("feed" if FEED.match(rel) else "page" if rel.endswith(".html") else "opml")
            assert head["CacheControl"] == FRESH == served.headers["Cache-Control"], rel
        kinds_seen.add(kind)
    assert kinds_seen == {"static", "newest archive", "full archive", "feed", "page", "opml"}


def test_a_deploy_without_changes_uploads_nothing_and_a_dry_run_changes_nothing(moto, s3, bucket, exported):
    to = f"s3://{bucket}/site"
    first = cli_deploy(moto, exported, to)
    assert first.returncode == 0, first.stderr
    before = listing(s3, bucket, "site/")

    again = cli_deploy(moto, exported, to)
    assert again.returncode == 0, again.stderr
    assert f"uploaded 0 (0 bytes), unchanged {len(before):,}, deleted 0" in again.stderr
    assert listing(s3, bucket, "site/") == before  # not even rewritten: same LastModified

    s3.put_object(Bucket=bucket, Key="site/feeds/gone.rss", Body=b"old")
    s3.put_object(Bucket=bucket, Key="site/feeds/all.atom", Body=b"stale")
    dry = cli_deploy(moto, exported, to, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert ("would upload site/feeds/all.atom (changed, " in dry.stderr
            and "application/atom+xml; charset=utf-8; Cache-Control: " + FRESH in dry.stderr)
    assert "would delete site/feeds/gone.rss" in dry.stderr and "dry run: nothing was changed" in dry.stderr
    assert s3.get_object(Bucket=bucket, Key="site/feeds/all.atom")["Body"].read() == b"stale"
    assert "feeds/gone.rss" in listing(s3, bucket, "site/")


def test_one_changed_item_uploads_only_its_documents_and_pings_only_its_changed_feeds(moto, s3, bucket, corpus,
                                                                                        tmp_path, capsys):
    hub = Hub()
    try:
        out = tmp_path / "out"
        build(corpus, out, "--hub-url", hub.url)
        to = f"s3://{bucket}/site"
        assert deploy_module.deploy(out, to, settings(moto, hub_url=hub.url)) == 0
        before = documents_of(out)
        # A first deploy: every feed is new at its URL.
        assert sorted(p["hub.url"] for p in hub.pings) == sorted(f"{BASE}/{rel}" for rel in before if FEED.match(rel))
        assert all(p["hub.mode"] == "publish" for p in hub.pings)
        hub.pings.clear()

        story = sorted((corpus / "news").glob("*.md"))[-1]
        story.write_text(story.read_text(encoding="utf-8").replace("\ntitle: ", "\ntitle: Updated ", 1),
                         encoding="utf-8")
        build(corpus, out, "--hub-url", hub.url)
        after = documents_of(out)
        changed = {rel for rel, body in after.items() if before.get(rel) != body}
        assert changed and len(changed) < len(after) / 4, "a one-item change must touch few documents"

        client = boto3.client("s3", endpoint_url=moto)
        uploaded = recording(client)
        capsys.readouterr()
        assert deploy_module.deploy(out, to, settings(moto, hub_url=hub.url), client=client) == 0
        assert sorted(key.removeprefix("site/") for key in uploaded) == sorted(changed)
        assert f"unchanged {len(after) - len(changed):,}" in capsys.readouterr().err
        # The hub hears of exactly the subscription feeds whose bytes changed, once each, once they are live.
        expected = sorted(f"{BASE}/{rel}" for rel in changed if FEED.match(rel))
        assert expected and sorted(p["hub.url"] for p in hub.pings) == expected
    finally:
        hub.close()


def test_deletes_wait_for_force_above_the_cap(moto, s3, bucket, exported):
    to = f"s3://{bucket}/site"
    assert cli_deploy(moto, exported, to).returncode == 0
    gone = [f"site/topics/old-{n}/index.html" for n in range(5)]
    for key in gone:
        s3.put_object(Bucket=bucket, Key=key, Body=b"a removed topic")
    s3.put_object(Bucket=bucket, Key="site/index.html", Body=b"an older index")

    capped = cli_deploy(moto, exported, to, "--max-deletes", "4")
    assert capped.returncode == 3, capped.stderr
    assert "5 objects would be deleted, more than max_deletes (4), so nothing was changed" in capped.stderr
    assert "--force" in capped.stderr and "--max-deletes" in capped.stderr
    remote = listing(s3, bucket, "site/")
    assert set(gone) <= {"site/" + k for k in remote}
    assert s3.get_object(Bucket=bucket, Key="site/index.html")["Body"].read() == b"an older index"

    forced = cli_deploy(moto, exported, to, "--max-deletes", "4", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "uploaded 1 (" in forced.stderr and "deleted 5 in" in forced.stderr
    assert set(listing(s3, bucket, "site/")) == set(documents_of(exported))


def test_a_failure_half_way_deletes_nothing_and_a_rerun_finishes(moto, s3, bucket, corpus, tmp_path, capsys):
    out = tmp_path / "out"
    build(corpus, out)
    to = f"s3://{bucket}/site"
    assert deploy_module.deploy(out, to, settings(moto)) == 0
    old = {k: v["ETag"] for k, v in listing(s3, bucket, "site/").items()}

    # A topic renamed without an alias: new feeds, archive pages and topic page, changed feeds and index,
    # and the old topic's documents to delete.
    dropped = sorted((corpus / "topics").glob("*.yaml"))[-1]
    name = re.search(r"^name: (.+)$", dropped.read_text(encoding="utf-8"), re.M).group(1)
    for path in corpus.rglob("*.md"):
        text = path.read_text(encoding="utf-8")
        if f"- {name}\n" in text:
            path.write_text(text.replace(f"- {name}\n", "- Brand New Topic\n"), encoding="utf-8")
    dropped.unlink()
    for n in range(3):
        write_item(corpus / "news", f"zz-new-{n}.md", title=f"New story {n}",
                   publishedDateTime=f"2025-06-0{n + 1}T00:00:00Z", topics=["Brand New Topic"],
                   webUrl=f"https://example.org/new/{n}")
    build(corpus, out)
    new = documents_of(out)
    to_upload = {rel for rel, body in new.items() if old.get(rel) != md5(body)}
    to_delete = set(old) - set(new)
    assert to_delete and len(to_upload) > 10
    assert any(rel.startswith("feeds/brand-new-topic/archive/") for rel in to_upload)

    client = boto3.client("s3", endpoint_url=moto)
    recording(client, fail_after=6)
    capsys.readouterr()
    assert deploy_module.deploy(out, to, settings(moto), client=client) == 1
    err = capsys.readouterr().err
    assert re.search(r"^error: site/\S+: .*store unreachable \(test\)", err, re.M), err
    assert "nothing was deleted" in err and "Run the same command again" in err
    half = {k: v["ETag"] for k, v in listing(s3, bucket, "site/").items()}
    assert set(old) <= set(half)  # every old object is still served ...
    assert half["index.html"] == old["index.html"]  # ... and the entry points still name the old set
    assert half["topics.opml"] == old["topics.opml"]
    done = {k for k in half if half[k] != old.get(k)}
    assert 0 < len(done) <= 6 and all(stage(k) == 0 for k in done)

    assert deploy_module.deploy(out, to, settings(moto)) == 0
    err = capsys.readouterr().err
    assert f"uploaded {len(to_upload) - len(done):,} (" in err and f"deleted {len(to_delete):,} in" in err
    final = {k: v["ETag"] for k, v in listing(s3, bucket, "site/").items()}
    assert final == {rel: md5(body) for rel, body in new.items()}


def test_gzip_uploads_and_header_changes_reupload_equal_bytes(moto, s3, bucket, exported):
    to = f"s3://{bucket}/site"
    zipped = cli_deploy(moto, exported, to, "--gzip")
    assert zipped.returncode == 0, zipped.stderr
    export = exported.resolve()
    remote = listing(s3, bucket, "site/")
    assert set(remote) == set(documents_of(exported))  # the .gz bytes under the plain names, no .gz keys
    for rel in ("feeds/all.atom", "index.html", "static/style.css", "topics.opml"):
        head = s3.head_object(Bucket=bucket, Key="site/" + rel)
        assert head["ContentEncoding"] == "gzip" and head["ETag"] == md5((export / (rel + ".gz")).read_bytes())
        body = s3.get_object(Bucket=bucket, Key="site/" + rel)["Body"].read()
        assert gzip.decompress(body) == (export / rel).read_bytes()

    plain = cli_deploy(moto, exported, to)
    assert plain.returncode == 0 and f"uploaded {len(remote):,} (" in plain.stderr
    assert "ContentEncoding" not in s3.head_object(Bucket=bucket, Key="site/feeds/all.atom")

    # Same bytes, other headers (another interval; RSS's <ttl> is the same whole minute): every object
    # goes up again, ETags unchanged.
    etags = {k: v["ETag"] for k, v in listing(s3, bucket, "site/").items()}
    faster = cli_deploy(moto, exported, to, "--interval", "30")
    assert faster.returncode == 0 and "headers changed" in faster.stderr
    assert f"uploaded {len(remote):,} (" in faster.stderr
    assert {k: v["ETag"] for k, v in listing(s3, bucket, "site/").items()} == etags
    assert s3.head_object(Bucket=bucket, Key="site/feeds/all.rss")["CacheControl"] == \
        "public, max-age=30, stale-while-revalidate=30"


def test_bad_targets_and_missing_exports_are_refused(moto, tmp_path, exported):
    wrong = cli_deploy(moto, exported, "https://bucket/site")
    assert wrong.returncode == 2 and "s3://BUCKET/PREFIX" in wrong.stderr
    missing = cli_deploy(moto, tmp_path / "nothing", "s3://some-bucket/site")
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    nobucket = cli_deploy(moto, exported, "s3://no-such-bucket-here/site")
    assert nobucket.returncode == 1 and "NoSuchBucket" in nobucket.stderr
    help_text = subprocess.run([*SYNDICATOR, "deploy", "--help"], capture_output=True, text=True).stdout
    from syndicator.config import SETTINGS

    offered = {s.name for s in SETTINGS if s.flag + " " in help_text}
    assert offered == {s.name for s in SETTINGS if "deploy" in s.commands}
    assert all(flag in help_text for flag in ("--from EXPORT_DIR", "--to s3://BUCKET/PREFIX", "--dry-run", "--force"))


def test_build_deploy_then_nginx_in_front_of_the_bucket_answers_with_304s(moto, s3, bucket, corpus_template,
                                                                         tmp_path):
    out = tmp_path / "out"
    built = build(corpus_template, out, "--deploy", f"s3://{bucket}/site", "--endpoint-url", moto, "--gzip")
    assert "uploaded " in built.stderr
    docs = documents_of(out)
    assert set(listing(s3, bucket, "site/")) == set(docs)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    site = adapt(SITE, {"listen 80;": f"listen 127.0.0.1:{port};", "listen [::]:80;": "",
                        "proxy_pass http://127.0.0.1:9000/syndicator/site/;": f"proxy_pass {moto}/{bucket}/site/;"})
    with nginx_running(SITE, site, tmp_path / "nginx", base + "/"):
        reader = {"Accept-Encoding": "gzip"}
        first = fetch(base + "/feeds/all.atom", reader)
        assert first.status == 200
        assert first.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
        assert first.headers["Cache-Control"] == FRESH and first.headers["Content-Encoding"] == "gzip"
        assert first.headers["X-Content-Type-Options"] == "nosniff" and first.headers["Vary"] == "Accept-Encoding"
        assert gzip.decompress(first.body) == docs["feeds/all.atom"]
        etag = first.headers["ETag"]
        assert etag == md5((out.resolve() / "feeds/all.atom.gz").read_bytes())
        for _ in range(3):  # a reader polling
            again = fetch(base + "/feeds/all.atom", {**reader, "If-None-Match": etag})
            assert again.status == 304 and again.body == b"" and again.headers["ETag"] == etag

        plain = fetch(base + "/feeds/all.rss")  # a client without gzip gets the plain bytes
        assert plain.status == 200 and "Content-Encoding" not in plain.headers and plain.body == docs["feeds/all.rss"]
        index = fetch(base + "/", reader)
        assert index.status == 200 and gzip.decompress(index.body) == docs["index.html"]
        assert "Content-Security-Policy" in index.headers
        slug = next(rel.split("/")[1] for rel in docs if rel.startswith("topics/"))
        page = fetch(f"{base}/topics/{slug}/", reader)
        assert page.status == 200 and gzip.decompress(page.body) == docs[f"topics/{slug}/index.html"]
        missing = fetch(base + "/feeds/no-such-topic.rss")
        assert missing.status == 404 and missing.headers["Cache-Control"] == "public, max-age=60"
        assert fetch(base + "/feeds/all.rss.gz").status == 404
        assert "x-amz-request-id" not in {k.lower() for k in first.headers}


def test_build_watch_deploy_deploys_each_new_generation(moto, s3, bucket, corpus, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([*SYNDICATOR, "build", "--content", str(corpus), "--out", str(out), "--base-url", BASE,
                             "--watch", "--interval", "1", "--deploy", f"s3://{bucket}/site", "--endpoint-url", moto],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        def deployed() -> bool:
            return out.is_symlink() and {k: v["ETag"] for k, v in listing(s3, bucket, "site/").items()} == \
                {rel: md5(body) for rel, body in documents_of(out).items()}

        deadline = time.monotonic() + 90
        while not deployed():
            assert time.monotonic() < deadline and proc.poll() is None, "the first build was never deployed"
            time.sleep(0.5)
        write_item(corpus / "news", "zz-watched.md", title="Arrived while watching",
                   publishedDateTime="2025-07-01T00:00:00Z", topics=["Azure"], webUrl="https://example.org/watched")
        deadline = time.monotonic() + 90
        while b"Arrived while watching" not in s3.get_object(Bucket=bucket, Key="site/feeds/all.rss")["Body"].read():
            assert time.monotonic() < deadline and proc.poll() is None, "the rebuild was never deployed"
            time.sleep(0.5)
    finally:
        stop(proc)
