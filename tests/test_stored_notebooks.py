"""What a newcomer opens: stored notebooks render untrusted, carry no machine paths, link validly.

Static checks on the committed ``.ipynb`` files of ``notebooks/``, ``solutions/`` and
``exercises/`` (no kernel, milliseconds):

- no stored output contains ``<script>`` (JupyterLab, VS Code and GitHub do not run it
  in an untrusted notebook, so such an output shows nothing); the players' headless
  fallback is a PNG strip and a GIF ``<img>`` instead;
- the papermill metadata carries no absolute path of the machine that built it;
- every relative ``*.ipynb`` link in a lesson source points to a file that exists.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STORED = sorted(p for d in ("notebooks", "solutions", "exercises")
                for p in (ROOT / d).glob("[0-9][0-9]_*.ipynb"))
SOURCES = sorted((ROOT / "notebooks" / "src").glob("[0-9][0-9]_*.py"))
# absolute paths of a POSIX or Windows machine: /home/..., /work/..., /tmp/..., C:\...
ABSOLUTE = re.compile(r"(?<![\w.:/])(/(?:home|work|tmp|root|Users|var|opt|mnt)/|[A-Za-z]:\\\\)")


def _outputs(path: Path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            yield i, out


@pytest.mark.parametrize("path", STORED, ids=[f"{p.parent.name}/{p.stem}" for p in STORED])
def test_no_script_in_stored_outputs(path):
    bad = []
    for i, out in _outputs(path):
        for mime, data in out.get("data", {}).items():
            text = data if isinstance(data, str) else "".join(data)
            if mime == "application/javascript" or "<script" in text.lower():
                bad.append((i, mime))
    assert not bad, (f"{path.relative_to(ROOT)}: cells {bad} store <script>/JavaScript output, "
                     "which an untrusted notebook does not show; rebuild the notebook")


def test_the_absolute_path_pattern_can_fail():
    assert ABSOLUTE.search('"input_path": "/work/main/notebooks/x.ipynb"')
    assert ABSOLUTE.search(r'"cwd": "C:\\Users\\me"')
    assert not ABSOLUTE.search('"version": "2.7.0", "see": "https://x.org/tmp/y"')


@pytest.mark.parametrize("path", STORED, ids=[f"{p.parent.name}/{p.stem}" for p in STORED])
def test_stored_metadata_has_no_absolute_machine_paths(path):
    meta = json.dumps(json.loads(path.read_text())["metadata"])
    found = ABSOLUTE.findall(meta)
    assert not found, f"{path.relative_to(ROOT)}: metadata stores machine paths {found}"


LINK = re.compile(r"\]\(((?!https?:)[^)#\s]+\.ipynb)(#[^)]*)?\)")


def test_the_link_pattern_finds_relative_notebook_links():
    text = "see [lesson 3](03_x.ipynb#tweedie), [ex](../exercises/01_y.ipynb), [w](https://a/b.ipynb)"
    assert [m.group(1) for m in LINK.finditer(text)] == ["03_x.ipynb", "../exercises/01_y.ipynb"]


@pytest.mark.parametrize("src", SOURCES, ids=[p.stem for p in SOURCES])
def test_relative_notebook_links_point_to_existing_files(src):
    links = [m.group(1) for m in LINK.finditer(src.read_text())]
    # the source builds into notebooks/NN_topic.ipynb: links resolve from notebooks/
    missing = [ln for ln in links if not (ROOT / "notebooks" / ln).resolve().is_file()]
    assert not missing, f"{src.name} links to notebooks that do not exist: {missing}"


@pytest.mark.parametrize("path", STORED, ids=[f"{p.parent.name}/{p.stem}" for p in STORED])
def test_stored_notebooks_open_unmodified(path):
    """Valid nbformat 4.5 that a frontend need not normalise (cell ids present, no fixes)."""
    import nbformat
    from nbformat.validator import normalize

    raw = json.loads(path.read_text())
    changes, _ = normalize(raw)
    assert changes == 0, f"{path.relative_to(ROOT)}: a frontend would modify it on opening"
    nbformat.validate(nbformat.reads(path.read_text(), as_version=4))
    assert raw["metadata"]["kernelspec"]["display_name"] == "Python 3 (ipykernel)"
