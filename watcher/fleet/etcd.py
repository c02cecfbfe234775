"""etcd, the fleet's store, through its HTTP/JSON gateway (etcd 3.4+, `/v3/`).

Key-value calls and leases go through etcd3gw (`Etcd3Client`: `create` is first-writer-wins,
`replace` compare-and-swap, `lease`). etcd3gw talks to one endpoint and its watch hides the
end of a stream (its event iterator then blocks forever, and its stream has no timeout), so
two things are ours:

- failover: each call tries the endpoint that answered last, then the others, each with the
  short `fleet.timeout`; only when none answers is it a FleetUnavailable;
- the watch: one streaming POST to `/v3/watch` through httpx (the JSON gateway, as etcd3gw
  does it), with a read timeout, the start revision, and a socket that another thread can shut
  to end it at once (WatchStream).

etcd auth (username/password) is the gateway's `/v3/auth/authenticate`, whose token goes in the
`Authorization` header of every later call; it is fetched again when etcd says it expired.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import etcd3gw
import httpx
import requests
from etcd3gw.client import Etcd3Client

from watcher.base.errors import WatcherError
from watcher.base.format import shorten
from watcher.config.schema import FleetConfig

log = logging.getLogger(__name__)
T = TypeVar("T")


class FleetUnavailable(WatcherError):
    """No etcd endpoint answered (down, slow, partitioned, refused our credentials)."""


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    lease: int


@dataclass(frozen=True)
class WatchEvent:
    kind: str  # "put" | "delete"
    key: str
    value: bytes
    revision: int
    lease: int = 0  # the key's lease; 0: none (a membership without one is no member)


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: str) -> bytes:
    """The range end that covers every key starting with `prefix` (etcd's convention)."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return bytes(raw)


class EtcdGateway:
    """The fleet's calls to etcd, each bounded by `timeout`, tried on every endpoint in turn."""

    def __init__(self, config: FleetConfig, on_request: Callable[[], None] | None = None):
        self.config = config
        self._exc = etcd3gw.exceptions
        self._clients: list[Etcd3Client] = []
        for url in config.endpoints:
            parts = urlsplit(url)
            self._clients.append(etcd3gw.Etcd3Client(
                host=parts.hostname or "127.0.0.1", port=parts.port or 2379, protocol=parts.scheme,
                timeout=config.timeout, api_path="/v3/", session=_session(config)))
        self._active = 0
        self._lock = threading.Lock()
        self._on_request = on_request or (lambda: None)

    @property
    def endpoint(self) -> str:
        return self.config.endpoints[self._active]

    def _call(self, what: str, fn: Callable[[Etcd3Client], T]) -> T:
        """fn(client) on the endpoint that answered last, then on the others."""
        errors = []
        n = len(self._clients)
        start = self._active
        for i in range(n):
            index = (start + i) % n
            client = self._clients[index]
            self._on_request()
            try:
                if self.config.username and "Authorization" not in client.session.headers:
                    self._authenticate(client)
                result = fn(client)
            except self._exc.Etcd3Exception as exc:
                detail = describe(self.config.endpoints[index], exc, self.config.timeout)
                if self.config.username and ("token" in detail.lower() or "auth" in detail.lower()):
                    client.session.headers.pop("Authorization", None)  # expired: fetched again next time
                errors.append(detail)
                continue
            except (OSError, ValueError) as exc:  # requests' own errors subclass OSError; bad JSON
                errors.append(describe(self.config.endpoints[index], exc, self.config.timeout))
                continue
            self._active = index
            return result
        raise FleetUnavailable(f"{what}: no etcd endpoint answered: {'; '.join(errors)}")

    def _authenticate(self, client: Etcd3Client) -> None:
        result = client.post(client.get_url("/auth/authenticate"),
                             json={"name": self.config.username, "password": self.config.password})
        client.session.headers["Authorization"] = result["token"]

    # ------------------------------------------------------------------------------------------
    # Key-value and leases

    def grant(self, ttl: float) -> int:
        return self._call("lease grant", lambda c: c.lease(max(2, int(round(ttl)))).id)

    def keepalive(self, lease_id: int) -> int:
        """The lease's new TTL; <= 0 when it had already expired."""
        def call(c: Etcd3Client) -> int:
            result = c.post(c.get_url("/lease/keepalive"), json={"ID": lease_id})
            return int(result.get("result", {}).get("TTL", -1))

        return self._call("lease keepalive", call)

    def revoke(self, lease_id: int) -> None:
        self._call("lease revoke", lambda c: c.post(c.get_url("/kv/lease/revoke"), json={"ID": lease_id}))

    def put(self, key: str, value: str, lease_id: int | None = None) -> None:
        def call(c: Etcd3Client) -> None:
            payload: dict[str, str | int] = {"key": _b64(key), "value": _b64(value)}
            if lease_id:
                payload["lease"] = lease_id
            c.post(c.get_url("/kv/put"), json=payload)

        self._call(f"put {key}", call)

    def create(self, key: str, value: str) -> bool:
        """First writer wins: False when the key exists already."""
        return self._call(f"create {key}", lambda c: c.create(key, value))

    def replace(self, key: str, old: bytes, new: str) -> bool:
        return self._call(f"replace {key}", lambda c: c.replace(key, old, new))

    def get(self, key: str) -> bytes | None:
        values = self._call(f"get {key}", lambda c: c.get(key))
        value = values[0] if values else None
        return value if isinstance(value, bytes) else None  # without metadata, etcd3gw gives bytes

    def range_prefix(self, prefix: str) -> tuple[int, list[KeyValue]]:
        """Every key under `prefix` and the store's revision at that moment (the watch starts
        right after it, so that nothing falls between the two)."""
        def call(c: Etcd3Client) -> tuple[int, list[KeyValue]]:
            result = c.post(c.get_url("/kv/range"),
                            json={"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))})
            revision = int(result.get("header", {}).get("revision", 0))
            kvs = [KeyValue(_unb64(kv["key"]).decode(), _unb64(kv.get("value")), int(kv.get("mod_revision", 0)),
                            int(kv.get("lease", 0))) for kv in result.get("kvs", [])]
            return revision, kvs

        return self._call(f"range {prefix}", call)

    def count_prefix(self, prefix: str) -> int:
        def call(c: Etcd3Client) -> int:
            result = c.post(c.get_url("/kv/range"), json={"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                                          "count_only": True})
            return int(result.get("count", 0))

        return self._call(f"count {prefix}", call)

    def health(self) -> list[tuple[str, bool, str]]:
        """Every endpoint's own answer to GET /health (for `check --online`): (endpoint, healthy,
        what it said, in words)."""
        rows = []
        for url, client in zip(self.config.endpoints, self._clients, strict=True):
            self._on_request()
            try:
                resp = client.session.get(url + "/health", timeout=self.config.timeout)
                answer = resp.json().get("health") if resp.status_code == 200 else None
                ok = answer in ("true", True)
                if resp.status_code != 200:
                    detail = f"etcd at {url}: /health answered HTTP {resp.status_code}"
                else:
                    detail = f"etcd at {url} healthy" if ok else f"etcd at {url}: /health says {answer!r}"
                rows.append((url, ok, f"{detail} ({resp.elapsed.total_seconds() * 1000:.0f} ms)"))
            except (OSError, ValueError) as exc:
                rows.append((url, False, describe(url, exc, self.config.timeout)))
        return rows

    # ------------------------------------------------------------------------------------------
    # The watch

    def watch(self, prefix: str, start_revision: int, read_timeout: float) -> WatchStream:
        """Open a watch on the active endpoint (the others when it fails). Raises FleetUnavailable."""
        errors = []
        n = len(self._clients)
        for i in range(n):
            index = (self._active + i) % n
            self._on_request()
            stream = WatchStream(self.config, self.config.endpoints[index], prefix, start_revision, read_timeout,
                                 self._clients[index].session.headers.get("Authorization"))
            try:
                stream.open()
            except (httpx.HTTPError, OSError, WatchEnded) as exc:
                stream.close()
                errors.append(describe(self.config.endpoints[index], exc, self.config.timeout))
                continue
            self._active = index
            return stream
        raise FleetUnavailable(f"watch {prefix}: no etcd endpoint answered: {'; '.join(errors)}")


class WatchEnded(Exception):
    """The watch stream ended: closed, timed out, cancelled (compacted), or the member left."""

    def __init__(self, message: str, resync: bool = False):
        super().__init__(message)
        self.resync = resync  # the start revision is gone: read everything again


class WatchStream:
    """One streaming POST to /v3/watch, read line by line (each line one JSON response)."""

    def __init__(self, config: FleetConfig, endpoint: str, prefix: str, start_revision: int, read_timeout: float,
                 token: str | None):
        verify: ssl.SSLContext | bool = True
        if endpoint.startswith("https://"):
            verify = ssl.create_default_context(cafile=str(config.ca) if config.ca else None)
            if config.cert and config.key:
                verify.load_cert_chain(str(config.cert), str(config.key))
        self._client = httpx.Client(timeout=httpx.Timeout(config.timeout, read=read_timeout), verify=verify,
                                    trust_env=False, headers={"Authorization": token} if token else None)
        self._endpoint = endpoint
        self._url = endpoint + "/v3/watch"
        self._body = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                         "start_revision": start_revision}}
        self._cm: AbstractContextManager[httpx.Response] | None = None
        self._response: httpx.Response | None = None
        self._socket: socket.socket | None = None
        self._lines: Iterator[str] | None = None
        self._closed = threading.Event()

    def open(self) -> None:
        self._cm = self._client.stream("POST", self._url, json=self._body)
        self._response = self._cm.__enter__()
        if self._response.status_code != 200:
            raise WatchEnded(f"HTTP {self._response.status_code}")
        stream = self._response.extensions.get("network_stream")
        self._socket = stream.get_extra_info("socket") if stream is not None else None
        self._lines = self._response.iter_lines()
        first = self._next_result()
        if not first.get("created"):
            raise WatchEnded(f"watch not created: {first}")

    def _next_result(self) -> dict[str, Any]:
        if self._lines is None:
            raise WatchEnded("the watch was not opened")
        try:
            for line in self._lines:
                if line.strip():
                    data = json.loads(line)
                    if "error" in data:
                        raise WatchEnded(f"etcd: {data['error'].get('message', data['error'])}")
                    result: dict[str, Any] = data.get("result", {})
                    return result
        except httpx.ReadTimeout:
            raise WatchEnded("quiet for the read timeout") from None
        except (httpx.HTTPError, OSError, ValueError) as exc:
            raise WatchEnded(describe(self._endpoint, exc)) from None
        raise WatchEnded("closed" if self._closed.is_set() else "the member closed the stream")

    def events(self) -> Iterator[tuple[int, list[WatchEvent]]]:
        """(revision, events) per response until the stream ends (raises WatchEnded)."""
        while True:
            result = self._next_result()
            if result.get("canceled"):
                compacted = int(result.get("compact_revision", 0) or 0)
                raise WatchEnded(f"watch cancelled by etcd (compacted to {compacted})", resync=compacted > 0)
            revision = int(result.get("header", {}).get("revision", 0))
            out = []
            for e in result.get("events", []):
                kv = e.get("kv", {})
                out.append(WatchEvent("delete" if e.get("type") == "DELETE" else "put", _unb64(kv.get("key")).decode(),
                                      _unb64(kv.get("value")), int(kv.get("mod_revision", revision)),
                                      int(kv.get("lease", 0) or 0)))
            yield revision, out

    def interrupt(self) -> None:
        """End the stream at once from another thread: shut the socket under the read (the
        reading thread then gets WatchEnded and calls close())."""
        self._closed.set()
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer

    def close(self) -> None:
        """Release the stream; only the thread that reads it calls this."""
        self.interrupt()
        try:
            if self._cm is not None:
                self._cm.__exit__(None, None, None)
        except (httpx.HTTPError, OSError, RuntimeError, ValueError):
            pass  # closing a stream whose socket is gone
        self._client.close()


def _session(config: FleetConfig) -> requests.Session:
    """A requests session for one endpoint. Not from the environment: requests lets
    REQUESTS_CA_BUNDLE override a session's own CA (found with a TLS etcd on this machine), and
    etcd is reached directly, never through HTTP(S)_PROXY."""

    session = requests.Session()
    session.trust_env = False
    if config.ca:
        session.verify = str(config.ca)
    if config.cert and config.key:
        session.cert = (str(config.cert), str(config.key))
    return session


def describe(endpoint: str, exc: BaseException, timeout: float | None = None) -> str:
    """See _describe; never raises (it runs in the fleet's threads, whose failure handling
    must not fail itself)."""
    try:
        return _describe(endpoint, exc, timeout)
    except Exception:  # noqa: BLE001 - a description is never worth a dead fleet thread
        return f"etcd at {endpoint}: {type(exc).__name__}"


def _describe(endpoint: str, exc: BaseException, timeout: float | None = None) -> str:
    """An etcd call's failure in words: "etcd at http://10.0.0.5:2379 unreachable (connection
    refused)", not the HTTP library's own text ("HTTPConnectionPool(host=..., port=...): Max
    retries exceeded with url: ... (Caused by NewConnectionError(...") cut mid-string. The cause
    is found in the chain of exceptions (requests, urllib3, httpx and etcd3gw each wrap the
    socket's error), else in their text."""
    chain = _causes(exc)
    text = " ".join(str(getattr(e, "detail_text", None) or e) for e in chain)
    low = text.lower()
    where = f"etcd at {endpoint}"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "connection refused" in low:
        return f"{where} unreachable (connection refused)"
    if any(isinstance(e, socket.gaierror) for e in chain) or any(
            s in low for s in ("name or service not known", "temporary failure in name resolution",
                               "nodename nor servname", "no address associated")):
        return f"{where} unreachable (its host name does not resolve)"
    if "no route to host" in low or "network is unreachable" in low:
        return f"{where} unreachable (no route to it)"
    if any(isinstance(e, ssl.SSLError) for e in chain) or "certificate verify failed" in low or "[ssl" in low:
        reason = "certificate verify failed" if "certificate verify failed" in low else "TLS handshake failed"
        return f"{where}: {reason}"
    if any(isinstance(e, TimeoutError | httpx.TimeoutException) for e in chain) or "timed out" in low \
            or "timeout" in type(exc).__name__.lower():
        return f"{where} did not answer" + (f" within {timeout:g}s" if timeout else " in time")
    if any(isinstance(e, ConnectionResetError) for e in chain) or "connection reset" in low \
            or "remotedisconnected" in low or "connection aborted" in low:
        return f"{where} closed the connection"
    said = _etcd_said(exc)
    if said:
        return f"{where} answered: {said}"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{where}: {shorten(first, 160)}" if first else f"{where}: {type(exc).__name__}"


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps: __cause__, __context__, urllib3's `reason`, an exception passed
    as an argument (requests wraps urllib3's MaxRetryError so)."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(seen) < 12:
        e = todo.pop(0)
        # `reason` is a string on some (an HTTP reason phrase): only exceptions are followed.
        if not isinstance(e, BaseException) or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None), *getattr(e, "args", ())]
    return seen


def _etcd_said(exc: BaseException) -> str:
    """The message of an etcd error answer ({"error": ..., "message": ...}), if that is what it is."""
    raw = getattr(exc, "detail_text", None)
    if not raw:
        return ""
    try:
        data = json.loads(raw)
    except ValueError:
        return shorten(str(raw), 160)
    if isinstance(data, dict):
        return shorten(str(data.get("message") or data.get("error") or raw), 160)
    return shorten(str(raw), 160)
