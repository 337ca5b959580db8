"""Generated blocks in Markdown files, between `<!-- NAME:start -->` and `<!-- NAME:end -->`."""

from __future__ import annotations


def markers(name: str) -> tuple[str, str]:
    """The comments that open and close the block `name`."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def with_block(text: str, name: str, body: str) -> str:
    """`text` with the block `name` replaced by `body`."""
    start, end = markers(name)
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"
