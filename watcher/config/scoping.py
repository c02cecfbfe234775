"""Label scoping: one rule table for a fleet (docs/design.md section 4, "One rule table for a fleet").

`scope_query(query, {"instance": "web-3:8000"})` adds `instance="web-3:8000"` to every vector
selector of a PromQL query, also those inside a range, a subquery, `absent()` or `scalar()`,
the way prom-label-proxy enforces a tenant's labels. Number literals, `vector(0)` and `time()`
select nothing and stay as they are. `[$window]` (the watcher's deploy-aware range, not PromQL)
survives: it is swapped for a placeholder duration before parsing and put back after.

A selector that already has a matcher on a scoped label (prom-label-proxy's
`--error-on-replace` behaviour, not its default silent replace):

    instance="web-3:8000"     the same value: kept once
    instance!="web-9:8000"    implied by the scope (as `=~` that matches it, `!~` that does not):
                              dropped, the scope's matcher says it all
    instance="web-3:9100"     disjoint (as `!=` of the value, `=~` that does not match it, `!~`
                              that does): refused with ScopeConflict

Why refuse, not replace: a rule that names another target on purpose (node_exporter's
`instance="web-3:9100"` beside the app's `web-3:8000`) would read the app's target instead,
where its metric does not exist: "no data" on every tick, and the rule could never fire. Refused,
the config names the rule, and its author says `scope: fleet` or fixes the selector. A regular
expression that Python's `re` cannot read (RE2 syntax it lacks) cannot be judged: both matchers
are kept, which selects exactly what both say.

Rendering: promql-parser's printer drops the escapes of label values and string literals
(`"\\\\d+"` comes out as `"\\d+"`, which Prometheus refuses) and the sub-second part of ranges
and offsets (`[1500ms]` comes out as `[1s]`). So selectors, ranges, subqueries and string
literals are swapped for placeholder selectors during the rewrite and printed here (Go's
quoting, which PromQL uses; durations through promql_parser.display_duration, which is right);
its printer renders only the rest: functions, operators, modifiers, numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import ModuleType
from typing import Any

import promql_parser

from watcher.core.rules import WINDOW_TOKEN

# A duration nobody writes by hand, in [$window]'s place while the query is parsed.
_WINDOW_STANDIN = "1999999123ms"
_WINDOW_DELTA = timedelta(milliseconds=1999999123)

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class ScopeError(ValueError):
    """The query cannot be scoped: a selector contradicts the scope, a label name is not one,
    or the query is not PromQL."""


class ScopeConflict(ScopeError):
    """A selector's own matcher on a scoped label can never match the scope's value."""


@dataclass(frozen=True)
class _Matcher:
    name: str
    op: str  # "=", "!=", "=~", "!~"
    value: str

    def render(self) -> str:
        name = self.name if _LABEL_NAME.match(self.name) else quote(self.name)
        return f"{name}{self.op}{quote(self.value)}"


def quote(value: str) -> str:
    """A PromQL double-quoted string: PromQL follows Go's escapes, of which JSON's are a subset
    (\\" \\\\ \\n \\t \\uXXXX)."""
    return json.dumps(value, ensure_ascii=False)


def check_labels(labels: Mapping[str, object]) -> dict[str, str]:
    """The scope as {label name: value}; raises ScopeError for a name Prometheus would refuse."""
    out = {}
    for name, value in labels.items():
        if not isinstance(name, str) or not _LABEL_NAME.match(name) or name.startswith("__"):
            raise ScopeError(f"{name!r} is not a label name a scope can use ([a-zA-Z_][a-zA-Z0-9_]*, "
                             f"not starting with __)")
        if value is None or isinstance(value, (dict, list)):
            raise ScopeError(f"label {name}: expected a string value, got {value!r}")
        out[name] = str(value)
    return out


def scope_query(query: str, labels: Mapping[str, object]) -> str:
    """`query` with the matchers `labels` added to every vector selector (see the module
    docstring). With no labels, the query comes back unchanged, byte for byte. Raises
    ScopeConflict when a selector contradicts the scope, ScopeError when the query does not
    parse or a label name is not one."""
    scope = check_labels(labels)
    if not scope:
        return query

    if _WINDOW_STANDIN in query:
        raise ScopeError(f"the query holds {_WINDOW_STANDIN}, the duration that stands in for [{WINDOW_TOKEN}]")
    try:
        tree = promql_parser.parse(query.replace(WINDOW_TOKEN, _WINDOW_STANDIN))
    except ValueError as exc:
        raise ScopeError(f"not valid PromQL: {exc}") from None
    text = _Printer(promql_parser, scope, query).print(tree)
    if text.count(WINDOW_TOKEN) != query.count(WINDOW_TOKEN):
        raise ScopeError(f"[{WINDOW_TOKEN}] did not survive the rewrite of {query!r}")
    return text


class _Printer:
    """Prints a parsed query with the scope added (see "Rendering" in the module docstring)."""

    def __init__(self, promql_parser: ModuleType, scope: dict[str, str], query: str):
        self.pp = promql_parser
        self.scope = scope
        self.query = query
        self.prefix = "__scoped_"
        while self.prefix in query:
            self.prefix += "_"
        self.rendered: dict[str, str] = {}
        # Neither enum of promql-parser has a usable .name: compared by equality.
        self.ops = [(promql_parser.MatchOp.Equal, "="), (promql_parser.MatchOp.NotEqual, "!="),
                    (promql_parser.MatchOp.Re, "=~"), (promql_parser.MatchOp.NotRe, "!~")]

    def print(self, tree: Any) -> str:
        text = str(self.pp.transform(tree, self._swap))
        # The printer leaves double spaces (`a or  vector(0)`); no quoted text is left in it to
        # spoil (every string is a placeholder until below).
        text = re.sub(r" {2,}", " ", text)
        # Newest keys first: a subquery's text holds the keys of the selectors inside it, and
        # prefix12 must not be read as prefix1 followed by "2".
        for key in sorted(self.rendered, key=lambda k: int(k[len(self.prefix):]), reverse=True):
            text = text.replace(key + "{}", self.rendered[key])
        return text

    def _placeholder(self, text: str) -> Any:
        key = f"{self.prefix}{len(self.rendered)}"
        self.rendered[key] = text
        return self.pp.parse(key)

    def _swap(self, node: Any) -> Any:
        pp = self.pp
        if isinstance(node, pp.StringLiteral):
            return self._placeholder(quote(node.val))
        if isinstance(node, pp.VectorSelector):
            return self._placeholder(self._selector(node))
        if isinstance(node, pp.MatrixSelector):
            vs = node.vector_selector
            return self._placeholder(f"{self._selector(vs, modifiers=False)}[{self._duration(node.range)}]"
                                     f"{self._modifiers(vs.at, vs.offset)}")
        if isinstance(node, pp.SubqueryExpr):
            inner = _Printer(pp, self.scope, self.query)
            inner.prefix = f"{self.prefix}{len(self.rendered)}_"  # keys apart from ours
            step = self._duration(node.step) if node.step else ""
            return self._placeholder(f"{inner.print(node.expr)}[{self._duration(node.range)}:{step}]"
                                     f"{self._modifiers(node.at, node.offset)}")
        return None

    def _selector(self, node: Any, modifiers: bool = True) -> str:
        # `{a="1" or b="2"}` (newer PromQL): the scope joins every alternative.
        groups = list(node.matchers.or_matchers) or [node.matchers.matchers]
        rendered = []
        for group in groups:
            own = [_Matcher(m.name, self._op(m.op), m.value) for m in group]
            kept = [m for m in own if not self._implied(m, node)]
            kept += [_Matcher(name, "=", value) for name, value in self.scope.items()]
            rendered.append(",".join(m.render() for m in kept))
        text = f"{node.name or ''}{{{' or '.join(rendered)}}}"
        return text + (self._modifiers(node.at, node.offset) if modifiers else "")

    def _op(self, op: Any) -> str:
        return next(text for known, text in self.ops if op == known)

    def _modifiers(self, at: Any, offset: timedelta | None) -> str:
        out = ""
        if at is not None:
            kinds = self.pp.AtModifierType
            out += (" @ start()" if at.type == kinds.Start else " @ end()" if at.type == kinds.End
                    else f" @ {at.at.timestamp():.3f}")
        if offset:
            sign = "-" if offset.total_seconds() < 0 else ""
            out += f" offset {sign}{self.pp.display_duration(abs(offset))}"
        return out

    def _duration(self, delta: timedelta) -> str:
        if delta == _WINDOW_DELTA:
            return WINDOW_TOKEN
        return str(self.pp.display_duration(delta))

    def _implied(self, m: _Matcher, node: Any) -> bool:
        """True when the scope's matcher on m's label makes m redundant; raises ScopeConflict
        when the two can never both hold; False for a matcher on another label (or a regular
        expression Python cannot read: both are kept, and select what both say)."""
        if m.name not in self.scope:
            return False
        value = self.scope[m.name]
        if m.op in ("=", "!="):
            matches = m.value == value
        else:
            try:
                matches = re.fullmatch(m.value, value) is not None  # Prometheus anchors its regexes
            except re.error:
                return False
        holds = matches if m.op in ("=", "=~") else not matches
        if not holds:
            raise ScopeConflict(f"{node.name or 'a selector'}{{{m.render()}}} in {self.query!r} can never match "
                                f"the scope {m.name}={quote(value)}: fix the selector, or give the rule "
                                f"`scope: fleet`")
        return True
