"""etcd's failures in words (fleet/etcd.describe): the cause found in the chain of exceptions
that requests, urllib3, httpx and etcd3gw wrap around a socket's error, never their own text cut
mid-string, and never an exception of its own (it runs in the fleet's threads). The chains are
built as those libraries raise them; the real ones are met in test_fleet_gate.py and the TLS
test of test_fleet_link.py."""

from __future__ import annotations

import ssl

import pytest
import requests
from etcd3gw import exceptions as etcd_exc

from watcher.fleet.etcd import describe

URL = "http://10.0.0.5:2379"


def raised(*layers: BaseException) -> BaseException:
    """`layers[0]` raised while handling `layers[1]`, raised while handling `layers[2]`..."""
    caught: BaseException | None = None
    for layer in reversed(layers):
        try:
            try:
                if caught is not None:
                    raise caught
            finally:
                raise layer  # noqa: B012 - chained on purpose, as etcd3gw raises inside `except`
        except BaseException as exc:  # noqa: BLE001 - building the chain
            caught = exc
    assert caught is not None
    return caught


class WithReason(Exception):
    """An exception whose `reason` is text (an HTTP reason phrase), not an exception."""

    reason = "Bad Gateway"


@pytest.mark.parametrize("exc, said", [
    (raised(etcd_exc.ConnectionFailedError("HTTPConnectionPool(host='10.0.0.5', port=2379): Max retries exceeded "
                                           "with url: /v3/kv/range (Caused by NewConnectionError(..."),
            requests.exceptions.ConnectionError("Max retries exceeded"), ConnectionRefusedError(111, "refused")),
     f"etcd at {URL} unreachable (connection refused)"),
    (raised(etcd_exc.ConnectionTimeoutError("HTTPConnectionPool: Read timed out."), TimeoutError()),
     f"etcd at {URL} did not answer within 1s"),
    (raised(requests.exceptions.SSLError("HTTPSConnectionPool: Max retries exceeded"),
            ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate")),
     f"etcd at {URL}: TLS handshake failed"),
    # a `reason` that is text is not followed as an exception (it once killed the fleet's thread)
    (raised(etcd_exc.ConnectionFailedError(), WithReason("gateway")), f"etcd at {URL}: gateway"),
    (etcd_exc.Etcd3Exception('{"error":"etcdserver: user name is empty","code":3,"message":"etcdserver: user name '
                             'is empty"}'), f"etcd at {URL} answered: etcdserver: user name is empty"),
])
def test_an_etcd_failure_is_said_in_words(exc, said):
    assert describe(URL, exc, 1.0) == said
