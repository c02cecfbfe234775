"""Every configured secret, redacted in every output (issue 17).

A Prometheus behind an auth proxy answers 401 and may echo the credential in its body; a
Prometheus that is down is named by its URL, userinfo included. Such error texts travel to the
log, the journal, state.json (a rule's last detail), `explain`, `eval`, `check --online` and the
"blind" notification. Rather than trusting each message to be clean, one Redactor is built from
the config's secrets and applied at the edges:

    StateStore     journal.jsonl and state.json lines           (watcher/store/state.py)
    log formatter  every log line of `run` and the CLI          (redacting_formatter)
    Notifier       title and body of every message              (watcher/notify/notifier.py)
    CLI output     everything a command prints, errors included (RedactingStream, watcher/cli/common.py)

The secrets of a config: the Prometheus URL's password (and the `Basic` header requests derives
from the userinfo), the values of secret-sounding Prometheus headers (Authorization, X-Api-Key,
...), passwords in probe and verify URLs, and the structural secrets of notify URLs (password,
`?token=`, `+Header=` values; redact.py finds the rest with Apprise where it delivers).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import unquote

from watcher.base.redact import MASK, expand_secrets, split_url, structural_url_secrets
from watcher.config.schema import WatcherConfig
from watcher.core.rules import HttpCheck

# Header names whose values are credentials; others (X-Scope-OrgID, a tenant) are not secret
# and masking them would blank ordinary words in every message.
_SECRET_HEADER = ("auth", "token", "key", "secret", "pass", "cookie", "session", "cred", "sig")


@dataclass(frozen=True)
class Redactor:
    """Replaces each known secret (raw, URL-decoded and URL-encoded; longest first) by `***`."""

    secrets: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, secrets: Iterable[str]) -> Redactor:
        return cls(tuple(sorted(expand_secrets(secrets), key=len, reverse=True)))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def __bool__(self) -> bool:
        return bool(self.secrets)


NO_SECRETS = Redactor()


def url_password_secrets(url: str | None) -> set[str]:
    """The password of an http(s) URL's userinfo, and the `Basic` credential requests sends
    for it (a proxy that echoes the Authorization header echoes that)."""
    if not url:
        return set()
    parts = split_url(url)
    if parts is None or not parts.has_userinfo:
        return set()
    found: set[str] = set()
    if parts.password:
        found.add(parts.password)
    user, password = unquote(parts.user), unquote(parts.password or "")
    if user or password:
        found.add(base64.b64encode(f"{user}:{password}".encode()).decode())
    return found


def header_secrets(headers: Mapping[str, str] | None) -> set[str]:
    found: set[str] = set()
    for name, value in (headers or {}).items():
        if not value or not any(word in str(name).lower() for word in _SECRET_HEADER):
            continue
        found.add(str(value))
        # "Bearer abc...": the credential also appears without its scheme word
        found.update(w for w in str(value).split() if len(w) >= 8)
    return found


def prometheus_secrets(url: str, headers: Mapping[str, str] | None) -> set[str]:
    return url_password_secrets(url) | header_secrets(headers)


def config_secrets(cfg: WatcherConfig) -> set[str]:
    """Every secret a WatcherConfig holds (see the module docstring). Never imports Apprise."""

    found = prometheus_secrets(cfg.prometheus.url, cfg.prometheus.headers)
    found |= url_password_secrets(cfg.verify.url)
    for rule in cfg.rules:
        if isinstance(rule.signal, HttpCheck):
            found |= url_password_secrets(rule.signal.url)
    for target in cfg.notify:
        found |= structural_url_secrets(target.url)
    return found


def redactor_for(cfg: WatcherConfig) -> Redactor:
    return Redactor.of(config_secrets(cfg))


class RedactingFormatter(logging.Formatter):
    """Formats as the wrapped formatter does, then scrubs the whole line (tracebacks too)."""

    def __init__(self, inner: logging.Formatter, redact: Redactor):
        super().__init__()
        self.inner = inner
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(self.inner.format(record))


def redact_logs(redact: Redactor, root: logging.Logger | None = None) -> None:
    """Put a RedactingFormatter on every handler of the root logger."""
    root = root or logging.getLogger()
    for handler in root.handlers:
        inner = handler.formatter or logging.Formatter()
        if isinstance(inner, RedactingFormatter):
            inner = inner.inner
        handler.setFormatter(RedactingFormatter(inner, redact))


class RedactingStream:
    """A text stream that scrubs what is written to it (the CLI's stdout and stderr). print()
    writes its text in one call, so a secret is never split across two writes."""

    def __init__(self, inner: TextIO, redact: Redactor):
        self.inner = inner
        self.redact = redact

    def write(self, text: str) -> int:
        self.inner.write(self.redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
