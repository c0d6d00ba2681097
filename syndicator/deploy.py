"""`syndicator deploy`: a static export onto object storage (any S3 API), the way `hugo deploy` does it.

Reads only the export directory on disk (what `syndicator build --out` wrote) and the bucket's listing.
An object is uploaded when its MD5 differs from the remote ETag (every upload is a single-part PUT, whose
ETag is the MD5 of the stored bytes), with the Content-Type, Cache-Control and Content-Encoding the
server sends for that document (`metadata`). Uploads go in stages so that nothing live ever links to an
object that is not there yet: documents nobody links to before this deploy (archive pages, topic pages,
static files), then the subscription feeds, then index.html and topics.opml. Deletes come last, only once
every upload succeeded, and at most `max_deletes` of them unless forced. A deploy that fails half-way
leaves the old set online plus some new documents, and running it again finishes the job.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import documents
from .config import Settings
from .objects import STAGES, DeployError, LocalFile, Meta, Plan, Target, local_files, make_plan, stage

UPLOAD_THREADS = 8  # objects are small: the round trip, not the bandwidth, is the cost
EXIT_FAILED, EXIT_TOO_MANY_DELETES = 1, 3


@dataclass
class Result:
    uploaded: int = 0
    unchanged: int = 0
    deleted: int = 0
    bytes: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)
    changed_feeds: list[str] = field(default_factory=list)  # rels of subscription feeds with new bytes


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client from the usual AWS settings (environment, shared files, instance role), with
    the profile and endpoint (MinIO, moto, any S3-compatible store) of the settings when given."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise DeployError("deploy needs boto3: pip install 'syndicator[deploy]'") from None
    session = boto3.session.Session(profile_name=settings.profile or None)
    # Standard retries: a throttled or dropped request is tried again before it counts as a failure.
    config = Config(retries={"mode": "standard", "max_attempts": 4}, max_pool_connections=UPLOAD_THREADS * 2)
    return session.client("s3", endpoint_url=settings.endpoint_url or None, config=config)


def _reason(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return f"{error.get('Code', '?')}: {error.get('Message', '')}".rstrip(": ")
    return str(exc) or type(exc).__name__


def remote_objects(client: Any, target: Target) -> dict[str, str]:
    """ETag of every object below the target's prefix, by key without the prefix."""
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=target.bucket, Prefix=target.prefix):
        for obj in page.get("Contents", ()):
            found[obj["Key"][len(target.prefix):]] = obj["ETag"]
    return found


def metadata_is_stale(client: Any, target: Target, local: dict[str, LocalFile], remote: dict[str, str]) -> bool:
    """Whether the remote objects carry other headers than this deploy would give them. One HEAD of the
    index stands for all: only the settings (interval, gzip) change the headers of unchanged bytes."""
    probe = local.get("index.html")
    if probe is None or remote.get("index.html", "").strip('"') != probe.md5:
        return False  # uploaded anyway, or nothing to compare
    head = client.head_object(Bucket=target.bucket, Key=target.prefix + "index.html")
    seen = Meta(head.get("ContentType", ""), head.get("CacheControl", ""), head.get("ContentEncoding", ""))
    return seen != probe.meta


def _put(client: Any, target: Target, file: LocalFile) -> None:
    extra = {"ContentEncoding": file.meta.content_encoding} if file.meta.content_encoding else {}
    body = file.source.read_bytes()
    if hashlib.md5(body, usedforsecurity=False).hexdigest() != file.md5:
        # The export changed under us (a build swapped and pruned this generation): never upload bytes
        # whose metadata was computed for others.
        raise DeployError(f"{file.source} changed during the deploy; run it again")
    client.put_object(Bucket=target.bucket, Key=target.prefix + file.rel, Body=body,
                      ContentType=file.meta.content_type, CacheControl=file.meta.cache_control, **extra)


class Progress:
    """A line per tenth of the uploads, so a long deploy shows it is moving without a line per object."""

    def __init__(self, total: int, say: Callable[[str], None]):
        self.total, self.say, self.done, self.shown = total, say, 0, 0

    def step(self) -> None:
        self.done += 1
        tenth = self.done * 10 // max(self.total, 1)
        if tenth > self.shown:
            self.shown = tenth
            self.say(f"  uploaded {self.done:,} of {self.total:,} objects ({self.done * 100 // self.total}%)")


def upload(client: Any, target: Target, plan: Plan, say: Callable[[str], None], result: Result) -> bool:
    """Run the plan's uploads stage by stage; a stage starts only when the one before fully succeeded.
    After the first failure no new upload starts (those in flight finish). True when all succeeded."""
    progress = Progress(len(plan.uploads), say)
    for number, name in enumerate(STAGES):
        files = [(f, why) for f, why in plan.uploads if stage(f.rel) == number]
        if not files:
            continue
        say(f"uploading {len(files):,} {name}")
        with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
            futures = {pool.submit(_put, client, target, f): (f, why) for f, why in files}
            for future in as_completed(futures):
                file, why = futures[future]
                if future.cancelled():
                    continue  # after a failure: left for the rerun
                if (exc := future.exception()) is not None:
                    if not result.errors:
                        for other in futures:
                            other.cancel()  # those not started yet; the running ones finish
                    result.errors.append((target.prefix + file.rel, _reason(exc)))
                    continue
                result.uploaded += 1
                result.bytes += file.size
                progress.step()
                if number == 1 and why != "metadata":
                    result.changed_feeds.append(file.rel)
        if result.errors:
            return False
    return True


