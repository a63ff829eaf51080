"""aevb.widgets: explorers that are live in a kernel and static (pre-rendered) in the book.

The static HTML is checked as text here, and driven in headless Chromium by the
``browser``-marked test at the end (it needs no built book).
"""

from __future__ import annotations

import base64
import json
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from aevb import widgets  # noqa: E402


def _render_calls():
    calls = []

    def render(sigma, shape="line"):
        calls.append((sigma, shape))
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1], [0, sigma] if shape == "line" else [sigma, 0])
        ax.set_title(f"{shape} {sigma}")
        return fig

    return render, calls


def _states(markup: str) -> dict[str, str]:
    raw = re.search(r'<script type="application/json" class="aevb-states">(.*?)</script>', markup)
    assert raw, "no states block"
    return json.loads(raw.group(1))


CONTROLS = {"sigma": [0.5, 1.0, 2.0], "shape": ["line", "flipped"]}


@pytest.fixture(scope="module")
def demo() -> tuple[str, list]:
    """One static explorer over CONTROLS (rendered once for the tests that only read it)."""
    render, calls = _render_calls()
    return widgets.static_explorer_html(render, CONTROLS, title="demo"), calls


def test_widget_mode_reads_the_environment(monkeypatch):
    monkeypatch.setenv("AEVB_WIDGETS", "static")
    assert widgets.widget_mode() == "static"
    monkeypatch.setenv("AEVB_WIDGETS", " LIVE ")
    assert widgets.widget_mode() == "live"
    monkeypatch.setenv("AEVB_WIDGETS", "kernel")
    with pytest.raises(ValueError, match="AEVB_WIDGETS"):
        widgets.widget_mode()
    monkeypatch.delenv("AEVB_WIDGETS")
    assert widgets.widget_mode() == "static"  # no kernel here


