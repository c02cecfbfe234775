"""`check --online`: rules whose metrics Prometheus does not have at all.

A rule over a metric nobody exports (node_exporter not installed, a typo in a name) answers
"0 series" on every tick: it can never fire, and nothing says so. The metric names come from
the PromQL itself (promql-parser's syntax tree), and one query asks Prometheus which of them
have a series now. A name inside absent()/absent_over_time() is meant to be missing: skipped.
"""

from __future__ import annotations

from collections.abc import Iterable

from watcher.core.rules import WINDOW_TOKEN, PromQuery, Rule

_ABSENT = {"absent", "absent_over_time"}


def metric_names(query: str) -> set[str]:
    """Every metric name a query selects (by name or by __name__="..."), but those in absent()."""
    import promql_parser

    names: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for m in node.matchers.matchers:
                if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal:
                    names.add(m.value)
            return
        if isinstance(node, promql_parser.Call):
            if node.func.name in _ABSENT:
                return
            for arg in node.args:
                walk(arg)
            return
        for attr in ("expr", "lhs", "rhs", "vector_selector", "param"):
            child = getattr(node, attr, None)
            if child is not None:
                walk(child)

    walk(promql_parser.parse(query.replace(WINDOW_TOKEN, "1m")))
    return names


def missing_metrics(rules: Iterable[Rule], source) -> dict[str, list[str]]:
    """{rule name: [metric names without a single series in Prometheus]}; rules all of whose
    metrics exist are left out. Raises SourceError when Prometheus does not answer."""
    wanted = {r.name: metric_names(r.signal.query) for r in rules if isinstance(r.signal, PromQuery)}
    every = sorted(set().union(*wanted.values())) if wanted else []
    if not every:
        return {}
    found = source.query(f'group by (__name__) ({{__name__=~"{"|".join(every)}"}})')
    present = {s.labels.get("__name__") for s in found}
    missing = {rule: sorted(names - present) for rule, names in wanted.items()}
    return {rule: names for rule, names in missing.items() if names}
