"""A notify target as Apprise sees it: its endpoints, and one attempt to deliver to one of them.
The Notifier (watcher/notify/notifier.py) owns the queues and the retries; this is the wire.

Apprise is imported lazily, on the first attempt or check that needs it (`_apprise`):
importing this module never imports apprise.

Targets
    A `NotifyTarget.url` containing "://" is an Apprise URL (`ntfy://host/topic`, `slack://...`),
    except `file://PATH`; anything else (and `file://PATH`) is the path of an Apprise config
    file (TEXT or YAML, as Apprise detects), read on first use; each URL in it is an endpoint
    of its own, with the target's `min_severity` and `tags`.

Severity on the wire
    severity  Apprise type  ntfy priority   ntfy tag
    info      info          2 low           information_source
    success   success       3 default       white_check_mark
    warning   warning       4 high          warning
    failure   failure       4 high          x
    critical  failure       5 max           rotating_light
    (`max`, never ntfy's alias `urgent`: Apprise 2.2 silently turns `urgent` into `default`.)
    For ntfy URLs the watcher sets `priority=` unless the URL has its own, which wins (the
    user's choice; ntfy's aliases `urgent` and 1-5 are written as Apprise's names, `urgent` as
    `max`), and appends its tag to the URL's own `tags=`.

Format
    Every message is plain text (core/messages.py) and is handed to Apprise as such
    (`body_format=text`): Apprise escapes it for the target's format, so that markup in a name
    that came from elsewhere (base/format.untrusted) reaches chat as the characters it is.

One attempt
    is bounded by `timeout` (Apprise `cto`/`rto` socket timeouts and the notify() call
    deadline). `request_rate_per_sec` is 0 on every endpoint: Apprise would otherwise sleep
    5.5 s between two ntfy messages of one object, and the Notifier's own backoff handles
    refusals. A refusal with a 4xx status (but 408/429) or a URL Apprise does not understand
    is permanent: not retried.

Attachments (the picture of a breach, notify/pictures.py)
    Apprise sends files given as `notify(attach=[path])` to plugins whose `attachment_support`
    is true, and passes over them silently for the others: the text still goes. A file, not
    Apprise's memory attachment: form:// opens `attachment.path`, which a memory one has not.
    Measured with Apprise 2.3 against loopback receivers, and read in its plugins:
      json://    the file in the JSON body: "attachments": [{"filename", "base64",
                 "mimetype"}] beside title/message/type; no size limit but the receiver's
      ntfy://    one POST to /TOPIC with the PNG as the body, title and message as query
                 parameters. A server without `attachment-cache-dir` and `base-url` refuses
                 it: 400 {"code": 40014, "error": "invalid request: attachments not allowed"};
                 over its attachment-file-size-limit (15M by default) 413
      e-mail     a MIME part image/png with the file's name
      Discord    multipart upload, at most 10 files and 25 MB a message (Apprise's limits)
      Telegram   sendPhoto up to 10 MB (sendDocument up to 50 MB), beside the text message
      Slack      bot tokens (xoxb-) upload the file; webhooks cannot: Apprise warns "Slack
                 Webhooks do not support attachments" and sends the text, so takes_attachments
                 says no to them and nothing is drawn for them
      gotify:// and the others without support: the text alone, no warning
    A picture is ~50 KB, far below every limit. Whatever the refusal (ntfy's 40014, a size
    limit, a plugin that cannot read the file), the lane sends the message again at once
    without it (notify/lanes.py): a picture never costs a message. On Telegram and Discord,
    which send the text and the file as two requests, that can repeat the text.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from watcher.base.errors import NotifyError
from watcher.base.redact import config_path, expand_secrets, privacy_form, query_key, redact_url, split_url, url_secrets
from watcher.core.envelope import Message, NotifyTarget, Severity, payload

if TYPE_CHECKING:
    from apprise import Apprise  # the annotations only: see _apprise()

NOTIFY_TYPE = {  # Apprise NotifyType values
    Severity.INFO: "info",
    Severity.SUCCESS: "success",
    Severity.WARNING: "warning",
    Severity.FAILURE: "failure",
    Severity.CRITICAL: "failure",
}
NTFY_PRIORITY = {
    Severity.INFO: "low",
    Severity.SUCCESS: "default",
    Severity.WARNING: "high",
    Severity.FAILURE: "high",
    Severity.CRITICAL: "max",
}
NTFY_PRIORITY_NUMBER = {"min": 1, "low": 2, "default": 3, "high": 4, "max": 5}
# A priority written in the URL, as ntfy accepts it, to the name Apprise passes on unchanged.
NTFY_PRIORITY_ALIASES = {"urgent": "max", **{str(n): name for name, n in NTFY_PRIORITY_NUMBER.items()}}
NTFY_TAG = {
    Severity.INFO: "information_source",
    Severity.SUCCESS: "white_check_mark",
    Severity.WARNING: "warning",
    Severity.FAILURE: "x",
    Severity.CRITICAL: "rotating_light",
}
NTFY_SCHEMES = ("ntfy", "ntfys")


def _apprise() -> ModuleType:
    """The apprise module, imported on first use (sys.modules keeps it: imported once): ~60 ms
    CPU and 8 MB of import, which `check` (when the URLs' verdicts are remembered) and a watcher
    without `notify:` never pay."""
    import apprise

    return apprise


@dataclass
class Endpoint:
    """One URL of a target, with its Apprise objects (one per severity, built once)."""

    url: str  # raw: never logged
    label: str  # redacted
    # From an Apprise config file, a URL is Apprise's rewrite of it, which spells out every
    # default (`priority=default`): only a priority other than the default was the user's.
    rewritten: bool = False
    plugins: dict[Severity, tuple[Any, dict[str, str]]] = field(default_factory=dict)  # Apprise plugin, the URL's own `:key` extras
    objects: dict[Severity, Apprise] = field(default_factory=dict)


def endpoints_of(target: NotifyTarget) -> tuple[list[Endpoint], str]:
    """The target's endpoints: itself, or each URL of its Apprise config file; and, when there
    is none, why (a config file that cannot be read or holds no URL)."""
    if not target.is_config_file:
        return [Endpoint(target.url, redact_url(target.url))], ""
    path = config_path(target.url)
    urls, error = _config_urls(path)
    return [Endpoint(u, f"{path}: {redact_url(u)}", rewritten=True) for u in urls], error


def attempt(endpoint: Endpoint, message: Message, title: str, body: str, timeout: float,
            scrub: Callable[[str], str], attach: list[str] | None = None) -> None:
    """One attempt, with the files in `attach` (see Attachments above); NotifyError with a
    reason `scrub`bed of secrets if it was not delivered."""
    obj = _apprise_for(endpoint, message.severity, timeout)
    _structure(endpoint, message)
    started = time.monotonic()
    try:
        # Plain text, said so: Apprise escapes it for each target's own format (HTML for e-mail,
        # CommonMark or Slack's mrkdwn for chat). Without a body_format Apprise passes the text
        # through as the target's markup, and a release or rule name another host stored in
        # etcd (`**URGENT** [login here](http://...)`, `<!channel>`) was rendered as written.
        result = obj.notify(body=body, title=title, notify_type=NOTIFY_TYPE[message.severity], timeout=timeout,
                            attach=attach or None, body_format=_apprise().NotifyFormat.TEXT)
    except Exception as e:  # noqa: BLE001 - Apprise plugins may raise anything
        raise NotifyError(scrub(f"{type(e).__name__}: {e}")) from None
    if result:
        return
    entries = [e for e in result.logs() if e.level in ("WARNING", "ERROR", "CRITICAL")]
    reason = entries[-1].message if entries else ""
    if time.monotonic() - started >= 0.9 * timeout:
        reason = f"{reason} (no answer within {timeout:g}s)".strip()
    reason = scrub(reason or "Apprise reported a failure")
    raise NotifyError(reason, permanent=_permanent(reason))


def takes_attachments(endpoint: Endpoint, severity: Severity, timeout: float) -> bool:
    """Whether the endpoint's Apprise plugin sends files (Slack webhooks do not, although their
    plugin says it does); False for a URL Apprise does not understand."""
    try:
        _apprise_for(endpoint, severity, timeout)
    except NotifyError:
        return False
    plugin, _own = endpoint.plugins[severity]
    if getattr(plugin, "secure_protocol", None) == "slack" and getattr(plugin, "mode", None) in ("hook", "gov-hook"):
        return False
    return bool(getattr(plugin, "attachment_support", False))


def _apprise_for(endpoint: Endpoint, severity: Severity, timeout: float) -> Apprise:
    """The Apprise object (one endpoint, one severity), built once; NotifyError if
    Apprise does not understand the URL."""
    obj = endpoint.objects.get(severity)
    if obj is not None:
        return obj
    apprise = _apprise()
    plugin = apprise.Apprise.instantiate(_ntfy_url(endpoint.url, severity, endpoint.rewritten))
    if plugin is None:
        raise NotifyError(f"Apprise does not understand {endpoint.label}", permanent=True)
    plugin.request_rate_per_sec = 0  # else Apprise sleeps 5.5 s between two ntfy sends
    plugin.socket_connect_timeout = timeout  # the `cto=` URL parameter
    plugin.socket_read_timeout = timeout  # the `rto=` URL parameter
    built: Apprise = apprise.Apprise()
    built.add(plugin)
    endpoint.objects[severity] = built
    endpoint.plugins[severity] = (plugin, dict(getattr(plugin, "payload_extras", None) or {}))
    return built


def _ntfy_url(url: str, severity: Severity, rewritten: bool = False) -> str:
    """The ntfy URL with its tag appended, and the severity's priority unless the URL sets one
    (in a URL Apprise `rewritten` from a config file, `priority=default` is Apprise's, not set)."""
    parts = split_url(url)
    if parts is None or parts.scheme.lower() not in NTFY_SCHEMES:
        return url
    tags: list[str] = []
    kept: list[tuple[str, str | None]] = []
    priority = NTFY_PRIORITY[severity]
    for key, value in parts.query:
        name = query_key(key).lower()
        if name in ("tags", "xtags"):
            tags += [t for t in unquote(value or "").split(",") if t.strip()]
        elif name == "priority":
            if value and value.strip():
                given = unquote(value).strip().lower()
                given = NTFY_PRIORITY_ALIASES.get(given, given)
                if not (rewritten and given == "default"):
                    priority = given
        else:
            kept.append((key, value))
    tags.append(NTFY_TAG[severity])
    kept.append(("priority", priority))
    kept.append(("tags", quote(",".join(dict.fromkeys(t.strip() for t in tags)), safe="")))
    parts.query = kept
    return parts.join()


def _structure(endpoint: Endpoint, message: Message) -> None:
    """A json:// or jsons:// endpoint gets the event as data beside Apprise's title/message/type
    (envelope.payload, schema rollback-watcher/1), through the JSON plugin's payload extras, the
    mechanism behind its `:key=value` URL parameters; the URL's own extras still win. Each
    lane's worker is the only user of its plugins, so setting them per message is safe."""
    plugin, own = endpoint.plugins.get(message.severity, (None, {}))
    if plugin is None or getattr(plugin, "protocol", None) != "json":  # json:// and jsons://
        return
    plugin.payload_extras = {**payload(message), **own}


def _config_urls(path: str) -> tuple[list[str], str]:
    """The notification URLs of an Apprise config file, or ([], why not)."""
    if not os.access(path, os.R_OK):
        return [], f"cannot read Apprise config {path}"
    apprise = _apprise()
    config = apprise.AppriseConfig()
    if not config.add(path):
        return [], f"cannot read Apprise config {path}"
    urls = [service.url(privacy=False) for service in config.services()]
    if not urls:
        return [], f"Apprise config {path} has no usable notification URL"
    return urls, ""


_HTTP_STATUS = re.compile(r"error=(\d{3})\d*\b")  # ntfy answers 40001: HTTP 400 + detail


def _permanent(reason: str) -> bool:
    match = _HTTP_STATUS.search(reason)
    return match is not None and match.group(1).startswith("4") and match.group(1) not in ("408", "429")


def check_targets(targets: Iterable[NotifyTarget]) -> list[str]:
    """Problems with the targets, redacted, for `check`: a config file that cannot be read or
    holds no URL, a URL Apprise does not understand. Imports apprise."""
    problems: list[str] = []
    for index, target in enumerate(targets):
        where = f"notify[{index}]"
        if target.is_config_file:
            urls, error = _config_urls(config_path(target.url))
            if error:
                problems.append(f"{where}: {error}")
            for url in urls:
                if privacy_form(url, expand_secrets(url_secrets(url))) is None:
                    problems.append(f"{where}: Apprise does not understand {redact_url(url)}")
            continue
        if privacy_form(target.url, expand_secrets(url_secrets(target.url))) is None:
            problems.append(f"{where}: Apprise does not understand {redact_url(target.url)}")
    return problems
