"""A picture of a breach: one rule's value over the watch window as a PNG, for the rollback and
halt messages and for `explain --plot` / `incidents --plot` (issue 24, item 2).

    Threshold      one line the condition draws: `> 10%`, `< 200`, `> 2 x baseline (120ms)`
    BreachPicture  everything the picture shows, as plain data: the rule, its unit, its
                   thresholds, the points (epoch seconds, value), and the deploy, breach and
                   switch moments; `picture_of` builds one from a rule
    render_png     BreachPicture -> PNG bytes; pure (no clock, no file, no network)

How a picture travels with a message (drawn off the caller's thread, attached as a file) is
notify/attach.py's.

What on-call sees (a phone in ntfy or Slack, 3 a.m.): the curve, the red threshold line with
its condition written at its end, the side of it that breaches lightly shaded, a dashed
"deploy" line, a solid "rollback" line where the switch happened, and a red dot with the value
at the breach. Values are written in the rule's unit with watcher.base.format's formatter (a 0.4
ratio reads 40%, 0.25 s reads 250ms), times in UTC as every message writes them. 960 x 540
pixels at 160 dpi: small enough in inches that the text stays large when a phone scales the
picture to its width.

Drawn with matplotlib's Agg canvas and its object API (Figure, never pyplot: pyplot keeps
global figures and is not for threads). matplotlib is imported here, on the first picture:
its import costs ~0.4-0.5 s and ~60 MB (bench/picture_cost.py), so nothing on the tick's or
`check`'s path imports this module's renderer. Without matplotlib (or when it fails) the
caller gets PictureError and goes on without a picture.

A value that is NaN or infinite is a gap in the curve; an empty series still gives a picture
(the thresholds and moments, and "no values in this window").
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from watcher.base.errors import WatcherError
from watcher.base.format import format_condition, format_number, format_time, format_value

if TYPE_CHECKING:  # matplotlib is imported when a picture is drawn, never with this module
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from watcher.core.rules import Rule

log = logging.getLogger(__name__)

WIDTH_PX = 960
HEIGHT_PX = 540
DPI = 160
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOT_LIMIT = 1e300

# Colours that stay apart for the common colour blindnesses and in dark-mode chat clients
# (the picture has its own white background).
_CURVE = "#1f5fa8"
_BAD = "#c62828"
_DEPLOY = "#555555"
_SWITCH = "#2e7d32"


class PictureError(WatcherError):
    """No picture could be made: matplotlib is missing, or it failed on this data."""


@dataclass(frozen=True)
class Threshold:
    """One line of the condition: the value crosses `op` `value` (">", ">=", "<", "<=").
    `note` says where a computed value came from ("2 x baseline 120ms")."""

    value: float
    op: str = ">"
    note: str = ""

    @property
    def breaches_above(self) -> bool:
        return self.op.startswith(">")

    def label(self, unit: str) -> str:
        text = f"{self.op} {format_value(self.value, unit)}"
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class BreachPicture:
    """What one picture shows. Times are epoch seconds; `points` are (time, value) in the
    rule's own scale (a ratio 0.4, not 40), in any order."""

    rule: str
    unit: str = ""
    thresholds: tuple[Threshold, ...] = ()
    points: tuple[tuple[float, float], ...] = ()
    deploy_at: float | None = None
    breach_at: float | None = None
    switch_at: float | None = None
    release: str = ""  # the release the rule judged, in the subtitle
    host: str = ""
    condition: str = ""  # the condition as the rule wrote it, when no line can show it


def thresholds_for(above: float | None = None, below: float | None = None,
                   above_baseline: float | None = None, baseline: float | None = None,
                   floor: float | None = None, unit: str = "") -> tuple[Threshold, ...]:
    """The lines a rule's condition draws (watcher.core.rules.Rule's fields): `above`, `below`, and
    for a baseline rule `above_baseline x baseline` when the baseline is known, and its floor."""
    lines: list[Threshold] = []
    if above is not None:
        lines.append(Threshold(float(above), ">"))
    if below is not None:
        lines.append(Threshold(float(below), "<"))
    if above_baseline is not None and baseline is not None and math.isfinite(baseline):
        note = f"{format_number(above_baseline)} x baseline {format_value(baseline, unit)}"
        lines.append(Threshold(float(above_baseline) * float(baseline), ">", note))
    if floor is not None:
        lines.append(Threshold(float(floor), ">", "floor"))
    return tuple(t for t in lines if math.isfinite(t.value))


def picture_of(rule: Rule, points: Sequence[tuple[float, float]], *, baseline: float | None = None,
               deploy_at: float | None = None, breach_at: float | None = None,
               switch_at: float | None = None, release: str = "", host: str = "") -> BreachPicture:
    """The picture of `rule` (a watcher.core.rules.Rule) over `points`, with its condition's lines
    (its baseline's, when it has one and it is known)."""
    lines = thresholds_for(rule.above, rule.below, rule.above_baseline, baseline, rule.floor, rule.value_unit)
    return BreachPicture(rule=rule.name, unit=rule.value_unit, thresholds=lines, points=tuple(points),
                         deploy_at=deploy_at, breach_at=breach_at, switch_at=switch_at, release=release,
                         host=host, condition=rule.condition_text(baseline))


