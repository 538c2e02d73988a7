"""The API reference covers the public API, and only it.

Each page of docs/api/ documents objects with mkdocstrings directives,
``::: keras_legw.<name>``, at the package path, so that every entry's
anchor is ``keras_legw.<name>``. Every name in `keras_legw.__all__` has
exactly one such directive, and no directive names anything else: a new
public name without a page, or a page for a name that is no longer public,
fails here rather than on the site.
"""

import collections
import glob
import os
import re

import keras_legw

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
API_PAGES = sorted(glob.glob(os.path.join(ROOT, "docs", "api", "*.md")))
DIRECTIVE = re.compile(r"^:::[ \t]+(\S+)[ \t]*$", re.M)


def directives(pages=API_PAGES):
    """{documented object: [the pages that document it]}."""
    found = collections.defaultdict(list)
    for page in pages:
        with open(page) as f:
            for target in DIRECTIVE.findall(f.read()):
                found[target].append(os.path.relpath(page, ROOT))
    return found


def test_the_api_pages_exist():
    names = {os.path.basename(page) for page in API_PAGES}
    assert "index.md" in names and len(names) > 1, API_PAGES


def test_every_public_name_has_one_directive():
    found = directives()
    missing = [name for name in keras_legw.__all__
               if f"keras_legw.{name}" not in found]
    assert not missing, (
        f"public names with no `::: keras_legw.<name>` on docs/api/*.md: "
        f"{missing}")
    repeated = {target: pages for target, pages in found.items()
                if len(pages) > 1}
    assert not repeated, f"documented more than once: {repeated}"


def test_no_directive_names_anything_outside_all():
    public = {f"keras_legw.{name}" for name in keras_legw.__all__}
    outside = {target: pages for target, pages in directives().items()
               if target not in public}
    assert not outside, (
        "directives for objects outside keras_legw.__all__ (document them "
        f"at the package path, keras_legw.<name>): {outside}")


def cli_usage():
    """The text of `python -m keras_legw --help`, `plan --help` and
    `profile --help` at 80 columns, as docs/api/planner.md quotes it."""
    from keras_legw import cli
    parser = cli._build_parser()
    commands = parser._subparsers._group_actions[0].choices
    texts = [("python -m keras_legw --help", parser.format_help())]
    texts += [(f"python -m keras_legw {name} --help",
               commands[name].format_help()) for name in ("plan", "profile")]
    return "".join(f"$ {command}\n{text}\n" for command, text in texts)


USAGE = re.compile(r"### Usage\n\n```text\n(.*?)```", re.S)


def test_the_cli_usage_on_the_api_page_is_the_clis(monkeypatch):
    """The usage quoted on the planner's API page is what the CLI prints
    (regenerate it with `python tests/docs/test_api_pages.py`)."""
    monkeypatch.setenv("COLUMNS", "80")
    page = open(os.path.join(ROOT, "docs", "api", "planner.md")).read()
    assert USAGE.search(page).group(1) == cli_usage()


if __name__ == "__main__":
    os.environ["COLUMNS"] = "80"
    path = os.path.join(ROOT, "docs", "api", "planner.md")
    page = open(path).read()
    start, end = USAGE.search(page).span(1)
    with open(path, "w") as f:
        f.write(page[:start] + cli_usage() + page[end:])
