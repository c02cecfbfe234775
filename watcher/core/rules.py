"""Rules and their pure state machine (docs/design.md section 4).

Nothing here does I/O or reads a clock: `now` and the signal's result come in, the next state
and its transitions go out, as Prometheus' alerting rule `Eval(ts, ...)` does. The service, the
backtest and `rollback-watcher test` all drive rules through `step()`.

One evaluation of one rule:

    result (samples | probe result | SourceError)
        --classify(rule, result, baseline)-->  Observation (ok | breach | no data | error)
        --step(rule, state, observation, now)-->  RuleState', [Transition]

Length: over 400 lines because it is the rule, whole: what a rule reads, how a result is
classified, the state machine, the Finding it yields and the deploy-aware `[$window]` range,
read top to bottom like Prometheus' `rules/alerting.go`. `config/rulefile.py`, the tests and
`backtest.py` import each part from here; a split would cut the state machine off from the
definitions its every line reads.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeAlias, TypeGuard

from watcher.base.durations import parse_duration
from watcher.base.format import format_duration, format_labels, format_number, format_reading, format_value
from watcher.core.model import TransitionKind

# core/judge.py is imported where a judge rule is judged: `check` needs none of it (~2 ms CPU).
if TYPE_CHECKING:
    from watcher.core.counts import Counts
    from watcher.core.judge import Judgement

SCOPES = ("host", "fleet")
ACTIONS = ("rollback", "notify")
# vanished: no data is a breach only if the query had data before the deploy (its series
# vanished: a crashed release, a scrape target gone); no data before either is "ok".
NO_DATA_POLICIES = ("ok", "keep", "breach", "vanished")
HOST_SIGNALS = ("oom_kills", "unit_restarts")
# What a rule's healthy reading is evidence of, for known-good (core/evidence.py): "serving",
# the release answered (a probe passed, a query that needs requests read a real number), or
# "none" (the reading says nothing about the release serving: a host counter, `up`).
EVIDENCE_KINDS = ("serving", "none")


# ---------------------------------------------------------------------------------------------
# What a rule reads


@dataclass(frozen=True)
class PromQuery:
    """A PromQL instant query; `[$window]` is the deploy-aware range (see `render_query`).
    `query` is what is sent: the rule file's text with its `${...}` placeholders filled in and
    scoped with prometheus.labels (config/bind.py); `written` is the text as the rule file has
    it, for messages ("" when the two are the same)."""

    query: str
    written: str = ""

    @property
    def as_written(self) -> str:
        return self.written or self.query

    @property
    def is_instant(self) -> bool:
        """No range selector or subquery, `[$window]` included: it reads the newest sample of
        each series (`up < 1`), which may be a scrape taken before a change was seen
        (evaluate.held_before_change)."""
        return _ANY_RANGE.search(self.query) is None

    def fixed_ranges(self) -> list[float]:
        """The seconds of each fixed range or subquery range it reads (`[5m]`, `[1h30m:1m]`), not
        `[$window]` (confirm.clear_bound)."""
        return [parse_duration(text) for text in _FIXED_RANGE.findall(self.query)]


# A range (`[5m]`, `[$window]`) or a subquery's; not a label matcher's character class (`5[0-9]`).
_ANY_RANGE = re.compile(r"\[\s*(?:\$window|\d+(?:ms|s|m|h|d|w|y))")
_FIXED_RANGE = re.compile(r"\[(\d+(?:ms|s|m|h|d|w)(?:\d+(?:ms|s|m|h|d|w))*)(?::[^\]]*)?\]")


@dataclass(frozen=True)
class HttpCheck:
    url: str
    expect_status: int = 200
    expect_body: str | None = None
    timeout: float = 2.0


@dataclass(frozen=True)
class HostCheck:
    """A signal read from this host without an exporter: how much a counter grew in `window`."""

    kind: str  # one of HOST_SIGNALS
    window: float = 300.0
    unit: str | None = None  # the systemd unit, for unit_restarts
    path: str = "/proc/vmstat"  # for oom_kills


@dataclass(frozen=True)
class CounterShare:
    """A sequential judge's counters (`judge: sequential`, core/judge.py), read as raw samples
    and counted since the deploy (after the warm-up). The error form names `errors` and
    `total`; the latency form `buckets` (a histogram's `_bucket` series). `baseline_errors` and
    `baseline_total` are the two-sample form's other releases (the fleet's hosts on the
    known-good release), counted over the same span; without them it compares with the
    share before the deploy."""

    errors: str | None = None
    total: str | None = None
    buckets: str | None = None
    baseline_errors: str | None = None
    baseline_total: str | None = None

    @property
    def selector_keys(self) -> tuple[str, ...]:
        """The keys this signal reads ("errors", "total", ...), in the rule file's words."""
        keys = ("errors", "total", "buckets", "baseline_errors", "baseline_total")
        return tuple(k for k in keys if getattr(self, k))

    @property
    def selectors(self) -> tuple[str, ...]:
        return tuple(getattr(self, k) for k in self.selector_keys)


