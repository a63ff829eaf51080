"""A small Sphinx extension for the AEVB book's HTML (loaded via `_config.yml`
``sphinx.local_extensions``). Four jobs:

1. **Clean page scripts and launch buttons.** Sphinx 7.4 lists an inline script twice when
   an extension registers it after the builder started (``app.add_js_file(None, body=...)``:
   the builder keeps it under the file name ``None``, the registry re-adds it as ``''``).
   sphinx-thebe and sphinx-togglebutton do this, so every page declared ``const
   THEBE_JS_URL`` twice: an uncaught SyntaxError in the console (tests/test_browser.py fails
   on any console error). Duplicates are removed per page. Thebe is off
   (``launch_buttons.thebe: false``), so its configuration script and loader are dropped too:
   nothing on a page can fetch it from unpkg.com, and the pages stay complete offline.
   Colab's launch button is kept on notebook pages only (Colab cannot open the landing
   page's ``intro.md``).

2. **Resolve the API reference's cross-references in the package's own terms.** The build is
   nit-picky (``-n -W``) and offline (no intersphinx). A reference in a docstring or a type
   hint that names a real object but has no entry in book/api.md would fail it: a re-export
   (``aevb.posterior.GridPosterior`` is ``aevb.intractable.GridPosterior``), a module
   constant without a docstring, a private module, or another project's class
   (``MultivariateNormal``, ``torch.Tensor``). Re-exports are linked to the documented
   object; other objects that exist are shown as plain code. A reference to something that
   does not exist still warns, so a typo in a docstring still fails the build.

3. **Prose attribute docstrings stay prose.** Napoleon reads the first line of an attribute,
   constant or property docstring as ``type: description``, so ``#: Hidden units of the
   continuous model: 200`` became a "type" of five unresolvable words. Such a line is left
   as prose unless the part before the colon looks like a type (``int``, ``torch.Tensor``,
   ``dict[str, int] | None``).

4. **The book's stylesheet** (book/_static/css/aevb.css): printed output wraps at the page's
   width instead of hiding the end of a long line behind a horizontal scroll bar.
"""

from __future__ import annotations

import builtins
import importlib
import re
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

_MISSING = object()


# --- 1. page scripts --------------------------------------------------------------------------


def _key(asset: Any) -> tuple:
    filename = getattr(asset, "filename", asset) or ""
    attributes = getattr(asset, "attributes", {}) or {}
    return (filename, tuple(sorted((k, str(v)) for k, v in attributes.items())))


def _is_thebe(asset: Any) -> bool:
    filename = str(getattr(asset, "filename", asset) or "")
    body = str((getattr(asset, "attributes", {}) or {}).get("body", ""))
    return "sphinx-thebe" in filename or "THEBE_JS_URL" in body


def clean_page_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Drop duplicate scripts (and thebe's, when thebe is off) from a page's script list."""
    scripts = context.get("script_files")
    if not scripts:
        return
    thebe_on = bool(app.config.html_theme_options.get("launch_buttons", {}).get("thebe"))
    seen: set[tuple] = set()
    kept = []
    for asset in scripts:
        key = _key(asset)
        if key in seen or (not thebe_on and _is_thebe(asset)):
            continue
        seen.add(key)
        kept.append(asset)
    context["script_files"] = kept


def colab_only_for_notebooks(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Colab opens ``.ipynb`` files only: drop its launch button on a MyST-NB markdown page
    (the landing page), where it would open ``intro.md`` and fail."""
    path = app.env.doc2path(pagename) if pagename in app.env.all_docs else ""
    if str(path).endswith(".ipynb"):
        return
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            group["buttons"] = [b for b in group["buttons"] if b.get("text") != "Colab"]


# --- 2. cross-references ----------------------------------------------------------------------


def lookup(dotted: str) -> Any:
    """The object a dotted name names (importing its module), or ``_MISSING``."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except Exception:  # noqa: BLE001 - not a module (or not importable): try shorter
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, _MISSING)
            if obj is _MISSING:
                return _MISSING
        return obj
    return _MISSING


def _canonical(obj: Any) -> str | None:
    if isinstance(obj, type(builtins)):
        return obj.__name__
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str) and "<" not in qualname:
        return f"{module}.{qualname}"
    return None


def _candidates(node) -> list[str]:
    target = node["reftarget"].lstrip("~.")
    module, cls = node.get("py:module"), node.get("py:class")
    names = [target]
    if module and cls:
        names.append(f"{module}.{cls}.{target}")
    if module:
        names.append(f"{module}.{target}")
    names += [f"aevb.{target}", f"builtins.{target}", f"typing.{target}"]
    return names


def resolve_existing(app: Sphinx, env, node, contnode):
    """``missing-reference``: link re-exports to their documented object; show other objects
    that exist as plain code; leave references to nothing to the nit-picky warning."""
    if node.get("refdomain") != "py":
        return None
    for name in _candidates(node):
        obj = lookup(name)
        if obj is _MISSING:
            continue
        canonical = _canonical(obj)
        if canonical and canonical != name:
            domain = env.get_domain("py")
            for role in (node["reftype"], "obj"):
                found = domain.resolve_xref(
                    env, node["refdoc"], app.builder, role, canonical, node, contnode
                )
                if found is not None:
                    return found
        return contnode
    return None


# --- 3. attribute docstrings -----------------------------------------------------------------

_ONE_TYPE = r"~?[\w.]+(\[[\w., \[\]|~]*\])?"  # int, torch.Tensor, dict[str, int]
_TYPE = re.compile(rf"{_ONE_TYPE}((\s*\|\s*|\s+or\s+){_ONE_TYPE})*")  # ... | None, ... or None


def keep_prose_attributes(app: Sphinx, what: str, name: str, obj, options, lines: list[str]):
    """``autodoc-process-docstring``, after napoleon: where napoleon turned a prose first line
    ``words: more words`` into ``:type: words``, put the words back in front of the text."""
    if what not in ("attribute", "data", "property"):
        return
    for i, line in enumerate(lines):
        match = re.fullmatch(r":type: (.*)", line)
        if match and not _TYPE.fullmatch(match.group(1).strip()):
            del lines[i]
            if i > 0 and not lines[i - 1].strip():
                del lines[i - 1]
            first = next((k for k, text in enumerate(lines) if text.strip()), None)
            if first is None:
                lines.append(match.group(1))
            else:
                lines[first] = f"{match.group(1)}: {lines[first]}"
            return


CSS = Path(__file__).resolve().parent / "css"  # the book's own stylesheet: aevb.css


def add_book_css(app: Sphinx) -> None:
    """Serve book/_static/css/ as static files (only that folder: not this module)."""
    app.config.html_static_path.append(str(CSS))


def setup(app: Sphinx) -> dict[str, Any]:
    # 4. The book's stylesheet (printed output wraps at the page's width).
    app.connect("builder-inited", add_book_css)
    app.add_css_file("aevb.css")
    # After sphinx.ext.napoleon's handler (default priority 500).
    app.connect("autodoc-process-docstring", keep_prose_attributes, priority=600)
    # After the themes' own html-page-context handlers (default priority 500).
    app.connect("html-page-context", clean_page_scripts, priority=900)
    app.connect("html-page-context", colab_only_for_notebooks, priority=900)
    app.connect("missing-reference", resolve_existing, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
