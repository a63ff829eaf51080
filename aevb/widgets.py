"""Explorers: a figure that answers controls, live in a kernel and static in the HTML book.

:func:`explorer` takes a ``render(**values)`` function that draws a matplotlib figure and a
dict of controls (name -> the values a reader may pick). In a kernel it builds ipywidgets
controls that re-render on change. In the static HTML book (``AEVB_WIDGETS=static``, set by
``make book``) it renders every combination at build time and writes a self-contained HTML
block: plain ``<input>``/``<select>`` controls and a few lines of JavaScript that swap the
pre-rendered images — no kernel, no CDN, no request leaving the page. A note under the
static view says that a kernel gives the live version.

Example::

    def render(sigma):
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot(x, np.exp(-(x**2) / (2 * sigma**2)))
        ax.set_title(f"sigma = {sigma}")
        return fig

    explorer(render, {"sigma": [0.5, 1.0, 2.0]}, title="A Gaussian bump")

Every combination of control values is rendered once in static mode, so keep the product of
the numbers of values small (at most about 30; :data:`MAX_STATES` is the hard limit) and the
figures modest.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

MODES: tuple[str, ...] = ("live", "static")
#: The most combinations one static explorer pre-renders (each is a PNG inside the page).
MAX_STATES = 64
STATIC_NOTE = (
    "Static view: every setting was computed when the book was built. Run this notebook in a "
    "kernel (JupyterLab, Colab, Binder) for the live version."
)

_serial = itertools.count()  # distinguishes identical explorers on one page


def widget_mode() -> str:
    """``AEVB_WIDGETS`` (``live`` or ``static``); default ``live`` inside an IPython kernel
    with ipywidgets installed, else ``static``."""
    mode = os.environ.get("AEVB_WIDGETS", "").strip().lower()
    if mode:
        if mode not in MODES:
            raise ValueError(f"AEVB_WIDGETS={mode!r}; use 'live' or 'static'")
        return mode
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None and "IPKernelApp" in shell.config:
            import ipywidgets  # noqa: F401

            return "live"
    except ImportError:
        pass
    return "static"


def figure_to_data_uri(fig) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def format_value(value: Any) -> str:
    """How a control value is shown: floats without binary noise (0.1, not 0.1000000001)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_controls(controls: dict[str, Sequence[Any]]) -> dict[str, list[Any]]:
    if not controls:
        raise ValueError("explorer needs at least one control, e.g. {'sigma': [0.1, 0.5, 1.0]}")
    out = {}
    for name, values in controls.items():
        if isinstance(values, (str, bytes)):
            raise TypeError(f"control {name!r}: give a list of values, not the string {values!r}")
        values = list(values)
        if not values:
            raise ValueError(f"control {name!r} has no values; give at least one")
        out[name] = values
    n_states = math.prod(len(v) for v in out.values())
    if n_states > MAX_STATES:
        sizes = " x ".join(f"{len(v)} {n}" for n, v in out.items())
        raise ValueError(
            f"{sizes} = {n_states} combinations; a static explorer pre-renders each one, so "
            f"keep it at most {MAX_STATES} (about 30 is plenty): use fewer values per control"
        )
    return out


def _start_indices(controls: dict[str, list[Any]], initial: dict[str, Any] | None) -> list[int]:
    initial = dict(initial or {})
    unknown = set(initial) - set(controls)
    if unknown:
        raise ValueError(f"initial names {sorted(unknown)} are not controls {sorted(controls)}")
    start = []
    for name, values in controls.items():
        if name not in initial:
            start.append(0)
            continue
        try:
            start.append(values.index(initial[name]))
        except ValueError:
            raise ValueError(
                f"initial {name}={initial[name]!r} is not one of its values {values}"
            ) from None
    return start


def _render_figure(render: Callable[..., Any], values: dict[str, Any]):
    """Call ``render``; a ``None`` return means it drew on the current figure."""
    import matplotlib.pyplot as plt

    fig = render(**values)
    if fig is None:
        fig = plt.gcf()
    if not hasattr(fig, "savefig"):
        raise TypeError(
            f"render({', '.join(f'{k}={v!r}' for k, v in values.items())}) returned "
            f"{type(fig).__name__}; return the matplotlib Figure it drew (e.g. `return fig`)"
        )
    return fig