Signal = PromQuery | HttpCheck | HostCheck | CounterShare


@dataclass(frozen=True)
class Location:
    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class Rule:
    """One row of the rule table, validated. Thresholds combine with AND."""

    name: str
    signal: Signal
    action: str  # "rollback" | "notify"
    above: float | None = None
    below: float | None = None
    above_baseline: float | None = None  # value > above_baseline x baseline
    floor: float | None = None  # and value > floor (so 1 ms -> 6 ms is no incident)
    for_: float = 0.0  # seconds the condition must hold before firing
    failures: int = 1  # consecutive breaching evaluations before the condition holds
    no_data: str = "ok"
    baseline_window: float = 1800.0
    value_unit: str = ""  # how to print values: "", "s", "%", "ratio", "bytes"...
    description: str = ""
    notify: tuple[str, ...] = ()  # route tags for notifications
    # The short trailing window that gates a `[$window]` rule's firing (trailing_seconds):
    # None = the default, 0 = off.
    trailing: float | None = None
    # The sequential judge (`judge: sequential`, signal CounterShare): the chance of firing on
    # a release at the limit, however often it is looked at; the start-up kept out of the
    # count; the latency form's bound, fixed or a multiple of the pre-deploy quantile.
    alpha: float = 0.001
    warmup: float = 0.0
    slower_than: float | None = None
    slower_than_baseline: float | None = None
    # "host": prometheus.labels scope the query to this host; "fleet": the query reads as written.
    scope: str = "host"
    # "serving" | "none"; None = by the signal: probes and queries "serving", host counters "none"
    evidence: str | None = None
    location: Location = Location("<memory>")

    @property
    def is_probe(self) -> bool:
        return isinstance(self.signal, HttpCheck)

    @property
    def is_judge(self) -> bool:
        return isinstance(self.signal, CounterShare)

    @property
    def reads_prometheus(self) -> bool:
        return isinstance(self.signal, (PromQuery, CounterShare))

    @property
    def shows_serving(self) -> bool:
        """Whether a healthy reading of this rule is evidence that the release serves
        (core/evidence.py): a passing probe, or a query whose value needs requests (a ratio of
        rates or a quantile is NaN or empty without them). A host counter's reading is about the
        host, and `evidence: none` says so of a query (`up`, an OOM counter of node_exporter)."""
        if self.evidence is not None:
            return self.evidence == "serving"
        return not isinstance(self.signal, HostCheck)

    @property
    def uses_baseline(self) -> bool:
        """A threshold against the query's pre-deploy median (deploys.Baselines captures it).
        A judge rule compares counts instead, read by the signal reader itself."""
        return self.above_baseline is not None and not self.is_judge

    @property
    def needs_pre_deploy_data(self) -> bool:
        """Whether the deploy's baseline capture must run for this rule: a baseline rule, or a
        `no_data: vanished` one (it breaches only if it had data before the deploy)."""
        return self.uses_baseline or self.no_data == "vanished"

    def condition_text(self, baseline: float | None = None, raw: bool = False) -> str:
        """The condition in a human's words, with the numbers in use, in the rule's `value_unit`
        ("> 10% for 2m", base/format.py); `raw` writes them as the rule file does ("> 0.1 for
        2m"), for machines (the webhook payload's `threshold`). A judge rule's condition is
        its own (shares as percents, its confidence) either way."""
        if isinstance(self.signal, CounterShare):
            return self._judge_text()

        def number(value: float) -> str:
            return format_number(value, grouped=False) if raw else format_value(value, self.value_unit)

        if isinstance(self.signal, HttpCheck):
            want = f"status {self.signal.expect_status}"
            if self.signal.expect_body:
                want += f" and body containing {self.signal.expect_body!r}"
            text = want
        else:
            parts = []
            if self.above is not None:
                parts.append(f"> {number(self.above)}")
            if self.below is not None:
                parts.append(f"< {number(self.below)}")
            if self.above_baseline is not None:
                base = "unknown" if baseline is None else number(baseline)
                # The factor has no unit: "> 5 x baseline (120ms)".
                parts.append(f"> {format_number(self.above_baseline, grouped=False)} x baseline ({base})")
            if self.floor is not None:
                parts.append(f"> {number(self.floor)}")
            text = " and ".join(parts)
        if self.failures > 1:
            text += f", {self.failures} times in a row"
        if self.for_:
            text += f" for {format_duration(self.for_)}"
        return text

    def _judge_text(self) -> str:
        from watcher.core.judge import format_level, format_share

        assert isinstance(self.signal, CounterShare)
        if self.slower_than is not None or self.slower_than_baseline is not None:
            bound = (format_value(self.slower_than, "s") if self.slower_than is not None else
                     f"{format_number(self.slower_than_baseline, grouped=False)} x the pre-deploy "
                     f"p{format_number(100 - 100 * (self.above or 0), grouped=False)}")
            if self.slower_than_baseline is not None and self.floor:
                bound += f" (at least {format_value(self.floor, 's')})"
            text = f"share slower than {bound} > {format_share(self.above)}"
        elif self.above_baseline is not None:
            old = "the fleet's known-good share" if self.signal.baseline_errors else "the share before the deploy"
            text = f"share > {format_number(self.above_baseline, grouped=False)} x {old}"
            if self.floor:
                text += f" and > {format_share(self.floor)}"
        else:
            text = f"share > {format_share(self.above)}"
        text += f", sequential at {format_level(1 - self.alpha)} confidence"
        if self.warmup:
            text += f", after a {format_duration(self.warmup)} warm-up"
        return text

    @property
    def judge_what(self) -> str:
        """What a judge rule's share counts, for its messages."""
        if self.slower_than is not None:
            return f"share slower than {format_value(self.slower_than, 's')}"
        if self.slower_than_baseline is not None:
            return "share slower than the bound"
        return "share"


