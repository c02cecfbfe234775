"""The picture of a breach (watcher/notify/pictures.py): PNG bytes that decode as an image of the
size asked for, values in the rule's unit, and a picture whatever the data (NaN, nothing, one
point, huge values). Pure: matplotlib draws in memory, Pillow (a matplotlib dependency) decodes.
"""

from __future__ import annotations

import io
import math
import subprocess
import sys
import textwrap
import threading

import pytest
from PIL import Image

from watcher.base.format import format_value
from watcher.notify.attach import PictureMaker
from watcher.notify.pictures import (
    HEIGHT_PX,
    PNG_SIGNATURE,
    WIDTH_PX,
    BreachPicture,
    PictureError,
    Threshold,
    figure,
    render_png,
    thresholds_for,
)

T0 = 1_764_000_000.0  # 2025-11-24T16:00:00Z


def ramp(n: int = 40, step: float = 15.0, bad_from: int = 20) -> tuple[tuple[float, float], ...]:
    """A 5xx ratio of ~2% that jumps to ~40% at point `bad_from`."""
    return tuple((T0 + step * i, 0.02 + (0.38 if i >= bad_from else 0.0) + 0.005 * math.sin(i)) for i in range(n))


def breach(**changes) -> BreachPicture:
    base = dict(rule="http-5xx-ratio", unit="ratio", thresholds=thresholds_for(above=0.1), points=ramp(),
                deploy_at=T0 + 15 * 18, breach_at=T0 + 15 * 20, switch_at=T0 + 15 * 30, release="r42",
                host="web-1")
    base.update(changes)
    return BreachPicture(**base)


def decoded(png: bytes) -> Image.Image:
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    image.load()  # decodes every pixel: a truncated or corrupt PNG raises here
    assert image.format == "PNG"
    return image


def labels(fig, axis: str) -> list[str]:
    fig.canvas.draw()
    ax = fig.axes[0]
    ticks = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
    return [t.get_text() for t in ticks if t.get_text()]


def texts(fig) -> list[str]:
    fig.canvas.draw()
    found = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        found += [t.get_text() for t in ax.texts]
    return found


def test_breach_picture_decodes_as_png_of_960_by_540():
    image = decoded(render_png(breach()))
    assert image.size == (WIDTH_PX, HEIGHT_PX) == (960, 540)


def test_size_asked_for_is_the_size_of_the_png():
    assert decoded(render_png(breach(), width=640, height=360, dpi=100)).size == (640, 360)


def test_ratio_values_read_as_percents_on_the_axis_and_the_labels():
    fig = figure(breach())
    ys = labels(fig, "y")
    assert ys and all(y.endswith("%") for y in ys)
    assert "10%" in ys or "20%" in ys
    shown = texts(fig)
    assert "> 10%" in shown  # the threshold, in the rule's unit, not "> 0.1"
    assert any(t.endswith("%") and t.startswith("4") for t in shown)  # the value at the breach: ~40%
    assert "deploy" in shown and "rollback" in shown
    assert any("r42 on web-1" in t for t in shown)


def test_seconds_read_as_durations_on_the_axis():
    points = tuple((T0 + 15 * i, 0.12 if i < 20 else 0.9) for i in range(40))
    fig = figure(breach(unit="s", points=points, thresholds=thresholds_for(above=0.5)))
    ys = labels(fig, "y")
    assert any(y.endswith("ms") for y in ys)
    assert "> 500ms" in texts(fig)


def test_times_read_as_utc_clock_times():
    xs = labels(figure(breach()), "x")
    assert "16:02" in xs and "16:04" in xs


def test_baseline_rule_draws_its_computed_line_with_where_it_came_from():
    lines = thresholds_for(above_baseline=2.0, baseline=0.12, floor=0.05, unit="s")
    assert [(round(t.value, 6), t.op) for t in lines] == [(0.24, ">"), (0.05, ">")]
    assert lines[0].label("s") == "> 240ms (2 x baseline 120ms)"
    assert decoded(render_png(breach(unit="s", thresholds=lines))).size == (960, 540)


def test_baseline_rule_without_a_baseline_draws_no_baseline_line():
    assert thresholds_for(above_baseline=2.0, baseline=None) == ()


def test_below_threshold_is_labelled_with_its_direction():
    assert Threshold(50.0, "<").label("req/s") == "< 50req/s"
    decoded(render_png(breach(unit="", thresholds=(Threshold(50.0, "<"),))))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_or_infinite_values_are_gaps_and_the_picture_is_made(bad):
    points = tuple((t, bad if i % 3 == 0 else v) for i, (t, v) in enumerate(ramp()))
    assert decoded(render_png(breach(points=points))).size == (960, 540)


def test_only_nan_values_give_a_picture_saying_no_values():
    points = tuple((t, math.nan) for t, _ in ramp())
    fig = figure(breach(points=points))
    assert "no values in this window" in texts(fig)
    decoded(render_png(breach(points=points)))


def test_empty_series_gives_a_picture_with_the_threshold_and_moments():
    fig = figure(breach(points=()))
    shown = texts(fig)
    assert "no values in this window" in shown and "> 10%" in shown and "deploy" in shown
    assert decoded(render_png(breach(points=()))).size == (960, 540)


def test_empty_series_without_moments_or_thresholds_still_gives_a_picture():
    assert decoded(render_png(BreachPicture(rule="r"))).size == (960, 540)


def test_one_point_gives_a_picture():
    points = ((T0, 0.4),)
    assert decoded(render_png(breach(points=points, deploy_at=None, switch_at=None, breach_at=T0))).size == (960, 540)


