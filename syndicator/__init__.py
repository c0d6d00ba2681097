"""syndicator: topic feeds (RSS 2.0, Atom, JSON Feed) from a directory of Markdown news items."""

__version__ = "0.1.0"