# ---------------------------------------------------------------------------------------------
# What a signal returned, and what it means for a rule


@dataclass(frozen=True)
class Sample:
    """One series of an instant query result."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str  # "200 in 12 ms", "connect error", "timeout after 2s", "status 503"
    status: int | None = None
    elapsed: float | None = None


# What a reader returns for one rule: the series of a query, a probe's answer, a judge rule's
# counts, or the error (signals.SourceError) that kept it from reading: an error is never
# "condition false". A string: Counts is imported for type checking only (see above).
SignalResult: TypeAlias = "list[Sample] | ProbeResult | BaseException | Counts"


class Outcome(str, Enum):
    """Argo Rollouts' four measurement outcomes, in our words."""

    OK = "ok"
    BREACH = "breach"
    NO_DATA = "no_data"
    ERROR = "error"


@dataclass(frozen=True)
class Observation:
    outcome: Outcome
    value: float | None = None  # the worst breaching value, else the largest finite one
    labels: dict[str, str] = field(default_factory=dict)  # of the worst breaching series
    breaching: int = 0  # how many series breach
    series: int = 0  # how many series came back
    detail: str = ""  # error reason, probe detail, "no baseline"
    no_baseline: bool = False  # a baseline rule without its baseline: it cannot fire
    # A breach whose firing waits: the trailing window of a `[$window]` rule does not breach
    # now (evaluate.both_windows), or its range still reaches back before the change
    # (evaluate.held_before_change). `for` runs on; the rule stays pending until it may fire.
    held: bool = False
    # A breach of `[$window]` while the trailing window reads healthy (both_windows), held or
    # not: how long the trailing window has read so is RuleState.gated_since.
    gated: bool = False
    # A judge rule (core/judge.py): its judgement, and whether the share looks too high while
    # the evidence is not conclusive yet (the rule is pending).
    judgement: Judgement | None = field(default=None, compare=False)
    suspect: bool = False

    @staticmethod
    def error(reason: str) -> Observation:
        return Observation(Outcome.ERROR, detail=reason)

    @property
    def healthy(self) -> bool:
        """OK on a real number: a ratio of 0/0 (no request in its window) reads NaN, which
        never breaches, and is not evidence of health either (it neither clears a breach nor
        verifies a rollback). A probe's OK has no value to doubt."""
        return self.outcome is Outcome.OK and (self.value is None or math.isfinite(self.value))


