"""The book's configuration: one repository URL, launch buttons, offline HTML, Binder's
environment, notebooks fit for Colab, and an API reference that covers the package.

These read files only (no build, no kernel), so they run in a second or two.
"""

from __future__ import annotations

import ast
import collections
import importlib
import json
import pkgutil
import re
from pathlib import Path

import pytest
import tomllib
import yaml

REPO = Path(__file__).resolve().parent.parent
BOOK = REPO / "book"
CONFIG = yaml.safe_load((REPO / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"]
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))


def _toc_files() -> list[str]:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part["chapters"]]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


# --- the repository, named once -----------------------------------------------------------


def test_repository_url_is_a_github_repository():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", REPO_URL), REPO_URL
    assert CONFIG["repository"]["branch"]
    assert CONFIG["repository"].get("path_to_book", "") in ("", None), (
        "the book is at the repository root: path_to_book '' (a '.' puts '/./' in launch URLs)"
    )


def test_launch_buttons_colab_binder_and_download():
    launch = CONFIG["launch_buttons"]
    assert launch["colab_url"] == "https://colab.research.google.com"
    assert launch["binderhub_url"].startswith("https://")
    assert "jupyterhub_url" not in launch, "no JupyterHub to point at: a dead button"
    assert launch.get("thebe") is False, "thebe loads from a CDN; the book uses static explorers"
    assert CONFIG["html"]["use_download_button"] is True
    assert CONFIG["html"]["use_repository_button"] is True


def test_every_repository_url_in_the_book_is_the_configured_one():
    """Install lines and clone commands in the book all name _config.yml's repository."""
    found = []
    for path in sorted(BOOK.glob("*.ipynb")) + sorted(BOOK.glob("*.md")):
        text = path.read_text()
        for url in re.findall(r"git\+(https://[^\s\"'@\\]+)", text):
            found.append((path.name, url))
        for url in re.findall(r"git clone (https://\S+)", text):
            found.append((path.name, url))
    wrong = [(name, url) for name, url in found if url.rstrip("/").removesuffix(".git") != REPO_URL]
    assert not wrong, f"repository URLs that differ from _config.yml's {REPO_URL}: {wrong}"


# --- notebooks: committed clean, and ready for Colab --------------------------------------


def _first_code_cell(path: Path) -> str:
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert cells, f"{path.name} has no code cell"
    src = cells[0]["source"]
    return "".join(src) if isinstance(src, list) else src


def _python_of(cell: str) -> ast.Module:
    from IPython.core.inputtransformer2 import TransformerManager

    return ast.parse(TransformerManager().transform_cell(cell))


def _is_colab_guard(test: ast.expr) -> bool:
    """``"google.colab" in sys.modules``."""
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Constant)
        and test.left.value == "google.colab"
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.In)
        and ast.unparse(test.comparators[0]) == "sys.modules"
    )