def test_static_explorer_prerenders_every_combination_once(demo):
    markup, calls = demo
    assert sorted(calls) == sorted((s, k) for s in CONTROLS["sigma"] for k in CONTROLS["shape"])
    states = _states(markup)
    assert set(states) == {f"{i},{j}" for i in range(3) for j in range(2)}
    assert 'data-states="6"' in markup
    for uri in states.values():
        assert uri.startswith("data:image/png;base64,")
        assert base64.b64decode(uri.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(set(states.values())) == 6, "different settings must give different views"
    assert not plt.get_fignums(), "every rendered figure is closed"


def test_static_explorer_is_self_contained_and_says_a_kernel_is_live(demo):
    markup, _ = demo
    assert "http://" not in markup and "https://" not in markup
    assert "require(" not in markup and "<script src" not in markup
    assert 'class="aevb-note"' in markup and "kernel" in widgets.STATIC_NOTE
    assert "live version" in widgets.STATIC_NOTE
    # numbers give a slider over indices, other values a drop-down list
    assert re.search(r'<input type="range" class="aevb-control" data-index="0"[^>]*max="2"', markup)
    assert '<select class="aevb-control" data-index="1"' in markup
    assert markup.count('class="aevb-control"') == 2


def test_initial_values_pick_the_first_view():
    render, _ = _render_calls()
    markup = widgets.static_explorer_html(
        render, CONTROLS, initial={"sigma": 2.0, "shape": "flipped"}
    )
    states = _states(markup)
    shown = re.search(r'<img class="aevb-view"[^>]*src="([^"]+)"', markup).group(1)
    assert shown == states["2,1"]
    assert 'value="2" aria-label="sigma"' in markup
    assert '<option value="1" selected>flipped</option>' in markup


@pytest.mark.parametrize(
    ("controls", "initial", "match"),
    [
        ({}, None, "at least one control"),
        ({"sigma": []}, None, "no values"),
        ({"shape": "line"}, None, "list of values"),
        ({"a": list(range(10)), "b": list(range(10))}, None, "100 combinations"),
        (CONTROLS, {"sigma": 3.0}, "not one of its values"),
        (CONTROLS, {"colour": "red"}, "not controls"),
    ],
)
def test_bad_controls_are_explained(controls, initial, match):
    render, calls = _render_calls()
    with pytest.raises((ValueError, TypeError), match=match):
        widgets.explorer(render, controls, initial=initial, mode="static")
    assert not calls, "nothing is rendered before the arguments are checked"


def test_render_must_return_a_figure():
    with pytest.raises(TypeError, match="return the matplotlib Figure"):
        widgets.static_explorer_html(lambda sigma: 42, {"sigma": [1, 2]})


def test_render_may_draw_on_the_current_figure():
    def render(sigma):
        plt.plot([0, sigma])

    states = _states(widgets.static_explorer_html(render, {"sigma": [1, 2]}))
    assert len(states) == 2 and not plt.get_fignums()


def test_labels_cannot_break_out_of_the_page():
    render = lambda tag: plt.figure(figsize=(1, 1))  # noqa: E731
    markup = widgets.static_explorer_html(
        render, {"tag": ["</script><b>", "a&b"]}, title="<i>t</i>"
    )
    assert markup.count("</script>") == 2  # the states block and the code, nothing else
    assert "<b>" not in markup and "<i>t</i>" not in markup


def test_float_values_are_shown_without_binary_noise():
    assert widgets.format_value(0.1 + 0.2) == "0.3"
    assert widgets.format_value(3) == "3" and widgets.format_value("a") == "a"


def test_identical_explorers_get_distinct_ids():
    render, _ = _render_calls()
    a = widgets.static_explorer_html(render, {"sigma": [1.0, 2.0]})
    b = widgets.static_explorer_html(render, {"sigma": [1.0, 2.0]})
    ida = re.search(r'id="(aevb-ex-[^"]+)"', a).group(1)
    idb = re.search(r'id="(aevb-ex-[^"]+)"', b).group(1)
    assert ida != idb


def test_explorer_static_mode_returns_displayable_html(monkeypatch):
    monkeypatch.setenv("AEVB_WIDGETS", "static")
    render, _ = _render_calls()
    shown = widgets.explorer(render, {"sigma": [1.0, 2.0]}, title="demo")
    assert 'class="aevb-explorer"' in shown._repr_html_()
    with pytest.raises(ValueError, match="mode"):
        widgets.explorer(render, CONTROLS, mode="kernel")


def test_explorer_live_mode_rerenders_on_change():
    ipywidgets = pytest.importorskip("ipywidgets")
    render, calls = _render_calls()
    box = widgets.explorer(render, CONTROLS, title="demo", initial={"sigma": 1.0}, mode="live")
    assert isinstance(box, ipywidgets.VBox)
    sliders = [c for c in box.children if isinstance(c, ipywidgets.SelectionSlider)]
    dropdowns = [c for c in box.children if isinstance(c, ipywidgets.Dropdown)]
    assert len(sliders) == 1 and len(dropdowns) == 1
    assert sliders[0].value == 1.0 and sliders[0].label == "1"
    assert [label for label, _ in sliders[0].options] == ["0.5", "1", "2"]
    assert calls[-1] == (1.0, "line")
    sliders[0].value = 2.0
    assert calls[-1] == (2.0, "line")
    dropdowns[0].value = "flipped"
    assert calls[-1] == (2.0, "flipped")
    plt.close("all")


@pytest.mark.browser
def test_static_explorer_responds_in_chromium(browser, demo):
    """The static block's own JavaScript: moving each control swaps the image."""
    markup, _ = demo
    states = _states(markup)
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.set_content(f"<!doctype html><html><body>{markup}</body></html>")
        view = page.locator(".aevb-view")
        assert view.get_attribute("src") == states["0,0"]
        slider = page.locator("input.aevb-control")
        slider.focus()
        page.keyboard.press("ArrowRight")
        assert view.get_attribute("src") == states["1,0"]
        assert page.locator(".aevb-value").text_content() == "1"
        page.keyboard.press("End")
        assert view.get_attribute("src") == states["2,0"]
        page.locator("select.aevb-control").select_option(index=1)
        assert view.get_attribute("src") == states["2,1"]
        assert view.evaluate("i => i.complete && i.naturalWidth > 0")
    finally:
        page.close()
    assert not errors


def test_progress_bars_are_off_in_the_static_build(monkeypatch):
    """A tqdm bar in a kernel is an ipywidgets view, which the static HTML cannot show: under
    AEVB_WIDGETS=static every bar is disabled, even one asked for with ``disable=None``
    (what aevb.train.fit passes)."""
    from aevb.progress import progress

    monkeypatch.setenv("AEVB_WIDGETS", "static")
    assert progress(total=3, disable=None).disable
    assert progress(total=3, disable=False).disable
    monkeypatch.setenv("AEVB_WIDGETS", "live")
    monkeypatch.delenv("AEVB_PROGRESS", raising=False)
    assert not progress(total=3, disable=False).disable