def classify(rule: Rule, result: SignalResult, baseline: float | None = None) -> Observation:
    """Turn a signal's raw result into an Observation for `rule`.

    `result` is a list of Samples, a ProbeResult, or an Exception (a SourceError): an error is
    never "condition false".
    """
    if isinstance(result, BaseException):
        return Observation.error(getattr(result, "reason", None) or str(result) or type(result).__name__)
    if isinstance(result, ProbeResult):
        return Observation(Outcome.OK if result.ok else Outcome.BREACH, value=result.elapsed, detail=result.detail)
    if not isinstance(result, list):  # Counts: what a judge rule's reader returns
        return _judged(rule, result)
    samples = list(result)
    if not samples:
        if rule.no_data == "vanished" and baseline is not None:
            return Observation(Outcome.BREACH, detail="no data since the deploy, though it had data before: vanished")
        return Observation(Outcome.NO_DATA, detail="no data")
    if rule.uses_baseline and not _usable_baseline(baseline):
        # No baseline, no comparison: the rule cannot fire (docs/design.md section 4).
        return Observation(Outcome.OK, value=_largest(samples), series=len(samples), detail="no baseline",
                           no_baseline=True)
    breaching = [s for s in samples if breaches(rule, s.value, baseline)]
    if not breaching:
        return Observation(Outcome.OK, value=_largest(samples), series=len(samples))
    worst = _worst(rule, breaching)
    return Observation(
        Outcome.BREACH, value=worst.value, labels=dict(worst.labels), breaching=len(breaching), series=len(samples)
    )


def _judged(rule: Rule, counts: Counts) -> Observation:
    """A judge rule's counts (core/counts.Counts) judged: a breach when the evidence rejects
    "share <= limit" at `alpha`, suspect (pending) while the share looks too high."""
    from watcher.core.judge import conclude, describe

    if counts.no_baseline:
        return Observation(Outcome.OK, detail=counts.note or "no request of the old release to compare with",
                           no_baseline=True)
    if counts.total <= 0:
        return Observation(Outcome.NO_DATA, detail=counts.note or "no request counted since the deploy")
    two_sample = rule.above_baseline is not None and rule.slower_than is None and rule.slower_than_baseline is None
    judgement = conclude(counts, rule.above if rule.above is not None else 1.0, rule.alpha,
                         factor=rule.above_baseline if two_sample else None, floor=rule.floor or 0.0)
    what = rule.judge_what
    if counts.bound is not None and rule.slower_than is None:
        what = f"share slower than {format_value(counts.bound, 's')}"
    return Observation(
        Outcome.BREACH if judgement.rejected else Outcome.OK,
        value=judgement.share,
        series=1,
        breaching=int(judgement.rejected),
        detail=describe(judgement, what),
        judgement=judgement,
        suspect=judgement.suspect and not judgement.rejected,
    )


