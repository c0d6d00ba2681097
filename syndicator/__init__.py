"""syndicator: topic feeds (RSS 2.0, Atom, JSON Feed) from a directory of Markdown news items.

Data flows one way, and imports point down this map: tests/test_layout.py fails on an import cycle and
on a module the map does not name (the parenthesised imports are the main ones, not a complete list).

    files ─read─▶ model ─scan─▶ snapshot ─render─▶ documents ─serve─▶ HTTP

    model.py        Item, Image, Related, Provider, TopicDef, Problem: typed, immutable
    text.py         bytes to text; characters XML cannot carry          (model)
    urls.py         absolute http(s) URLs, canonical story URLs, ids, slugs
    frontmatter.py  front matter split from the body, bounded YAML       (model, fastyaml.py)
    body.py         Markdown or HTML body to sanitised HTML              (text)
    fields.py       typed checks of front matter fields                  (model, text, urls)
    reader.py       one file's bytes to Item / TopicDef / Problem        (all of the above)
    listing.py      the walk of the tree, (mtime, size) per file         (model)
    parsing.py      files to parse results, on every core                (reader, listing, parallel.py)
    cache.py        the persistent parse cache                           (listing, model)
    scan.py         Scanner: what changed, parsed incrementally          (listing, parsing, cache, heap.py)
    topictree.py    topic parents, a parent's items, renamed topics      (model, urls)
    snapshot.py     Topic, Snapshot (built or patched), Publisher        (scan, topictree, model)
    entry.py        an entry's HTML, byline, downloads, video wording    (model)
    feedpage.py     FeedPage (one feed document), RFC 5005 pages         (entry, model)
    jsonfeed.py     JSON Feed 1.1 bytes                                  (feedpage, entry)
    feeds.py        RSS / Atom bytes (feedgen), OPML; render() any format (feedpage, jsonfeed, entry)
    fragments.py    each entry rendered once per snapshot, for bulk renders (feeds, snapshot)
    documents.py    Document (bytes, gzip, ETag) per feed, memoised      (snapshot, feeds, fragments)
    responses.py    HTTP semantics of a Document                         (documents)
    access.py       operations endpoints for ops_networks only; CORS     (documents, config)
    scheduler.py    the rescan job: scan, snapshot, render, swap         (scan, snapshot, documents)
    metrics.py      Prometheus metrics, counted over every worker        (snapshot)
    websub.py       pings to a WebSub hub for changed feeds              (documents, snapshot)
    web.py          create_app(settings): routes, pages, fast path       (responses, scheduler, ...)
    generation.py   an export's generation: files, feeds written, reuse  (documents, snapshot)
    export.py       the static export                                    (generation, documents, web, scheduler)
    objects.py      an export's files as bucket objects: MD5, headers, order (documents, feedpage)
    deploy.py       `syndicator deploy`: the export onto S3 (boto3)      (objects, websub, config)
    config.py       the settings table; nothing else imported
    cli.py          `syndicator serve | build | deploy | check | topics` (everything; nothing imports it)
    wsgi.py         server entry points                                  (web, config)
"""

__version__ = "0.1.0"
