"""Secrets in notification URLs never reach logs, the journal, `status`, `check` or exceptions
(docs/design.md section 7). Apprise's privacy form masks passwords and tokens, but not custom headers
(`+X-Api-Key=`) or query and body fields: this module covers those too.

`redact_url()` shows a URL with every secret part masked as `***`: the password, userinfo
that is a token, custom header values (`+X-Api-Key=`), body fields (`:field=`) and query
values with secret-sounding names (token, key, pass, secret, auth, sig, ...), and every host
or path part that Apprise's own privacy form hides (Slack's and Discord's path tokens).
`redact_text()` scrubs free text of known secrets (at least MIN_SECRET_LEN characters,
raw and URL-encoded). While a Notifier delivers, a filter on the `apprise` logger scrubs
Apprise's own log records of the Notifier's secrets (its DEBUG lines show headers).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, quote_plus, unquote

MASK = "***"
MIN_SECRET_LEN = 4


_SENSITIVE_KEY = re.compile(r"token|secret|pass|pwd|key|auth|sig|cred|session|cookie|bearer", re.I)
# values of a sensitive-sounding key that name a mode, not a secret (ntfy's `auth=token`)
_MODE_VALUES = frozenset({"basic", "token", "bearer", "none", "yes", "no", "true", "false"})


def is_config_path(url: str) -> bool:
    return "://" not in url or url.lower().startswith("file://")


def config_path(url: str) -> str:
    return url[len("file://"):] if url.lower().startswith("file://") else url


@dataclass
class UrlParts:
    scheme: str
    user: str
    password: str | None  # None: no colon in the userinfo
    has_userinfo: bool
    host: str  # with the port
    path: str  # without the leading "/"
    query: list[tuple[str, str | None]]  # raw key, raw value (None: no "=")

    def join(self) -> str:
        userinfo = ""
        if self.has_userinfo:
            userinfo = self.user + (f":{self.password}" if self.password is not None else "") + "@"
        text = f"{self.scheme}://{userinfo}{self.host}"
        if self.path or self.query:
            text += "/" + self.path
        if self.query:
            text += "?" + "&".join(k if v is None else f"{k}={v}" for k, v in self.query)
        return text


def split_url(url: str) -> UrlParts | None:
    """Split an Apprise URL without decoding anything ('+' and '#' stay as written)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    pairs: list[tuple[str, str | None]] = []
    for item in query.split("&") if query else []:
        key, eq, value = item.partition("=")
        pairs.append((key, value if eq else None))
    return UrlParts(scheme, user, password if colon else None, bool(at), host, path, pairs)


def query_key(raw_key: str) -> str:
    return unquote(raw_key).strip()


def secret_query_value(raw_key: str, raw_value: str | None) -> bool:
    key = query_key(raw_key)
    if raw_value is None or raw_value == "":
        return False
    if key.startswith("+"):  # a custom HTTP header: often a credential, always masked
        return True
    name = key.lstrip(":-")
    if not _SENSITIVE_KEY.search(name):
        return False
    return unquote(raw_value).strip().lower() not in _MODE_VALUES


def _looks_like_token(text: str) -> bool:
    """For URLs Apprise cannot parse: long mixed letters and digits, like a path token."""
    text = unquote(text)
    return len(text) >= 8 and any(c.isdigit() for c in text) and any(c.isalpha() for c in text)


def _token_shaped(raw: str) -> bool:
    """Not a plain word or a DNS name: Apprise hides `hooks.slack.com/services` when it rewrites
    a Slack webhook as slack://, but those are not secrets (and would be scrubbed from text)."""
    text = unquote(raw)
    if "." in text and not any(c.isupper() for c in text):
        return False
    return any(c.isdigit() or c.isupper() for c in text) or len(text) >= 20


def privacy_form(url: str, known: set[str]) -> str | None:
    """Apprise's url(privacy=True) of `url`, or None if Apprise cannot parse it. While Apprise
    parses, its log records are scrubbed of `known` (its DEBUG line shows custom headers)."""
    import apprise  # ~270 ms the first time: only when a URL is checked or redacted with it

    scrub = ScrubFilter(known)
    alog = logging.getLogger("apprise")
    alog.addFilter(scrub)
    try:
        plugin = apprise.Apprise.instantiate(url)
        # apprise's url() has no annotations; it returns the URL as a str.
        return plugin.url(privacy=True) if plugin is not None else None  # type: ignore[no-untyped-call]
    finally:
        alog.removeFilter(scrub)