def breaches(rule: Rule, value: float, baseline: float | None = None) -> bool:
    """Whether one value breaches the rule's thresholds. NaN and +-Inf never do."""
    if not math.isfinite(value):
        return False
    if rule.above is not None and not value > rule.above:
        return False
    if rule.below is not None and not value < rule.below:
        return False
    if rule.above_baseline is not None:
        if not _usable_baseline(baseline) or not value > rule.above_baseline * baseline:
            return False
    if rule.floor is not None and not value > rule.floor:
        return False
    return True


def _usable_baseline(baseline: float | None) -> TypeGuard[float]:
    return baseline is not None and math.isfinite(baseline) and baseline >= 0


def _largest(samples: list[Sample]) -> float | None:
    finite = [s.value for s in samples if math.isfinite(s.value)]
    return max(finite) if finite else (samples[0].value if samples else None)


def _worst(rule: Rule, breaching: list[Sample]) -> Sample:
    if rule.below is not None and rule.above is None and rule.above_baseline is None:
        return min(breaching, key=lambda s: s.value)
    return max(breaching, key=lambda s: s.value)


# ---------------------------------------------------------------------------------------------
# The state machine


class Phase(str, Enum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"


@dataclass(frozen=True)
class RuleState:
    """Everything a rule remembers between ticks; persisted so that a restart changes nothing."""

    phase: Phase = Phase.INACTIVE
    breach_since: float | None = None  # first tick of the current run of breaching evaluations
    breach_value: float | None = None  # the value on that tick: what the incident says it breached at
    active_since: float | None = None  # when the condition started to hold (pending start)
    gated_since: float | None = None  # first tick of the current run of breaches the trailing window held
    fired_at: float | None = None
    failures: int = 0  # consecutive breaching evaluations
    errors: int = 0  # consecutive errors, counted apart from everything else
    blind: bool = False  # `error_limit` errors in a row were reported
    no_baseline_reported: bool = False
    last_outcome: str | None = None
    last_value: float | None = None
    last_detail: str = ""
    last_labels: dict[str, str] = field(default_factory=dict)
    last_evidence: dict[str, float | bool | None] | None = None  # a judge rule's last judgement (core/judge.Judgement.facts)

    def gated_for(self, now: float) -> float:
        """How long the trailing window has held this rule's breach, at `now` (0: it does not)."""
        return now - self.gated_since if self.gated_since is not None else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["phase"] = self.phase.value
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RuleState:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["phase"] = Phase(known.get("phase", "inactive"))
        return cls(**known)


@dataclass(frozen=True)
class Transition:
    """A change worth a journal line: a phase change, or blind / recovered / no baseline."""

    rule: str
    kind: TransitionKind
    at: float
    before: Phase
    after: Phase
    reason: str


def inactive(state: RuleState) -> RuleState:
    """The state once its condition stops holding: nothing pending or firing, no breaches in a
    row; errors, blindness and the last observation are kept."""
    return replace(state, phase=Phase.INACTIVE, breach_since=None, breach_value=None, active_since=None, fired_at=None,
                   failures=0, gated_since=None)


def step(rule: Rule, state: RuleState, obs: Observation, now: float, error_limit: int = 4) -> tuple[RuleState, list[Transition]]:
    """Advance one rule by one evaluation at time `now`."""
    transitions: list[Transition] = []

    if obs.outcome is Outcome.ERROR:
        errors = state.errors + 1
        blind = state.blind
        if errors >= error_limit and not blind:
            blind = True
            transitions.append(
                Transition(rule.name, TransitionKind.BLIND, now, state.phase, state.phase, f"{errors} errors in a row: {obs.detail}")
            )
        # The state is held: an error neither advances to firing nor resets (STYLE.md).
        held = replace(state, errors=errors, blind=blind, last_outcome=obs.outcome.value, last_detail=obs.detail)
        return held, transitions

    if state.blind:
        transitions.append(Transition(rule.name, TransitionKind.RECOVERED, now, state.phase, state.phase, "the signal answers again"))
    state = replace(
        state,
        errors=0,
        blind=False,
        last_outcome=obs.outcome.value,
        last_value=obs.value,
        last_detail=obs.detail,
        last_labels=dict(obs.labels),
        last_evidence=obs.judgement.facts() if obs.judgement is not None else None,
    )

    if obs.no_baseline and not state.no_baseline_reported:
        state = replace(state, no_baseline_reported=True)
        transitions.append(
            Transition(rule.name, TransitionKind.NO_BASELINE, now, state.phase, state.phase, "no baseline before the deploy: cannot fire")
        )

    if obs.outcome is Outcome.NO_DATA:
        if rule.no_data == "keep":
            return state, transitions
        breach = rule.no_data == "breach"
    else:
        breach = obs.outcome is Outcome.BREACH

    if not breach and obs.suspect:
        # A judge rule whose share looks too high while its evidence is not conclusive yet:
        # pending, with no `for` (it fires when the evidence is, not after a time).
        if state.phase is not Phase.PENDING:
            transitions.append(Transition(rule.name, TransitionKind.PHASE, now, state.phase, Phase.PENDING, obs.detail))
        return replace(state, phase=Phase.PENDING, fired_at=None, failures=0,
                       breach_since=state.breach_since if state.breach_since is not None else now,
                       active_since=state.active_since if state.active_since is not None else now), transitions

    if not breach:
        if state.phase is not Phase.INACTIVE:
            transitions.append(Transition(rule.name, TransitionKind.PHASE, now, state.phase, Phase.INACTIVE, _ok_reason(obs)))
        return inactive(state), transitions

    failures = state.failures + 1
    if state.breach_since is None:  # the first breach of a run: its time and value are the incident's start
        state = replace(state, breach_since=now, breach_value=obs.value)
    gated_since = (state.gated_since if state.gated_since is not None else now) if obs.gated else None
    state = replace(state, failures=failures, gated_since=gated_since)
    if failures < rule.failures:
        return state, transitions

    before = state.phase
    active_since = state.active_since if state.active_since is not None else now
    # A held breach (obs.held) does not fire: its `for` has run, the moment waits for the
    # trailing window. Once firing, it fires on while the condition holds.
    if now - active_since >= rule.for_ and (before is Phase.FIRING or not obs.held):
        if before is not Phase.FIRING:
            state = replace(state, phase=Phase.FIRING, active_since=active_since, fired_at=now)
            transitions.append(Transition(rule.name, TransitionKind.PHASE, now, before, Phase.FIRING, _breach_reason(rule, obs, failures)))
        return state, transitions
    if before is Phase.INACTIVE:
        transitions.append(Transition(rule.name, TransitionKind.PHASE, now, before, Phase.PENDING, _breach_reason(rule, obs, failures)))
    return replace(state, phase=Phase.PENDING, active_since=active_since), transitions


def _breach_reason(rule: Rule, obs: Observation, failures: int) -> str:
    if obs.judgement is not None:
        return obs.detail  # "share 29% (99.9% confidence 24-35%) against 10%, after 212 requests"
    if rule.is_probe:
        return f"{obs.detail} ({failures} in a row)" if failures > 1 else obs.detail
    text = f"value {format_value(obs.value, rule.value_unit)}"
    if obs.labels:
        text += " " + format_labels(obs.labels)
    if obs.outcome is Outcome.NO_DATA:
        text = "no data (no_data: breach)"
    elif obs.value is None and obs.detail:
        text = obs.detail  # e.g. vanished: there is no value to show
    return text


def _ok_reason(obs: Observation) -> str:
    if obs.outcome is Outcome.NO_DATA:
        return "no data"
    return obs.detail or "condition no longer holds"


def finding(rule: Rule, state: RuleState, baseline: float | None = None) -> Finding:
    """What a firing or pending rule says, for decisions, the journal and messages. A health
    probe's finding is its answer ("status 503", "connect error", in `detail`), never its
    latency: the condition is about the status."""
    probe = isinstance(rule.signal, HttpCheck)
    return Finding(
        rule=rule.name,
        action=rule.action,
        condition=rule.condition_text(baseline),
        value=None if probe else state.last_value,
        unit="" if probe else rule.value_unit,
        since=state.breach_since,
        labels=dict(state.last_labels),
        detail=state.last_detail,
        threshold=rule.condition_text(baseline, raw=True),
        breach_value=None if probe else state.breach_value,
        evidence=dict(state.last_evidence) if state.last_evidence else None,
    )


@dataclass(frozen=True)
class Finding:
    """What a rule saw, in the words a message needs: used by decisions, journal and notifications."""

    rule: str
    action: str  # "rollback" | "notify"
    condition: str  # human form in the rule's unit, e.g. "> 10% for 2m" or "> 5 x baseline (120ms) and > 200ms"
    value: float | None = None  # the worst breaching value now, None for probes without a number
    unit: str = ""  # e.g. "s", "%", "" as declared by the rule (value_unit)
    since: float | None = None  # epoch seconds the condition first held
    labels: dict[str, str] = field(default_factory=dict, compare=False, hash=False)  # breaching series
    detail: str = ""  # e.g. "connect error", "status 503"
    threshold: str = ""  # the condition as the rule file writes it ("> 0.1 for 2m"), for machines
    breach_value: float | None = None  # the value at `since`, when the rule first breached
    # A judge rule's evidence: share, low, high, level, limit, requests, failures, log_e,
    # log_needed (core/judge.Judgement.facts): the interval messages and the webhook carry.
    evidence: dict[str, float | bool | None] | None = field(default=None, compare=False, hash=False)

    def reading(self, at_breach: bool = False) -> str:
        """"40.29% against > 10% for 2m" (base/format.py); `at_breach`: the value the rule had
        when it first breached, which the incident's timeline starts with."""
        value = self.breach_value if at_breach and self.breach_value is not None else self.value
        return format_reading(value, self.condition, self.unit)


# ---------------------------------------------------------------------------------------------
# The deploy-aware range `[$window]` (docs/design.md section 4)

WINDOW_TOKEN = "$window"


def window_seconds(now: float, deployed_at: float | None, in_watch_window: bool, min_window: float, max_window: float) -> int:
    """The time since the deploy, clamped to [min_window, max_window]; max_window outside a
    watch window. Whole seconds, rounded up so that the range never misses the deploy's scrape."""
    if not in_watch_window or deployed_at is None:
        return int(math.ceil(max_window))
    since = max(0.0, now - deployed_at)
    return int(math.ceil(min(max(since, min_window), max_window)))


# The trailing window's bounds: at least 3 scrapes (rate() needs two samples), at most a minute.
TRAILING_MAX = 60.0


def trailing_seconds(rule: Rule, scrape_interval: float, window_s: int, interval: float = 0.0) -> int | None:
    """The trailing window of a `[$window]` rule, or None when it has none.

    A release's errors averaged from its deploy keep a warm-up burst in the ratio long after it
    ended (measured: a 6 s burst of 50% errors held a `for: 10s` rule above 10% for 30 s). So
    `for` runs on the window since the deploy and the rule fires only on a tick where a short
    trailing window breaches too (the multiwindow pattern of the SRE workbook's burn-rate
    alerts; evaluate.both_windows). The default is a third of the rule's `for` (a burst must
    outlast most of `for` to fire), at least 3 scrape intervals and one tick `interval` (a
    shorter one leaves time between two ticks that no trailing window sees: ticks every 10 s
    never saw the "on" half of a release failing 5 s in 10), and at
    most a minute; a rule sets it with `trailing:` or turns it off with `trailing: off`. It is
    never longer than `[$window]` itself, where it adds nothing."""
    if not isinstance(rule.signal, PromQuery) or WINDOW_TOKEN not in rule.signal.query or rule.trailing == 0:
        return None
    if rule.trailing is not None:
        seconds = rule.trailing
    else:
        seconds = max(3 * scrape_interval, interval, min(rule.for_ / 3, TRAILING_MAX))
    seconds = int(math.ceil(seconds))
    return seconds if seconds < window_s else None


def render_query(query: str, window_s: int) -> str:
    """Put the window into `[$window]` ranges. Pure string work, no parsing needed."""
    return query.replace(WINDOW_TOKEN, f"{window_s}s")
