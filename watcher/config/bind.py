"""One rule table for a fleet (docs/design.md section 4): the rules as read from their files are
bound to this host's watcher.yaml.

1. Placeholders. A rule's `query:` and `http:` may name values of watcher.yaml as `${NAME}`:

       ${host}          `host:` (default: this machine's host name)
       ${service}       `service:`
       ${labels.NAME}   a value of `prometheus.labels`
       ${NAME}          a value of `vars:` (a mapping of your own, e.g. {port: 8000})

   so `http: http://127.0.0.1:${port}/health` and `node_vmstat_oom_kill{instance="${host}:9100"}`
   are written once for every host. In a query a value is put in as the inside of a
   double-quoted PromQL string (its `"` and `\\` escaped): placeholders stand in label values.
   `${...}` is not an environment variable here: rule files are not expanded from the
   environment (watcher.yaml is, so `vars: {port: "${APP_PORT}"}` brings one in). An unknown
   name is a FILE:LINE: KEY problem naming the known ones.

2. Scoping. With `prometheus.labels`, every PromQL rule's selectors get those matchers
   (config/scoping.py), unless the rule says `scope: fleet`. A selector that contradicts the
   scope is a problem at the rule's line. A judge rule's counters (`errors`, `total`,
   `buckets`) are scoped alike; its `baseline_errors`/`baseline_total` are not (they select
   the other hosts on purpose) but take placeholders.

The rule keeps the text as written (PromQuery.written) for messages; `query` is what is sent,
and what `explain` shows.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping

from watcher.base.errors import ConfigProblem
from watcher.config.scoping import ScopeError, scope_query
from watcher.core.rules import CounterShare, HttpCheck, PromQuery, Rule

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\}")
BUILT_IN = ("host", "service")


def placeholder_values(host: str, service: str, labels: Mapping[str, str], variables: Mapping[str, str]) -> dict[str, str]:
    values = {f"labels.{k}": str(v) for k, v in labels.items()}
    values.update({str(k): str(v) for k, v in variables.items()})
    values.update(host=host, service=service)  # vars cannot redefine these (load.py refuses it)
    return values


def substitute(text: str, values: Mapping[str, str], promql: bool) -> tuple[str, list[str]]:
    """`text` with every known `${NAME}` replaced; returns it and the unknown names."""
    unknown: list[str] = []

    def put(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            unknown.append(name)
            return m.group(0)
        return json.dumps(values[name])[1:-1] if promql else values[name]

    return PLACEHOLDER.sub(put, text), unknown


def bind_rules(rules: list[Rule], labels: Mapping[str, str], values: Mapping[str, str],
               problems: list[ConfigProblem]) -> list[Rule]:
    """The rules with placeholders filled in and queries scoped; a rule that cannot be bound
    is left out, with its problem recorded."""
    bound = []
    for rule in rules:
        done = _bind(rule, labels, values, problems)
        if done is not None:
            bound.append(done)
    return bound


def _bind(rule: Rule, labels: Mapping[str, str], values: Mapping[str, str], problems: list[ConfigProblem]) -> Rule | None:
    where = (rule.location.file, rule.location.line)
    if isinstance(rule.signal, HttpCheck):
        url, unknown = substitute(rule.signal.url, values, promql=False)
        if unknown:
            problems.append(ConfigProblem(*where, f"rule {rule.name}: http", _unknown(unknown, values)))
            return None
        return dataclasses.replace(rule, signal=dataclasses.replace(rule.signal, url=url)) if url != rule.signal.url else rule
    if isinstance(rule.signal, CounterShare):
        return _bind_counters(rule, labels, values, problems)
    if not isinstance(rule.signal, PromQuery):
        return rule
    written = rule.signal.as_written
    query, unknown = substitute(written, values, promql=True)
    if unknown:
        problems.append(ConfigProblem(*where, f"rule {rule.name}: query", _unknown(unknown, values)))
        return None
    if labels and rule.scope != "fleet":
        try:
            query = scope_query(query, labels)
        except ScopeError as exc:
            problems.append(ConfigProblem(*where, f"rule {rule.name}: query", f"cannot scope it with prometheus.labels: {exc}"))
            return None
    if query == written:
        return rule
    return dataclasses.replace(rule, signal=PromQuery(query, written=written))


def _bind_counters(rule: Rule, labels: Mapping[str, str], values: Mapping[str, str],
                   problems: list[ConfigProblem]) -> Rule | None:
    """A judge rule's selectors with placeholders filled in, its own counters scoped."""
    signal = rule.signal
    if not isinstance(signal, CounterShare):
        return rule
    where = (rule.location.file, rule.location.line)
    changed: dict[str, str] = {}
    for key in signal.selector_keys:
        written = getattr(signal, key)
        selector, unknown = substitute(written, values, promql=True)
        if unknown:
            problems.append(ConfigProblem(*where, f"rule {rule.name}: {key}", _unknown(unknown, values)))
            return None
        if labels and rule.scope != "fleet" and not key.startswith("baseline_"):
            try:
                selector = scope_query(selector, labels)
            except ScopeError as exc:
                problems.append(ConfigProblem(*where, f"rule {rule.name}: {key}",
                                              f"cannot scope it with prometheus.labels: {exc}"))
                return None
        if selector != written:
            changed[key] = selector
    return dataclasses.replace(rule, signal=dataclasses.replace(signal, **changed)) if changed else rule


def _unknown(names: list[str], values: Mapping[str, str]) -> str:
    known = ", ".join(f"${{{k}}}" for k in sorted(values))
    return (f"unknown placeholder {', '.join(f'${{{n}}}' for n in dict.fromkeys(names))}: known are {known} "
            f"(add your own under `vars:` in watcher.yaml)")