def _structural_secrets(parts: UrlParts) -> set[str]:
    """Secrets found without Apprise: password, header/body/sensitive query values."""
    found: set[str] = set()
    if parts.password:
        found.add(parts.password)
    for key, value in parts.query:
        if value and secret_query_value(key, value):
            found.add(value)
            # "Bearer%20abc...": the credential may also appear without its scheme word
            found.update(w for w in unquote(value).split() if len(w) >= 8)
    return found


def structural_url_secrets(url: str) -> set[str]:
    """The secrets of `url` found without Apprise (password, header/body/sensitive query
    values): cheap enough for every CLI start."""
    parts = None if is_config_path(url) else split_url(url)
    return _structural_secrets(parts) if parts is not None else set()


def _secret_positions(url: str, use_apprise: bool = True) -> tuple[UrlParts | None, set[str]]:
    """The URL's parts and the raw substrings that are secret (see the module docstring).
    Without Apprise (or when it cannot parse the URL), every token-shaped part is secret."""
    parts = split_url(url)
    if parts is None:
        return None, set()
    secrets = _structural_secrets(parts)
    privacy = privacy_form(url, expand_secrets(secrets)) if use_apprise else None
    visible = unquote(privacy).lower() if privacy is not None else None

    def hidden(raw: str) -> bool:
        if not raw:
            return False
        if visible is None:
            return _looks_like_token(raw)
        return unquote(raw).lower() not in visible and _token_shaped(raw)

    if parts.has_userinfo and parts.user:
        token_only = parts.password is None  # ntfy's `tk_...@host`: the user is the token
        if hidden(parts.user) or (token_only and visible is None):
            secrets.add(parts.user)
    host = parts.host.rsplit(":", 1)[0] if parts.host.count(":") == 1 else parts.host
    if hidden(host):
        secrets.add(host)
    for segment in parts.path.split("/"):
        if hidden(segment):
            secrets.add(segment)
    return parts, secrets


def expand_secrets(secrets: Iterable[str]) -> set[str]:
    """Each secret raw, decoded and encoded, as it may appear in text; long enough only."""
    out: set[str] = set()
    for secret in secrets:
        for form in (secret, unquote(secret), quote(unquote(secret), safe=""),
                     quote_plus(unquote(secret), safe="")):
            if len(form) >= MIN_SECRET_LEN:
                out.add(form)
    return out


def url_secrets(url: str) -> frozenset[str]:
    """The raw secret substrings of one target URL (empty for a config file path)."""
    if is_config_path(url):
        return frozenset()
    _, secrets = _secret_positions(url)
    return frozenset(expand_secrets(secrets))


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (longest first) replaced by `***`."""
    text = str(text)
    for secret in sorted(expand_secrets(secrets), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_url(url: str, *, use_apprise: bool = True) -> str:
    """The URL as written, with its secrets masked: `ntfys://user:***@host/topic`,
    `json://host/hook?+X-Api-Key=***`, `slack://***/***/***/#ops`. A config file path is shown
    as it is (a path is not a secret). `use_apprise=False` never imports apprise and masks
    every token-shaped part instead (for paths that must stay fast)."""
    if is_config_path(url):
        return url
    parts, secrets = _secret_positions(url, use_apprise)
    if parts is None:
        return redact_text(url, secrets)
    expanded = expand_secrets(secrets)

    def mask(raw: str) -> str:
        return MASK if raw and (raw in secrets or unquote(raw) in expanded) else raw

    if parts.has_userinfo:
        parts.user = mask(parts.user)
        if parts.password:
            parts.password = MASK
    host, colon, port = parts.host.rpartition(":")
    if colon and port.isdigit():
        parts.host = f"{mask(host)}:{port}"
    else:
        parts.host = mask(parts.host)
    parts.path = "/".join(mask(s) for s in parts.path.split("/"))
    parts.query = [
        (k, MASK if v and secret_query_value(k, v) else (mask(v) if v else v))
        for k, v in parts.query
    ]
    # a last pass: a secret repeated anywhere else (e.g. inside another parameter)
    return redact_text(parts.join(), secrets)


class ScrubFilter(logging.Filter):
    """Scrubs secrets from records of the `apprise` logger before any handler sees them."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = sorted(expand_secrets(secrets), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        text = record.getMessage()
        clean = text
        for secret in self.secrets:
            clean = clean.replace(secret, MASK)
        if clean != text:
            record.msg, record.args = clean, ()
        return True
