"""Sphinx configuration of the knotsafe documentation site.

Build with ``nox -s docs`` (warnings are errors) or, with the ``docs`` extra
installed, ``sphinx-build -W -E -b html docs build/docs``.

Pages are the Markdown files in ``docs/`` (MyST).  The navigation is built
from the files present: :data:`SECTIONS` orders the known pages, pages it
does not name go to a last "More" section, and named pages that do not exist
are left out, so a page can be added (or not yet merged) without editing
this file.  The API reference is generated from the numpydoc docstrings of
``knotsafe`` and of every public submodule found in the package.
"""

from __future__ import annotations

import pkgutil
import re
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
SOURCE_URL = "https://github.com/knotsafe/knotsafe"
BLOB_URL = f"{SOURCE_URL}/blob/main"

# Document the source tree being built, installed or not.
sys.path.insert(0, str(ROOT / "src"))
import knotsafe  # noqa: E402

project = "knotsafe"
author = "knotsafe developers"
copyright = "2026, knotsafe developers"
release = knotsafe.__version__
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc", "numpydoc"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]
# The generated pages (conformance, benchmarks, rectangular) start at "##":
# they are also spliced into other Markdown, where "#" is taken.
suppress_warnings = ["myst.header"]

myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

html_theme = "pydata_sphinx_theme"
html_title = f"knotsafe {release}"
html_theme_options = {
    "github_url": SOURCE_URL,
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
}
html_sidebars: dict[str, list[str]] = {"index": []}
html_show_sourcelink = False

# Navigation: known pages in reading order; files that are absent are skipped.
SECTIONS: list[tuple[str, list[str]]] = [
    (
        "User guide",
        [
            "install",
            "gradient-contract",
            "gradient-contract-second-order",
            "edge-inputs",
            "complex-and-period",
            "backends",
            "rectangular",
            "kernel-transform",
            "autolens",
            "scaling",
            "examples",
        ],
    ),
    ("Reference", ["api", "conformance", "benchmarks"]),
    ("Development", ["contributing", "architecture", "mutation", "changelog"]),
]
TOC_MARKER = "<!-- toc -->"
API_MARKER = "<!-- api -->"


def _pages() -> list[str]:
    return sorted(p.relative_to(DOCS).with_suffix("").as_posix() for p in DOCS.rglob("*.md") if "_build" not in p.parts)


def navigation() -> str:
    """Hidden toctrees (the site navigation) for the pages that exist."""
    present = set(_pages()) - {root_doc}
    named = {page for _, pages in SECTIONS for page in pages}
    sections = [(caption, [p for p in pages if p in present]) for caption, pages in SECTIONS]
    sections.append(("More", sorted(present - named)))
    blocks = []
    for caption, pages in sections:
        if pages:
            body = "\n".join(pages)
            blocks.append(f"```{{toctree}}\n:hidden:\n:maxdepth: 2\n:caption: {caption}\n\n{body}\n```\n")
    return "\n".join(blocks)


def public_modules() -> list[str]:
    """``knotsafe`` submodules whose names do not start with an underscore."""
    found = pkgutil.walk_packages(knotsafe.__path__, prefix="knotsafe.")
    return sorted(m.name for m in found if not any(part.startswith("_") for part in m.name.split(".")))


def api_reference() -> str:
    """autodoc directives: the package, what it exports, then every public module."""
    parts = ["## `knotsafe`\n", "```{eval-rst}", ".. automodule:: knotsafe", "   :no-members:", "```\n"]
    parts.append("The package exports:\n")
    for name in knotsafe.__all__:
        obj = getattr(knotsafe, name)
        if isinstance(obj, type(sys)):
            parts.append(f"- {{py:mod}}`knotsafe.{name} <{obj.__name__}>`")
        else:
            # Documented once, in its module; the top-level name links there.
            parts.append(f"- {{py:obj}}`knotsafe.{name} <{obj.__module__}.{obj.__qualname__}>`")
    parts.append("")
    for module in public_modules():
        parts += [f"## `{module}`\n", "```{eval-rst}", f".. automodule:: {module}", "```\n"]
    return "\n".join(parts)


# Links from a page to a repository file outside docs/ (``../src/...``,
# ``../noxfile.py``) point at the file on the source host instead.
_OUTSIDE_LINK = re.compile(r"\]\(\.\./(?!docs/)([^)\s#]+)(#[^)\s]*)?\)")


def _to_source_host(match: re.Match[str]) -> str:
    return f"]({BLOB_URL}/{match.group(1)}{match.group(2) or ''})"


def _source_read(app: Any, docname: str, source: list[str]) -> None:
    text = _OUTSIDE_LINK.sub(_to_source_host, source[0])
    if TOC_MARKER in text:
        text = text.replace(TOC_MARKER, navigation())
    if API_MARKER in text:
        text = text.replace(API_MARKER, api_reference())
    source[0] = text


def _include_read(app: Any, relative_path: Path, parent_docname: str, content: list[str]) -> None:
    # The README (included by index.md) links to repository files relative to the root:
    # the changelog has a page here, other files are shown on the source host.
    if relative_path.name == "README.md":
        content[0] = content[0].replace("](CHANGELOG.md)", "](docs/changelog.md)")
        content[0] = re.sub(
            r"\]\((?!https?:|#|docs/)([^)\s#]+)(#[^)\s]*)?\)",
            lambda m: f"]({BLOB_URL}/{m.group(1)}{m.group(2) or ''})",
            content[0],
        )


def setup(app: Any) -> dict[str, Any]:
    app.connect("source-read", _source_read)
    app.connect("include-read", _include_read)
    return {"parallel_read_safe": True}
