"""Generated blocks in docs/ pages, between `<!-- NAME:start -->` and `<!-- NAME:end -->` markers."""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def generated_block(page: str, name: str) -> str:
    """The text between the page's markers for name; each marker must appear exactly once."""
    text = (DOCS / page).read_text()
    start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
    assert text.count(start) == 1 and text.count(end) == 1, f"{page} needs one {start!r} and one {end!r}"
    return text[text.index(start) + len(start) : text.index(end)]


def write_generated_block(page: str, name: str, content: str) -> None:
    path = DOCS / page
    text = path.read_text()
    start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
    path.write_text(text[: text.index(start) + len(start)] + content + text[text.index(end) :])
