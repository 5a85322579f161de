"""Copy the generated sections (docs/*.md) into README.md between their markers.

Run after ``nox -s conformance`` or ``nox -s bench`` regenerate a section::

    python docs/update_readme.py
"""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent
README = DOCS.parent / "README.md"
SECTIONS = ("rectangular", "conformance", "benchmarks")


def section(name: str) -> str:
    text = (DOCS / f"{name}.md").read_text().strip()
    # Images are referenced relative to docs/; the README sits one level up.
    return re.sub(r"\]\((?!https?:|docs/)([^)]+\.png)\)", r"](docs/\1)", text)


def main() -> None:
    readme = README.read_text()
    for name in SECTIONS:
        begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
        block = f"{begin}\n{section(name)}\n{end}"
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), flags=re.S)
        match = pattern.search(readme)
        if match:
            readme = readme[: match.start()] + block + readme[match.end() :]
        else:
            readme = readme.replace(f"<!-- {name} -->", block)
    README.write_text(readme)


if __name__ == "__main__":
    main()
