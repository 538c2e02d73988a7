"""Every Python code block of the README and the site's pages runs.

A page is a script: its ```python blocks run in order in one namespace, in a
fresh temporary folder, so a later block may use what an earlier one made.
Two markers, an HTML comment on the line before a block (invisible on the
site and on GitHub), change that:

    <!-- docs-test: skip REASON -->
        the block does not run; REASON says why (a GPU, a TPU, hours of
        training). Nothing else is a reason.
    <!-- docs-test: small OLD => NEW -->
        the block runs with the text OLD replaced by NEW (e.g. ``epochs=25
        => epochs=1``): the real run on small data. OLD must occur in the
        block. Several may stack, one per line.

Shell blocks (```bash, ```sh, ```console) are not run; the commands they hold
are the zoo's and the benches', which their own tests run on small data.
"""

import dataclasses
import glob
import os
import re

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
# The pages whose Python runs: the front page, and the site but for the
# generated API pages (their code is the docstrings') and the studies' pages
# (which quote commands, not Python).
PAGES = sorted(
    ["README.md", "docs/index.md", "docs/getting-started.md"]
    + [os.path.relpath(p, ROOT) for p in
       glob.glob(os.path.join(ROOT, "docs", "guides", "*.md"))])
FENCE = re.compile(r"^(`{3,})(\w*)[^\n]*\n(.*?)^\1\s*$", re.M | re.S)
MARKER = re.compile(r"<!--\s*docs-test:\s*(skip|small)\s*(.*?)\s*-->")


@dataclasses.dataclass
class Block:
    page: str
    line: int
    language: str
    code: str
    skip: str = None       # the reason, for a skipped block
    replacements: tuple = ()


def blocks_of(page, text):
    """The fenced blocks of `text`, with the markers just above each."""
    blocks = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        above = text[:match.start()].rstrip("\n").split("\n")
        skip, replacements = None, []
        while above and MARKER.fullmatch(above[-1].strip()):
            kind, rest = MARKER.fullmatch(above.pop().strip()).groups()
            if kind == "skip":
                if not rest:
                    raise ValueError(f"{page}:{line}: a skip marker needs a "
                                     "reason")
                skip = rest
            else:
                old, sep, new = rest.partition("=>")
                if not sep:
                    raise ValueError(f"{page}:{line}: write 'small OLD => "
                                     f"NEW'. Received: {rest!r}")
                replacements.insert(0, (old.strip(), new.strip()))
        blocks.append(Block(page, line, match.group(2).lower(),
                            match.group(3), skip, tuple(replacements)))
    return blocks


def runnable(block):
    """The code to run: the block with its replacements made."""
    code = block.code
    for old, new in block.replacements:
        if old not in code:
            raise ValueError(f"{block.page}:{block.line}: 'small' marker's "
                             f"{old!r} is not in the block")
        code = code.replace(old, new)
    return code


def python_blocks(page):
    with open(os.path.join(ROOT, page)) as f:
        return [b for b in blocks_of(page, f.read())
                if b.language in ("python", "py")]


@pytest.mark.parametrize("page", PAGES)
def test_the_pages_python_runs(page, tmp_path, monkeypatch):
    blocks = python_blocks(page)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(ROOT)
    namespace = {"__name__": "__docs__"}
    try:
        for block in blocks:
            if block.skip:
                continue
            code = compile(runnable(block), f"{page}:{block.line}", "exec")
            exec(code, namespace)  # noqa: S102 - the page's own example
    finally:
        keras.backend.clear_session()


def test_the_markers():
    text = ("<!-- docs-test: skip needs a TPU -->\n```python\nA\n```\n\n"
            "<!-- docs-test: small epochs=25 => epochs=1 -->\n"
            "<!-- docs-test: small 60000 => 600 -->\n"
            "```python\nfit(epochs=25, n=60000)\n```\n```bash\nls\n```\n")
    first, second, shell = blocks_of("page.md", text)
    assert (first.skip, first.code, first.line) == ("needs a TPU", "A\n", 2)
    assert runnable(second) == "fit(epochs=1, n=600)\n"
    assert shell.language == "bash" and shell.skip is None
    with pytest.raises(ValueError, match="is not in the block"):
        runnable(dataclasses.replace(second, code="fit()\n"))
    with pytest.raises(ValueError, match="needs a reason"):
        blocks_of("page.md", "<!-- docs-test: skip -->\n```python\nA\n```\n")


def test_every_page_with_python_has_a_block_that_runs():
    """A page whose every block is skipped tests nothing: none is."""
    for page in PAGES:
        blocks = python_blocks(page)
        assert not blocks or any(not b.skip for b in blocks), page


def test_the_readme_is_a_short_front_page():
    """The README stays a front page; guides and studies live on the site."""
    assert os.path.getsize(os.path.join(ROOT, "README.md")) <= 10_000