def test_all_values_equal_give_a_picture():
    points = tuple((T0 + 15 * i, 0.25) for i in range(10))
    decoded(render_png(breach(points=points, thresholds=())))


@pytest.mark.parametrize("huge", [1e300, 1.7e308, -1.7e308])
def test_huge_values_give_a_picture(huge):
    points = tuple((t, huge if i > 20 else v) for i, (t, v) in enumerate(ramp()))
    assert decoded(render_png(breach(points=points))).size == (960, 540)


def test_values_from_minus_max_to_max_give_a_picture():
    points = ((T0, -1.7e308), (T0 + 60, 1.7e308), (T0 + 120, 0.0))
    decoded(render_png(breach(points=points, unit="")))


def test_points_out_of_order_and_moments_outside_them_give_a_picture():
    points = tuple(reversed(ramp()))
    decoded(render_png(breach(points=points, deploy_at=T0 - 3600, switch_at=T0 + 7200)))


def test_breach_before_every_point_marks_the_moment_without_a_dot():
    decoded(render_png(breach(breach_at=T0 - 600)))


def test_non_numbers_in_points_are_gaps():
    points = ((T0, "x"), (T0 + 15, None), (T0 + 30, 0.3), ("later", 0.4))
    decoded(render_png(breach(points=points)))


def test_without_matplotlib_a_picture_error_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # `import` raises ImportError
    with pytest.raises(PictureError, match="matplotlib is not installed"):
        render_png(breach())


def test_value_beyond_what_can_be_drawn_is_labelled_with_its_real_value():
    points = ((T0, 0.01), (T0 + 15, 1.7e308), (T0 + 30, 1.7e308))
    fig = figure(breach(points=points, unit="", breach_at=T0 + 15, thresholds=(Threshold(0.1),)))
    assert format_value(1.7e308, "") in texts(fig)  # not PLOT_LIMIT, where it is drawn


def test_infinite_threshold_is_left_out_and_the_picture_is_made():
    decoded(render_png(breach(thresholds=(Threshold(math.inf), Threshold(0.1)))))


# --- PictureMaker: drawing off the caller's thread, a bounded wait ---------------------------------


def test_maker_draws_a_real_png_for_whoever_asks():
    maker = PictureMaker(wait=60)  # the real matplotlib, imported on a machine that may be loaded
    try:
        assert decoded(maker.png("m1", breach())).size == (960, 540)
    finally:
        maker.close()


def test_warm_imports_matplotlib_on_the_drawing_thread_without_waiting_for_it():
    """In a fresh process (this one may have imported matplotlib already): warm() returns at
    once, and the drawing thread imports matplotlib, as the tick asks while a rollback rule is
    pending, so that the first picture does not pay for the import while its message waits."""
    code = textwrap.dedent("""
        import sys, threading, time
        from watcher.notify.attach import PictureMaker
        maker = PictureMaker()
        assert "matplotlib.figure" not in sys.modules
        maker.warm(); maker.warm()
        assert threading.current_thread() is threading.main_thread()
        deadline = time.monotonic() + 60
        while "matplotlib.figure" not in sys.modules and time.monotonic() < deadline:
            time.sleep(0.05)
        print("imported" if "matplotlib.figure" in sys.modules else "not imported")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90)
    assert done.stdout.strip() == "imported", done.stderr


def test_maker_draws_one_picture_for_every_target_of_a_message():
    drawn = []

    def render(picture):
        drawn.append(picture.rule)
        return PNG_SIGNATURE + b"fake"

    maker = PictureMaker(render=render)
    try:
        assert maker.png("m1", breach()) == maker.png("m1", breach()) == PNG_SIGNATURE + b"fake"
        maker.png("m2", breach(rule="latency"))
    finally:
        maker.close()
    assert drawn == ["http-5xx-ratio", "latency"]


def test_maker_not_ready_within_its_wait_gives_none_and_a_later_ask_gets_it():
    go = threading.Event()

    def slow(picture):
        go.wait(30)
        return PNG_SIGNATURE + b"late"

    maker = PictureMaker(render=slow, wait=0.05)
    try:
        assert maker.png("m1", breach()) is None  # the message goes without it
        go.set()
        maker.wait = 30
        assert maker.png("m1", breach()) == PNG_SIGNATURE + b"late"  # a redelivery, another target
    finally:
        maker.close()


@pytest.mark.parametrize("error", [PictureError("matplotlib is not installed"), ZeroDivisionError("a bug")])
def test_maker_failing_gives_none_and_goes_on_drawing(error):
    calls = []

    def render(picture):
        calls.append(picture.rule)
        if len(calls) == 1:
            raise error
        return PNG_SIGNATURE

    maker = PictureMaker(render=render)
    try:
        assert maker.png("m1", breach()) is None
        assert maker.png("m2", breach()) == PNG_SIGNATURE
    finally:
        maker.close()


def test_picture_of_a_rule_takes_its_name_unit_and_condition_lines():
    from watcher.core.rules import PromQuery, Rule
    from watcher.notify.pictures import picture_of

    rule = Rule(name="latency-p99", signal=PromQuery("histogram_quantile(0.99, x)"), action="rollback",
                above_baseline=2.0, floor=0.05, value_unit="s")
    p = picture_of(rule, ramp(), baseline=0.12, deploy_at=T0, breach_at=T0 + 60, release="r42", host="web-1")
    assert (p.rule, p.unit, p.release, p.host, p.deploy_at, p.breach_at) == ("latency-p99", "s", "r42", "web-1", T0, T0 + 60)
    assert [t.label("s") for t in p.thresholds] == ["> 240ms (2 x baseline 120ms)", "> 50ms (floor)"]
    assert "> 2 x baseline (120ms)" in p.condition  # in the rule's unit, as every output writes it