def delete(client: Any, target: Target, keys: list[str], result: Result) -> None:
    """Delete objects in batches of 1,000 (the API's limit), recording each key that failed."""
    for start in range(0, len(keys), 1000):
        batch = [{"Key": target.prefix + rel} for rel in keys[start:start + 1000]]
        try:
            answer = client.delete_objects(Bucket=target.bucket, Delete={"Objects": batch, "Quiet": True})
        except Exception as exc:  # the whole batch: botocore's errors, connection failures
            result.errors.extend((item["Key"], _reason(exc)) for item in batch)
            continue
        failed = answer.get("Errors", [])
        result.errors.extend((e["Key"], f"{e.get('Code', '?')}: {e.get('Message', '')}") for e in failed)
        result.deleted += len(batch) - len(failed)


def ping(settings: Settings, feeds: Iterable[str], say: Callable[[str], None]) -> Callable[[], None]:
    """Tell the hub about the feeds whose bytes changed (now live); returns a wait for the pings."""
    urls = [f"{settings.base_url}/{rel}" for rel in sorted(feeds)]
    if not settings.hub_url or not urls:
        return lambda: None
    from .websub import Pinger

    pinger = Pinger(settings.hub_url, documents.Site.of(settings))
    pinger.publish(urls)
    say(f"pinging {settings.hub_url} for {len(urls):,} changed feeds")
    return lambda: None if pinger.drain(timeout=120) else say("warning: some WebSub pings are still pending")


def deploy(export: str | os.PathLike[str], to: str, settings: Settings, *, dry_run: bool = False,
           force: bool = False, client: Any = None, stream: TextIO | None = None) -> int:
    """`syndicator deploy`: upload what changed in the export at `export` to `to` (s3://BUCKET/PREFIX),
    then delete what the export no longer has. Returns the exit code (0 ok, 1 failed, 3 too many deletes).
    """
    def say(message: str) -> None:
        print(message, file=stream or sys.stderr, flush=True)

    started = time.perf_counter()
    target = Target.parse(to)
    # One generation for the whole deploy, even if a build swaps the symlink meanwhile.
    directory = Path(os.path.realpath(export))
    if not directory.is_dir():
        raise DeployError(f"export {export} is not a directory (made by `syndicator build --out`)")
    local = local_files(directory, settings.interval, settings.gzip)
    client = client if client is not None else s3_client(settings)
    try:
        remote = remote_objects(client, target)
        stale = metadata_is_stale(client, target, local, remote)
    except Exception as exc:
        say(f"syndicator: deploy: cannot read {target}: {_reason(exc)}")
        return EXIT_FAILED
    plan = make_plan(local, remote, stale)
    say(f"{export} -> {target}: {len(plan.uploads):,} to upload, {plan.unchanged:,} unchanged, "
        f"{len(plan.deletes):,} to delete" + (" (headers changed: equal bytes go up again)" if stale else ""))
    if dry_run:
        for file, why in plan.uploads:
            meta = file.meta
            say(f"would upload {target.prefix}{file.rel} ({why}, {file.size:,} bytes): {meta.content_type}; "
                f"Cache-Control: {meta.cache_control}" + (f"; Content-Encoding: {meta.content_encoding}"
                                                          if meta.content_encoding else ""))
        for rel in plan.deletes:
            say(f"would delete {target.prefix}{rel}")
    if len(plan.deletes) > settings.max_deletes and not force:
        # Checked before anything is uploaded: so many deletes usually mean a wrong --from or --to, and
        # then the uploads would be as wrong as the deletes.
        say(f"syndicator: deploy: {len(plan.deletes):,} objects would be deleted, more than max_deletes "
            f"({settings.max_deletes:,}), so nothing was changed. If that is right, run again with --force or "
            f"a larger --max-deletes: syndicator deploy --from {export} --to {to} --force")
        return EXIT_TOO_MANY_DELETES
    if dry_run:
        say("dry run: nothing was changed")
        return 0
    result = Result(unchanged=plan.unchanged)
    ok = upload(client, target, plan, say, result)
    wait_for_pings = ping(settings, result.changed_feeds, say) if ok else (lambda: None)
    if ok:
        delete(client, target, plan.deletes, result)
    for key, reason in result.errors:
        say(f"error: {key}: {reason}")
    say(f"uploaded {result.uploaded:,} ({result.bytes:,} bytes), unchanged {result.unchanged:,}, "
        f"deleted {result.deleted:,} in {time.perf_counter() - started:.1f} s")
    wait_for_pings()
    if not ok:
        say(f"syndicator: deploy failed after {result.uploaded:,} uploads; nothing was deleted and the remote "
            "serves a consistent set. Run the same command again to finish")
    return EXIT_FAILED if result.errors else 0


def follow(out: str, to: str, settings: Settings, *, stream: TextIO | None = None, poll: float = 1.0) -> None:
    """`build --watch --deploy`: from a daemon thread, deploy every generation the build swaps `out` to
    (the symlink on disk is the whole contract with the build). A failed deploy is retried every interval
    and at the next swap."""
    import threading

    def run() -> None:
        deployed = os.path.realpath(out)  # what was there before this build started: not ours to deploy
        retry_at = None
        while True:
            time.sleep(poll)
            current = os.path.realpath(out)
            if current == deployed and (retry_at is None or time.monotonic() < retry_at):
                continue
            try:
                code = deploy(current, to, settings, stream=stream)
            except DeployError as exc:  # e.g. a generation pruned by two quick builds: the next one goes
                print(f"syndicator: deploy: {exc}", file=stream or sys.stderr, flush=True)
                code = EXIT_FAILED
            deployed = current
            retry_at = None if code == 0 else time.monotonic() + settings.interval

    threading.Thread(target=run, name="deploy-follower", daemon=True).start()