def _magic_calls(tree: ast.AST, magic: str) -> list[str]:
    """Arguments of ``get_ipython().run_line_magic(magic, ...)`` calls under ``tree``."""
    out = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "run_line_magic"
            and len(node.args) == 2
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == magic
        ):
            out.append(node.args[1].value)
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cell_installs_aevb_on_colab_only(path: Path):
    tree = _python_of(_first_code_cell(path))
    guards = [n for n in tree.body if isinstance(n, ast.If) and _is_colab_guard(n.test)]
    assert len(guards) == 1, (
        f'{path.name}: the first code cell needs `if "google.colab" in sys.modules:`'
    )
    guard = guards[0]
    assert any(
        isinstance(n, ast.Import) and any(a.name == "sys" for a in n.names) for n in tree.body
    ), f"{path.name}: the first code cell must `import sys`"
    inside = ast.Module(body=guard.body, type_ignores=[])
    installs = _magic_calls(inside, "pip")
    expected = f'install -q "aevb @ git+{REPO_URL}"'
    assert installs == [expected], (
        f"{path.name}: want `%pip {expected}` under the guard, got {installs}"
    )
    assert _magic_calls(tree, "pip") == installs, f"{path.name}: %pip outside the Colab guard"
    calls = [ast.unparse(n) for n in ast.walk(inside) if isinstance(n, ast.Call)]
    assert "output.enable_custom_widget_manager()" in calls, (
        f"{path.name}: enable Colab's widget manager under the guard "
        "(from google.colab import output; output.enable_custom_widget_manager())"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean_and_installs_nothing_else(path: Path):
    nb = json.loads(path.read_text())
    assert nb["nbformat"] == 4
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    with_outputs = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
    assert not with_outputs, (
        f"{path.name}: strip outputs before committing (code cells {with_outputs})"
    )
    later = "".join("".join(c["source"]) for c in code[1:])
    assert not re.search(r"^\s*[!%]+\s*(pip|conda|uv)\b", later, flags=re.M), (
        f"{path.name}: only the first cell installs (on Colab)"
    )


# --- the table of contents and the sources -------------------------------------------------


def test_every_toc_entry_has_a_source():
    missing = [
        f
        for f in _toc_files()
        if not any((REPO / f"{f}{ext}").is_file() for ext in (".md", ".ipynb"))
    ]
    assert not missing, f"_toc.yml names pages that do not exist yet: {missing}"


def test_every_page_in_book_is_in_the_toc():
    """only_build_toc_files is on: a page missing from _toc.yml would silently not be built."""
    listed = {Path(f).as_posix() for f in _toc_files()}
    pages = {p.relative_to(REPO).with_suffix("").as_posix() for p in BOOK.glob("*.ipynb")}
    pages |= {p.relative_to(REPO).with_suffix("").as_posix() for p in BOOK.glob("*.md")}
    assert not pages - listed, f"pages not in _toc.yml: {sorted(pages - listed)}"


def _markdown(path: Path) -> str:
    if path.suffix == ".md":
        return path.read_text()
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def test_equation_numbers_never_collide_with_the_papers():
    """Sphinx numbers labelled equations through the whole book, so its (6) sat beside the
    paper's eq. 8. Displayed numbers are written out instead: the paper's own number for one of
    the paper's equations, chapter.n for one of the book's, and no {eq} label is left."""
    pages = sorted(BOOK.glob("*.ipynb")) + sorted(BOOK.glob("*.md"))
    problems = []
    for page in pages:
        text = _markdown(page)
        if re.search(r"\$\$\s*\([\w-]+\)", text) or "{eq}`" in text or "{math}" in text:
            problems.append(f"{page.name}: a labelled equation (numbered by Sphinx)")
        numbered = r"\\begin\{(equation|align|gather|multline|flalign|alignat)\}"
        if re.search(numbered, text):  # MyST's amsmath: Sphinx numbers the unstarred ones
            problems.append(f"{page.name}: a numbered amsmath environment (use the starred one)")
        chapter = re.match(r"(\d\d)_", page.name)
        tags = re.findall(r"\\tag\{([^}]*)\}", text)
        for tag in tags:
            own = re.fullmatch(r"(\d+)\.(\d+)", tag)
            paper = re.fullmatch(r"\d+(, \d+)*", tag)
            if own and not (chapter and int(own.group(1)) == int(chapter.group(1))):
                problems.append(f"{page.name}: tag ({tag}) is not this chapter's")
            elif not own and not (paper and all(1 <= int(n) <= 24 for n in tag.split(", "))):
                problems.append(f"{page.name}: tag ({tag}) is neither the paper's nor chapter.n")
        own_tags = [t for t in tags if "." in t]
        if len(set(own_tags)) != len(own_tags):
            problems.append(f"{page.name}: a tag used twice: {own_tags}")
    assert not problems, problems


def test_no_image_is_committed_in_book():
    """Figures are drawn by the build (the landing figure too), not committed."""
    images = [
        p.relative_to(REPO).as_posix()
        for ext in ("png", "jpg", "jpeg", "gif", "svg")
        for p in BOOK.rglob(f"*.{ext}")
        if ".ipynb_checkpoints" not in p.parts
    ]
    assert not images, images


def test_landing_page_is_an_executed_page_with_a_figure():
    text = (BOOK / "intro.md").read_text()
    front = yaml.safe_load(text.split("---", 2)[1])
    assert front["file_format"] == "mystnb" and front["kernelspec"]["name"] == "python3"
    assert "```{code-cell}" in text and "plt.show()" in text, "the landing figure is drawn"
    assert re.search(r"zoo\.mnist_(latent_)?vae\(", text), "a model the book trains (cached)"
    assert "{cite}`kingma2014auto`" in text and "@inproceedings{kingma2014auto" in text
    for n in range(1, 12):  # a paragraph (and a link) per chapter
        assert re.search(rf"(\(|`){n:02d}_\w+(\.ipynb\)|`)", text), f"no link to chapter {n}"


# --- offline HTML ---------------------------------------------------------------------------


def test_html_is_built_for_offline_reading():
    sphinx = CONFIG["sphinx"]
    assert "sphinx-mathjax-offline" in sphinx["extra_extensions"], (
        "MathJax must come from the build"
    )
    cfg = sphinx["config"]
    assert cfg["nb_ipywidgets_js"] == {}, "no require.js / widget manager from a CDN"
    assert "mathjax_path" not in cfg or not str(cfg["mathjax_path"]).startswith("http")
    assert cfg["html_context"]["default_mode"] in ("light", "dark", "auto")
    for name, folder in sphinx.get("local_extensions", {}).items():
        assert (REPO / folder / f"{name}.py").is_file(), f"local extension {name} not in {folder}"
    for key in ("hypothesis", "utterances"):
        assert not CONFIG["html"].get("comments", {}).get(key), f"{key} loads from another host"
    analytics = CONFIG["html"].get("analytics", {})
    assert not analytics.get("google_analytics_id") and not analytics.get(
        "plausible_analytics_domain"
    )


def test_book_build_is_strict():
    makefile = (REPO / "Makefile").read_text()
    builds = re.findall(r"jupyter-book build [^\n]*", makefile)
    assert builds, "no jupyter-book build in the Makefile"
    for line in builds:
        assert " -W" in line and " -n" in line and "--keep-going" in line, line
    assert "AEVB_WIDGETS=static" in makefile


# --- Binder's environment.yml agrees with pyproject.toml -----------------------------------


def _env_pip() -> list[str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml needs one pip: section"
    return pip[0]


def test_environment_installs_the_package_with_existing_extras():
    extras = set(_pyproject()["project"]["optional-dependencies"])
    local = [e for e in _env_pip() if re.match(r"(-e\s+)?\.(\[|$)", e)]
    assert len(local) == 1, "environment.yml must pip-install the repository itself (-e .[...])"
    wanted = set(re.findall(r"\[([^\]]*)\]", local[0])[0].replace(" ", "").split(","))
    assert wanted <= extras, f"extras {wanted - extras} are not in pyproject.toml"
    assert {"book"} <= wanted, "Binder needs the book extra (jupyterlab, ipywidgets)"


def test_environment_python_and_torch_match_pyproject_and_makefile():
    from packaging.specifiers import SpecifierSet

    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pythons = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert len(pythons) == 1
    version = re.search(r"(\d+\.\d+)", pythons[0]).group(1)
    assert SpecifierSet(_pyproject()["project"]["requires-python"]).contains(version + ".0")
    pin = re.search(r"^TORCH_PIN \?= (\S+)", (REPO / "Makefile").read_text(), flags=re.M).group(1)
    assert pin in _env_pip(), f"environment.yml should pin {pin} like the Makefile"
    torch_req = [d for d in _pyproject()["project"]["dependencies"] if d.startswith("torch")]
    assert torch_req, "pyproject.toml should depend on torch"
    from packaging.requirements import Requirement

    assert Requirement(torch_req[0]).specifier.contains(pin.split("==")[1])


# --- the API reference covers the package --------------------------------------------------


def _documented_modules() -> set[str]:
    return set(re.findall(r"\.\. automodule:: ([\w.]+)", (BOOK / "api.md").read_text()))


def test_api_reference_covers_every_public_module():
    import aevb

    public = {
        m.name
        for m in pkgutil.walk_packages(aevb.__path__, "aevb.")
        if not any(part.startswith("_") for part in m.name.split("."))
    }
    missing = public - _documented_modules()
    assert not missing, f"book/api.md has no automodule for {sorted(missing)}"


def test_api_reference_covers_every_top_level_name():
    import aevb

    documented = _documented_modules()
    missing = []
    for name in aevb.__all__:
        obj = getattr(aevb, name)
        module = obj.__name__ if isinstance(obj, type(aevb)) else getattr(obj, "__module__", "")
        if module not in documented:
            missing.append(f"{name} ({module})")
    assert not missing, f"top-level names whose module book/api.md does not document: {missing}"
    for module in documented:
        importlib.import_module(module)


def _rst_problems(text: str) -> list[str]:
    """docutils' warnings for a docstring after napoleon, as the API page would see them
    (Sphinx's roles such as :func: are stood in for by plain literals)."""
    import io

    import docutils.core
    from docutils import nodes
    from docutils.parsers.rst import Directive, directives, roles
    from sphinx.ext.napoleon import Config
    from sphinx.ext.napoleon.docstring import GoogleDocstring

    def literal_role(name, rawtext, text, lineno, inliner, options=None, content=None):
        return [nodes.literal(rawtext, text)], []

    class SphinxDirective(Directive):  # .. attribute:: and friends: check their content
        has_content = True
        optional_arguments = 10
        final_argument_whitespace = True
        option_spec = collections.defaultdict(lambda: directives.unchanged)

        def run(self):
            node = nodes.container()
            self.state.nested_parse(self.content, self.content_offset, node)
            return [node]

    for role in ("func", "class", "mod", "meth", "attr", "data", "obj", "exc", "cite", "doc"):
        roles.register_local_role(role, literal_role)
    for name in ("attribute", "method", "function", "data", "seealso", "versionadded"):
        directives.register_directive(name, SphinxDirective)
    config = Config(napoleon_use_rtype=False, napoleon_numpy_docstring=False)
    rst = "\n".join(GoogleDocstring(text, config).lines())
    stream = io.StringIO()
    docutils.core.publish_doctree(
        rst, settings_overrides={"warning_stream": stream, "report_level": 2, "halt_level": 5}
    )
    return [line for line in stream.getvalue().splitlines() if re.match(r"<string>:\d+", line)]


def _docstrings():
    import inspect

    import aevb

    modules = [aevb] + [
        importlib.import_module(m.name)
        for m in pkgutil.walk_packages(aevb.__path__, "aevb.")
        if not any(part.startswith("_") for part in m.name.split("."))
    ]
    for module in modules:
        yield module.__name__, module.__doc__
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            yield f"{module.__name__}.{name}", getattr(obj, "__doc__", None)
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    member = getattr(member, "__func__", member)
                    if callable(member) or isinstance(member, property):
                        yield f"{module.__name__}.{name}.{attr}", member.__doc__


def test_docstrings_are_valid_rst_for_the_api_page():
    """book/api.md renders every docstring with -W: a docstring that is not valid
    reStructuredText (after napoleon's Args:/Returns: sections) fails the book build. This
    finds it in seconds. Typical fixes: end the line before an indented formula block with
    ``::``; put ``|x|`` or ``*args`` in double backticks."""
    import inspect

    problems = []
    for name, doc in _docstrings():
        if doc:
            problems += [f"{name}: {p}" for p in _rst_problems(inspect.cleandoc(doc))]
    assert not problems, "\n".join(problems)


def _make_dry_run(*args: str) -> str:
    """What ``make -n ARGS`` would run, continued lines joined."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")
    out = subprocess.run(
        ["make", "-n", *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout.replace("\\\n", " ")  # one line per command


def test_a_book_built_under_a_draw_salt_is_another_profile_for_the_execution_cache():
    """The execution cache keys a chapter by its code: a build with AEVB_DRAW_SALT must not be
    served the published build's outputs (and the other way round)."""
    published = _make_dry_run("book", "AEVB_PROFILE=book", "AEVB_DRAW_SALT=")
    salted = _make_dry_run("book", "AEVB_PROFILE=book", "AEVB_DRAW_SALT=2")
    assert '!= "book" ]' in published and "> _build/.aevb-profile" in published
    assert '!= "book salt 2" ]' in salted
    assert '!= "book" ]' in _make_dry_run("book", "AEVB_PROFILE=book", "AEVB_DRAW_SALT=0")


def test_check_draws_runs_every_chapter_on_other_draws_with_its_own_model_cache():
    line = next(
        ln for ln in _make_dry_run("check-draws", "DRAW_SALT=3").splitlines() if "pytest" in ln
    )
    assert "AEVB_DRAW_SALT=3" in line and "AEVB_PROFILE=book" in line
    assert "_build/salt-3/cache" in line and "--nbval-lax" in line and line.endswith("book")
