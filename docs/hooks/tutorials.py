"""MkDocs hook: execute the tutorials and show them with their output and figures.

A tutorial is a plain Python script in `docs/tutorials/` in jupytext's "percent"
format: `# %% [markdown]` starts a markdown cell (its lines are comments, `# `
stripped), `# %%` starts a code cell. Its page, `docs/tutorials/<name>.md`, holds
one marker line, `<!-- tutorial: <name>.py -->`, which this hook replaces at build
time by the executed tutorial: each markdown cell as it is, each code cell as a
code block, followed by what it printed and by the matplotlib figures still open
when it ends (drawn as PNG, inline, then closed).

Why a hook and not mkdocs-jupyter or mkdocs-gallery: the tutorials are scripts that
the test suite runs (`tests/test_docs.py` calls [`execute`][] below), so the site
shows exactly what is tested, with one executor; the cells run in this process (no
Jupyter kernel, nbconvert or notebook files to keep), so the JAX compilation caches
are shared between tutorials and the build stays short; and a failing cell fails the
build with the tutorial's own file name and line numbers.

Cells run in one namespace, like `python docs/tutorials/<name>.py`, in a fresh
temporary working directory (files a tutorial writes are discarded), with the
matplotlib backend "Agg".
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import io
import logging
import os
import pathlib
import re
import sys
import tempfile
import time
import warnings


MARKER = re.compile(r"<!--\s*tutorial:\s*([\w.-]+\.py)\s*-->")
CELL = re.compile(r"^# %%(?P<markdown> \[markdown\])?\s*$")
#: resolution of the figures drawn into the pages
DPI = 110

log = logging.getLogger("mkdocs.hooks.tutorials")


@dataclasses.dataclass
class Cell:
    """One cell of a tutorial: its kind ("markdown" or "code"), its source, the line
    of the script it starts on (1-based, after its `# %%` line), and once executed,
    what it printed and the PNG files of the figures it left open."""

    kind: str
    source: str
    line: int
    output: str = ""
    figures: list[bytes] = dataclasses.field(default_factory=list)


def parse(text: str) -> list[Cell]:
    """Split a percent-format script into cells; lines before the first `# %%` form a
    code cell. Blank cells are dropped; a cell's `line` is that of its first non-blank
    line."""
    groups: list[tuple[str, int, list[str]]] = [("code", 1, [])]
    for number, line in enumerate(text.splitlines(), start=1):
        match = CELL.match(line)
        if match:
            groups.append(("markdown" if match.group("markdown") else "code", number + 1, []))
            continue
        kind = groups[-1][0]
        if kind == "markdown":
            if line.strip() and not line.startswith("#"):
                raise ValueError(f"line {number}: a markdown cell holds only comment lines")
            line = line[2:] if line.startswith("# ") else line[1:]
        groups[-1][2].append(line)
    cells = []
    for kind, start, lines in groups:
        blank = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
        source = "\n".join(lines[blank:]).rstrip()
        if source:
            cells.append(Cell(kind, source, start + blank))
    return cells


def execute(path: str | os.PathLike) -> list[Cell]:
    """Run the tutorial at `path` cell by cell in one namespace (as `__main__`, in a
    temporary working directory) and return its cells with their printed output and
    figures. Warnings are errors. An exception in a cell propagates, with the
    script's line numbers (so `mkdocs build` fails on a tutorial that fails)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = pathlib.Path(path).resolve()
    cells = parse(path.read_text())
    namespace = {"__name__": "__main__", "__file__": str(path)}
    cwd, argv = os.getcwd(), sys.argv
    with tempfile.TemporaryDirectory(prefix="gradflow-tutorial-") as tmp:
        os.chdir(tmp)
        sys.argv = [str(path)]
        plt.close("all")
        try:
            for cell in cells:
                if cell.kind != "code":
                    continue
                code = compile("\n" * (cell.line - 1) + cell.source, str(path), "exec")
                buffer = io.StringIO()
                # warnings are errors, as in the test suite (pyproject's filterwarnings)
                with contextlib.redirect_stdout(buffer), warnings.catch_warnings():
                    warnings.simplefilter("error")
                    exec(code, namespace)
                cell.output = buffer.getvalue()
                for number in plt.get_fignums():
                    png = io.BytesIO()
                    plt.figure(number).savefig(png, format="png", dpi=DPI, bbox_inches="tight")
                    cell.figures.append(png.getvalue())
                plt.close("all")
        finally:
            os.chdir(cwd)
            sys.argv = argv
            plt.close("all")
    return cells


def render(cells: list[Cell], name: str) -> str:
    """The page's markdown: markdown cells as they are, code cells as Python blocks,
    their output as text blocks and their figures as inline PNG images."""
    parts = []
    for index, cell in enumerate(cells):
        if cell.kind == "markdown":
            parts.append(cell.source)
            if index == 0:
                parts.append(
                    f"*This page is the script [`docs/tutorials/{name}`]({name}), executed "
                    f"when the site was built; run it yourself with "
                    f"`python docs/tutorials/{name}`.*"
                )
            continue
        parts.append(f"```python\n{cell.source}\n```")
        if cell.output.strip():
            parts.append(f'```text title="Output"\n{cell.output.rstrip()}\n```')
        for number, png in enumerate(cell.figures, start=1):
            data = base64.b64encode(png).decode("ascii")
            parts.append(f"![{name}: figure {number} of this cell](data:image/png;base64,{data})")
    return "\n\n".join(parts) + "\n"


_cache: dict[str, str] = {}


def on_page_markdown(markdown, page, config, files, **kwargs):  # noqa: ARG001
    """MkDocs event: replace a `<!-- tutorial: name.py -->` marker by the executed
    tutorial (cached by the script's content for `mkdocs serve`)."""
    match = MARKER.search(markdown)
    if match is None:
        return markdown
    name = match.group(1)
    path = pathlib.Path(page.file.abs_src_path).parent / name
    if not path.is_file():
        raise FileNotFoundError(f"{page.file.src_uri}: the tutorial {name} does not exist")
    key = hashlib.sha256(path.read_bytes()).hexdigest()
    if key not in _cache:
        start = time.perf_counter()
        _cache[key] = render(execute(path), name)
        log.info("executed tutorial %s in %.1f s", name, time.perf_counter() - start)
    return markdown[: match.start()] + _cache[key] + markdown[match.end() :]