def render_png(picture: BreachPicture, width: int = WIDTH_PX, height: int = HEIGHT_PX,
               dpi: int = DPI) -> bytes:
    """The picture as PNG bytes of exactly `width` x `height` pixels. PictureError when
    matplotlib is missing or fails; never anything else."""
    fig = figure(picture, width, height, dpi)
    out = io.BytesIO()
    try:
        fig.savefig(out, format="png", dpi=dpi, facecolor="white", metadata={"Title": picture.rule})
    except _DRAW_ERRORS as e:
        raise PictureError(f"matplotlib could not draw {picture.rule}: {type(e).__name__}: {e}") from None
    return out.getvalue()


def figure(picture: BreachPicture, width: int = WIDTH_PX, height: int = HEIGHT_PX, dpi: int = DPI) -> Figure:
    """The picture as a matplotlib Figure on an Agg canvas (render_png saves it; tests read its
    labels). PictureError when matplotlib is missing or fails."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PictureError(f"matplotlib is not installed ({e.name or e})") from None
    try:
        return _draw(picture, Figure, FigureCanvasAgg, width, height, dpi)
    except _DRAW_ERRORS as e:
        raise PictureError(f"matplotlib could not draw {picture.rule}: {type(e).__name__}: {e}") from None


# What matplotlib raises on data it cannot draw (limits, overflow, a font it cannot load).
_DRAW_ERRORS = (ArithmeticError, ValueError, TypeError, RuntimeError, OSError)


# --- drawing ------------------------------------------------------------------------------------


def _draw(p: BreachPicture, figure_class: type[Figure], canvas_class: type[FigureCanvasAgg], width: int, height: int,
          dpi: int) -> Figure:
    from matplotlib import dates as mdates
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    fig = figure_class(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    canvas_class(fig)
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.13, right=0.97, top=0.84, bottom=0.14)

    points = sorted((float(t), _finite_or_nan(v)) for t, v in p.points if _finite(t))
    values = [_plotted(v) for _, v in points if not math.isnan(v)]
    moments = [t for t in (p.deploy_at, p.breach_at, p.switch_at) if t is not None and _finite(t)]
    low, high = _value_range(values + [_plotted(_finite_or_nan(t.value)) for t in p.thresholds])
    start, end = _time_range([t for t, _ in points] + moments)

    ax.set_ylim(low, high)
    ax.set_xlim(_x(start), _x(end))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: format_value(float(v), p.unit)))
    locator = mdates.AutoDateLocator(tz=UTC, minticks=4, maxticks=8)  # type: ignore[no-untyped-call]
    locator.intervald[mdates.MINUTELY] = [1, 2, 5, 10, 15, 30]  # 2-minute steps for a 10m window
    ax.xaxis.set_major_locator(locator)
    clock = "%H:%M:%S" if end - start < 300 else "%H:%M"
    ax.xaxis.set_major_formatter(mdates.DateFormatter(clock, tz=UTC))  # type: ignore[no-untyped-call]
    ax.tick_params(labelsize=8.5)
    ax.set_xlabel("UTC", fontsize=8.5, color="#444444", loc="right")
    ax.grid(True, color="#dddddd", linewidth=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

    _shade_breaching_side(ax, p.thresholds, low, high)
    for threshold in p.thresholds:
        _draw_threshold(ax, threshold, p.unit)
    if points:
        ax.plot([_x(t) for t, _ in points], [_plotted(v) for _, v in points], color=_CURVE, linewidth=2.0,
                marker="o" if len(values) <= 2 else None, markersize=4, zorder=3)
    if not values:
        ax.text(0.5, 0.5, "no values in this window", transform=ax.transAxes, ha="center",
                va="center", fontsize=10, color="#666666")
    _draw_moment(ax, p.deploy_at, "deploy", _DEPLOY, "--")
    _draw_moment(ax, p.switch_at, "rollback", _SWITCH, "-")
    _draw_breach(ax, p, points, low, high)

    fig.text(0.02, 0.95, p.rule, fontsize=11, fontweight="bold", va="top", ha="left")
    fig.text(0.02, 0.885, _subtitle(p), fontsize=8, va="top", ha="left", color="#444444")
    return fig


def _shade_breaching_side(ax: Axes, thresholds: Sequence[Threshold], low: float, high: float) -> None:
    """A rule's thresholds combine with AND (watcher.core.rules.Rule): a value breaches above the
    highest `>` line and below the lowest `<` line; only that band is shaded."""
    finite = [t for t in thresholds if _finite(t.value)]
    floors = [_plotted(float(t.value)) for t in finite if t.breaches_above]
    ceilings = [_plotted(float(t.value)) for t in finite if not t.breaches_above]
    if not floors and not ceilings:
        return
    bottom = max(floors) if floors else min(low, min(ceilings))
    top = min(ceilings) if ceilings else max(high, max(floors))
    if bottom < top:
        ax.axhspan(bottom, top, color=_BAD, alpha=0.07, linewidth=0, zorder=0)


def _draw_threshold(ax: Axes, threshold: Threshold, unit: str) -> None:
    if not _finite(threshold.value):
        return
    value = _plotted(float(threshold.value))
    ax.axhline(value, color=_BAD, linestyle=(0, (5, 3)), linewidth=1.4, zorder=2)
    ax.annotate(threshold.label(unit), xy=(1.0, value), xycoords=("axes fraction", "data"),
                xytext=(-3, 3 if threshold.breaches_above else -3), textcoords="offset points",
                ha="right", va="bottom" if threshold.breaches_above else "top", fontsize=8.5,
                color=_BAD, fontweight="bold", zorder=5)


def _draw_moment(ax: Axes, at: float | None, label: str, color: str, style: str) -> None:
    if at is None or not _finite(at):
        return
    x = _x(at)
    ax.axvline(x, color=color, linestyle=style, linewidth=1.3, zorder=2)
    ax.annotate(label, xy=(x, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -3),
                textcoords="offset points", ha="left", va="top", fontsize=8, color=color, zorder=5)


def _draw_breach(ax: Axes, p: BreachPicture, points: list[tuple[float, float]], low: float, high: float) -> None:
    """A red dot on the curve at the breach, with the value it had then."""
    if p.breach_at is None or not _finite(p.breach_at):
        return
    at_or_after = [(t, v) for t, v in points if t >= p.breach_at and not math.isnan(v)]
    before = [(t, v) for t, v in points if t < p.breach_at and not math.isnan(v)]
    nearest = at_or_after[0] if at_or_after else (before[-1] if before else None)
    if nearest is None:
        ax.axvline(_x(p.breach_at), color=_BAD, linestyle=":", linewidth=1.3, zorder=2)
        return
    t, v = nearest
    ax.plot([_x(t)], [_plotted(v)], marker="o", markersize=7, color=_BAD, zorder=6)
    above_middle = _plotted(v) > low + (high - low) / 2 if math.isfinite(high - low) else True
    ax.annotate(format_value(v, p.unit), xy=(_x(t), _plotted(v)), xytext=(6, -12 if above_middle else 8),
                textcoords="offset points", fontsize=9, fontweight="bold", color=_BAD, zorder=6,
                bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})


def _subtitle(p: BreachPicture) -> str:
    where = " on ".join(x for x in (p.release, p.host) if x)
    parts = [where] if where else []
    if p.breach_at is not None and _finite(p.breach_at):
        parts.append(f"breached {format_time(p.breach_at)}")
    if not p.thresholds and p.condition:
        parts.append(format_condition(p.condition, p.unit))
    return "  ·  ".join(parts)


# --- ranges -------------------------------------------------------------------------------------


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _finite_or_nan(v: Any) -> float:
    """A value: a gap (NaN) for NaN, ±Inf or anything that is not a number."""
    return float(v) if _finite(v) else math.nan


def _plotted(v: float) -> float:
    """Where a value is drawn: beyond ±PLOT_LIMIT at the limit (matplotlib's tick arithmetic
    overflows near 1.8e308); its label still says the real value."""
    return v if math.isnan(v) else max(-PLOT_LIMIT, min(PLOT_LIMIT, v))


def _value_range(values: list[float]) -> tuple[float, float]:
    """The y range: every value and threshold, 0 when all are positive and 0 is near (a ratio
    reads best from 0), 8% headroom; never empty, never infinite."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    if low > 0 and low < high * 0.5:
        low = 0.0
    span = high - low
    if not math.isfinite(span):  # -1e308 .. 1e308: the span itself overflows
        return low, high
    if span == 0:
        pad = abs(high) * 0.1 or 1.0
        return low - pad, high + pad
    pad = span * 0.08
    low2, high2 = (low - pad if low != 0 else 0.0), high + pad
    return (low2 if math.isfinite(low2) else low), (high2 if math.isfinite(high2) else high)


def _time_range(times: Sequence[float]) -> tuple[float, float]:
    if not times:
        return 0.0, 60.0
    start, end = min(times), max(times)
    if end - start < 60:  # one point, or moments on top of each other: a minute around them
        middle = (start + end) / 2
        return middle - 30, middle + 30
    pad = (end - start) * 0.02
    return start - pad, end + pad


def _x(epoch: float) -> float:
    """Where an epoch time goes on the x axis: matplotlib's date number (its `date.epoch`)."""
    from matplotlib import dates as mdates

    return float(mdates.date2num(datetime.fromtimestamp(epoch, tz=UTC)))  # type: ignore[no-untyped-call]
