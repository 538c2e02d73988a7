"""Look at the built site as a reader would: headless Chromium screenshots
of the front page, a guide, an API page and a results page, and four
checks on the pages themselves.

    make docs
    python .ci/docs_screenshots.py --site=site --out=docs/screenshots \\
        [--mathjax=/path/to/mathjax/es5]

Checks (each failure is printed and makes the exit status 1):
- navigation: every page of the site is reached from the front page by
  following links (breadth first over the built HTML);
- plots: every <img> on every page points to a file of the site;
- private names: no page names a private object of the library (a base
  class such as ``keras_legw.autowarmup._Decision`` in a "Bases:" line);
- formulas: on every page with math (``arithmatex`` elements), after the
  page's scripts ran, MathJax has typeset each of them (``mjx-container``
  elements in the DOM Chromium dumps).

MathJax comes from a CDN on the published site. Where the machine has no
network, `--mathjax` points at a local copy of MathJax 3's ``es5`` folder
(``npm pack mathjax@3``), which replaces the CDN address in a copy of the
site: the pages are otherwise the ones built. Needs Debian's ``chromium``.
"""

import argparse
import functools
import html.parser
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse

CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
SHOTS = {"front-page": "", "guide-growing-batch": "guides/growing-batch/",
         "api-schedules": "api/schedules/",
         "results-growing-batch": "results/growing-batch/"}


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.images = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])


def pages(site):
    """Every page of the site, as its folder path ('' for the front)."""
    found = set()
    for root, _, files in os.walk(site):
        if "index.html" in files and "404" not in root:
            rel = os.path.relpath(root, site)
            found.add("" if rel == "." else rel + "/")
    return found


def parse(site, page):
    parser = _Links()
    with open(os.path.join(site, page, "index.html")) as f:
        parser.feed(f.read())
    return parser


def resolve(page, link):
    """A link of `page` as a site path, or None outside the site."""
    parts = urllib.parse.urlsplit(link)
    if parts.scheme or parts.netloc or not parts.path:
        return None
    return os.path.normpath(os.path.join(page, parts.path)).lstrip("./")


def unreached(site):
    """The pages no chain of links from the front page reaches."""
    everything, seen, queue = pages(site), {""}, [""]
    while queue:
        page = queue.pop(0)
        for href in parse(site, page).hrefs:
            target = resolve(page, href)
            if target is None:
                continue
            target = "" if target in (".", "") else target.rstrip("/") + "/"
            if target in everything and target not in seen:
                seen.add(target)
                queue.append(target)
    return sorted(everything - seen)


def missing_images(site):
    bad = []
    for page in sorted(pages(site)):
        for src in parse(site, page).images:
            target = resolve(page, src)
            if target and not os.path.isfile(os.path.join(site, target)):
                bad.append(f"{page or '/'}: {src}")
    return bad


def private_names(site):
    """'page: name' for each private keras_legw object a page names (the
    titles mkdocstrings gives cross-references)."""
    bad = []
    for page in sorted(pages(site)):
        with open(os.path.join(site, page, "index.html")) as f:
            names = set(re.findall(r'title="(keras_legw\.[\w.]*\._\w*)"',
                                   f.read()))
        bad += [f"{page or '/'}: {name}" for name in sorted(names)]
    return bad


def formula_pages(site):
    """{page: its formulas} for the pages with math."""
    found = {}
    for page in sorted(pages(site)):
        with open(os.path.join(site, page, "index.html")) as f:
            count = len(re.findall(r'class="arithmatex"', f.read()))
        if count:
            found[page] = count
    return found


def local_copy(site, mathjax):
    """A copy of the site whose pages load MathJax from `mathjax`."""
    copy = tempfile.mkdtemp(prefix="site-")
    shutil.copytree(site, copy, dirs_exist_ok=True)
    if mathjax:
        shutil.copytree(mathjax, os.path.join(copy, "_mathjax"))
        for root, _, files in os.walk(copy):
            for name in (f for f in files if f.endswith(".html")):
                path = os.path.join(root, name)
                with open(path) as f:
                    text = f.read()
                with open(path, "w") as f:
                    f.write(text.replace(CDN, "/_mathjax/tex-mml-chtml.js"))
    return copy


def serve(folder):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/"


def chromium(*args):
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
               "--hide-scrollbars", "--virtual-time-budget=8000", *args]
    return subprocess.run(command, capture_output=True, text=True,
                          timeout=120).stdout


def typeset(url):
    """How many formulas MathJax typeset on the page at `url`."""
    return len(re.findall(r"<mjx-container", chromium("--dump-dom", url)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--site", default="site")
    parser.add_argument("--out", default="docs/screenshots")
    parser.add_argument("--mathjax", default=None)
    args = parser.parse_args()
    failures = [f"not reached from the front page: {p}"
                for p in unreached(args.site)]
    failures += [f"image missing: {m}" for m in missing_images(args.site)]
    failures += [f"private name shown: {n}" for n in private_names(args.site)]
    server, base = serve(local_copy(args.site, args.mathjax))
    os.makedirs(args.out, exist_ok=True)
    for name, page in SHOTS.items():
        path = os.path.abspath(os.path.join(args.out, name + ".png"))
        chromium(f"--screenshot={path}", "--window-size=1280,1400",
                 base + page)
        print(f"{name}: {path}")
    for page, formulas in formula_pages(args.site).items():
        count = typeset(base + page)
        print(f"/{page}: {count} of {formulas} formulas typeset")
        if count < formulas:
            failures.append(f"/{page}: {count} of {formulas} formulas typeset")
    server.shutdown()
    print(f"{len(pages(args.site))} pages, all reached from the front page"
          if not any("reached" in f for f in failures) else "")
    for failure in failures:
        print("FAIL", failure)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
