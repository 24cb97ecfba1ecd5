"""Text that goes into logs, messages and metrics labels: client text made safe, URLs redacted."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_USERINFO_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#@]*@")


def log_safe(text: str, limit: int = 64) -> str:
    """Untrusted text (a request path, a user name, a flag's value) made safe for one log line.

    Control characters, newlines and non-ASCII are escaped (so nobody can forge a log line or
    a terminal escape), a single quote is escaped (the text is often quoted) and the length
    is bounded: at most ``limit`` characters of the text, then "...".
    """
    shown = text[:limit].encode("unicode_escape").decode("ascii").replace("'", "\\'")
    return shown + ("..." if len(text) > limit else "")


def redact_url(url: str) -> str:
    """The URL without user:password, for logs, messages, /healthz and /metrics labels."""
    try:
        parts = urlsplit(url)
    except ValueError:
        # urlsplit rejects some malformed URLs (a bad IPv6 literal): strip the userinfo anyway.
        return _USERINFO_RE.sub(r"\1", url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