def _json_for_html(obj: Any) -> str:
    """JSON that is safe inside a ``<script>`` element (no ``</script>``, no ``<!--``)."""
    return json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def static_explorer_html(
    render: Callable[..., Any],
    controls: dict[str, Sequence[Any]],
    *,
    title: str = "",
    initial: dict[str, Any] | None = None,
) -> str:
    """The self-contained HTML of a static explorer (every state rendered now).

    The block has class ``aevb-explorer``; each control has class ``aevb-control`` (a range
    slider for numeric values, a drop-down list otherwise), the view is the image
    ``.aevb-view`` and the note ``.aevb-note`` says that a kernel gives the live version.
    """
    controls = _check_controls(controls)
    names = list(controls)
    start = _start_indices(controls, initial)
    states: dict[str, str] = {}
    for combo in itertools.product(*(range(len(controls[n])) for n in names)):
        values = {n: controls[n][i] for n, i in zip(names, combo, strict=True)}
        states[",".join(map(str, combo))] = figure_to_data_uri(_render_figure(render, values))
    digest = hashlib.sha1(
        json.dumps([title, names, states], sort_keys=True).encode(), usedforsecurity=False
    ).hexdigest()[:10]
    uid = f"aevb-ex-{digest}-{next(_serial)}"
    rows = []
    for k, n in enumerate(names):
        values = controls[n]
        label = html.escape(n)
        if len(values) > 1 and all(_is_number(v) for v in values):
            rows.append(
                f'<label style="display:block;margin:2px 0">{label} '
                f'<input type="range" class="aevb-control" data-index="{k}" min="0" '
                f'max="{len(values) - 1}" step="1" value="{start[k]}" aria-label="{label}"> '
                f'<output class="aevb-value">{html.escape(format_value(values[start[k]]))}'
                "</output></label>"
            )
        else:
            options = "".join(
                f'<option value="{i}"{" selected" if i == start[k] else ""}>'
                f"{html.escape(format_value(v))}</option>"
                for i, v in enumerate(values)
            )
            rows.append(
                f'<label style="display:block;margin:2px 0">{label} '
                f'<select class="aevb-control" data-index="{k}" aria-label="{label}">'
                f"{options}</select></label>"
            )
    labels = _json_for_html([[format_value(v) for v in controls[n]] for n in names])
    first = states[",".join(map(str, start))]
    heading = f"<strong>{html.escape(title)}</strong>" if title else ""
    alt = html.escape(title or "explorer view", quote=True)
    return f"""<div class="aevb-explorer" id="{uid}" data-states="{len(states)}">
{heading}
<div class="aevb-controls">{"".join(rows)}</div>
<img class="aevb-view" alt="{alt}" src="{first}" style="max-width:100%">
<p class="aevb-note" style="font-size:85%;color:#555">{html.escape(STATIC_NOTE)}</p>
<script type="application/json" class="aevb-states">{_json_for_html(states)}</script>
<script>
(function() {{
  var root = document.getElementById("{uid}");
  if (!root) {{ return; }}
  var states = JSON.parse(root.querySelector(".aevb-states").textContent);
  var labels = {labels};
  var controls = root.querySelectorAll(".aevb-control");
  var view = root.querySelector(".aevb-view");
  function update() {{
    var key = Array.prototype.map.call(controls, function(c) {{ return c.value; }}).join(",");
    if (states[key]) {{ view.src = states[key]; }}
    Array.prototype.forEach.call(controls, function(c) {{
      var out = c.parentNode.querySelector(".aevb-value");
      if (out) {{ out.textContent = labels[+c.dataset.index][+c.value]; }}
    }});
  }}
  Array.prototype.forEach.call(controls, function(c) {{
    c.addEventListener("input", update);
    c.addEventListener("change", update);
  }});
}})();
</script>
</div>"""


def explorer(
    render: Callable[..., Any],
    controls: dict[str, Sequence[Any]],
    *,
    title: str = "",
    initial: dict[str, Any] | None = None,
    mode: str | None = None,
):
    """An interactive figure: ``render(**values)`` -> matplotlib Figure, for each control value.

    Args:
        render: draws the figure for one value of every control and returns it (a ``None``
            return means "the current figure").
        controls: name -> the values a reader may pick (numbers give a slider, anything else
            a drop-down list), in the order shown.
        title: shown above the controls.
        initial: name -> the value shown first (default: each control's first value).
        mode: ``"live"`` or ``"static"``; default :func:`widget_mode` (``AEVB_WIDGETS``).

    Returns:
        An object for the notebook to display: an ipywidgets box in ``live`` mode, an
        :class:`IPython.display.HTML` block (see :func:`static_explorer_html`) in ``static``
        mode.
    """
    mode = mode or widget_mode()
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; use 'live' or 'static'")
    controls = _check_controls(controls)
    start = _start_indices(controls, initial)
    if mode == "static":
        from IPython.display import HTML

        return HTML(static_explorer_html(render, controls, title=title, initial=initial))

    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    widgets = {}
    for (name, values), k in zip(controls.items(), start, strict=True):
        options = [(format_value(v), v) for v in values]
        if len(values) > 1 and all(_is_number(v) for v in values):
            widgets[name] = w.SelectionSlider(
                options=options, value=values[k], description=name, continuous_update=False
            )
        else:
            widgets[name] = w.Dropdown(options=options, value=values[k], description=name)
    out = w.Output()

    def redraw(**values):
        with out:
            out.clear_output(wait=True)
            fig = _render_figure(render, values)
            display(fig)
            plt.close(fig)

    w.interactive_output(redraw, widgets)
    head = [w.HTML(f"<strong>{html.escape(title)}</strong>")] if title else []
    box = w.VBox([*head, *widgets.values(), out])
    box.add_class("aevb-explorer-live")
    return box
