"""shared.report / shared.reporting: escaping, links, determinism, size, and what is read."""

from __future__ import annotations

import base64
import hashlib
import posixpath
import random
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from bench.report_render import synthetic
from shared import report
from shared.reporting import write_report

REPO = Path(__file__).resolve().parents[2]
EVIL = "\"'><script>alert(1)</script><img src=x onerror=alert(2)></html>&amp;"
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "table", "tr",
                "td", "th", "p", "b", "span", "details", "summary", "pre", "div", "a", "br",
                "svg", "rect", "text", "i", "code"}


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data


def parse(page: bytes) -> Tags:
    tags = Tags()
    tags.feed(page.decode())
    return tags


def evil_inputs() -> dict[str, Any]:
    instance = f"i-{EVIL}"
    summary = {"InvokeId": EVIL, "CommandId": EVIL, "RegionId": EVIL, "Status": EVIL,
               "Counts": {EVIL: 1, "Success": 1}, "StartedAt": EVIL, "FinishedAt": EVIL,
               "RequestId": EVIL, "Source": EVIL,
               "Instances": {instance: {"Status": EVIL, "ExitCode": EVIL},
                             "javascript:alert(3)": {"Status": "Success", "ExitCode": 0}}}
    return {"summary": summary,
            "results": {instance: {"ErrorCode": EVIL, "ErrorInfo": EVIL, "StartTime": EVIL}},
            "tails": {instance: EVIL}, "command": {"Name": EVIL, "Type": EVIL, "Content": EVIL}}


def test_everything_untrusted_is_text_and_every_link_is_relative() -> None:
    data = evil_inputs()
    page = report.render(data["summary"], key="results/x/report.html", results=data["results"],
                         tails=data["tails"], command=data["command"])
    tags = parse(page)
    assert {t for t, _ in tags.tags} <= ALLOWED_TAGS
    for tag, attrs in tags.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert "src" not in attrs
        href = attrs.get("href")
        if href is not None:
            assert ":" not in href.split("/", 1)[0] and not href.startswith("//"), href
    assert page.count(b"<script") == 0 and page.count(b"<img") == 0
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert b"&amp;amp;" in page  # escaped once more, shown as typed
    assert b"href=javascript%3Aalert%283%29/result.json>" in page  # a path, not a scheme


def test_the_csp_allows_exactly_the_page_own_stylesheet() -> None:
    data = synthetic(3)
    page = report.render(data["summary"], key="results/t-bench0000000000000000/report.html",
                         results=data["results"], tails=data["tails"], command=data["command"])
    tags = parse(page)
    csp = next(a["content"] for t, a in tags.tags if t == "meta"
               and a.get("http-equiv") == "Content-Security-Policy")
    digest = base64.b64encode(hashlib.sha256(tags.style.encode()).digest()).decode()
    assert csp == (f"default-src 'none'; style-src 'sha256-{digest}'; base-uri 'none'; "
                   "form-action 'none'")
    assert not any("style" in attrs for _, attrs in tags.tags)  # a hash covers no attribute


def test_same_inputs_same_bytes_whatever_the_order() -> None:
    data = synthetic(40)
    key = "results/t-bench0000000000000000/report.html"
    first = report.render(data["summary"], key=key, results=data["results"],
                          tails=data["tails"], command=data["command"])
    reordered = dict(data["summary"], Instances=dict(reversed(
        list(data["summary"]["Instances"].items()))))
    again = report.render(reordered, key=key, results=dict(reversed(data["results"].items())),
                          tails=data["tails"], command=data["command"])
    assert first == again


def test_links_are_relative_to_where_the_report_is_stored() -> None:
    summary = {"Status": "Failed", "RequestId": "r-1", "InvokeIds": ["t-1"], "Instances": {
        "i-1": {"Status": "Failed", "ExitCode": 4, "Output": "results/t-1/i-1/output.txt",
                "Result": "results/t-1/i-1/result.json"}}}
    page = report.render(summary, key="results/requests/r-1/report.html")
    assert b'href="../../t-1/i-1/output.txt"' in page
    assert b'href="../../t-1/i-1/result.json"' in page


def test_links_elsewhere_are_what_relpath_makes_of_them() -> None:
    """A key outside the report's folder is made relative by its segments when both are plain
    (``..``, ``.`` and empty segments go through ``posixpath.relpath`` itself): the same
    link either way, on awkward and on random keys and folders. A key under the folder is
    the rest of the key, as it always was."""
    segments = ["a", "b", "ab", ".", "..", "", "...", ".x", "x.", "results", "é", "a b", "%2F"]
    rng = random.Random(14)
    cases = [("results/requests/r-1", "results/t-1/i-1/result.json"),
             ("results/requests/r-1", "results/requests/r-1"), ("a/b", "a"), ("a", "a/b/c"),
             ("", "a/b"), ("a/./b", "a/c"), ("a/../b", "c"), ("a//b", "a/c"), ("a/", "a/b/")]
    for _ in range(20_000):
        base = "/".join(rng.choice(segments) for _ in range(rng.randint(0, 4)))
        key = "/".join(rng.choice(segments) for _ in range(rng.randint(1, 5)))
        cases.append((base, key))
    checked = 0
    for base, key in cases:
        if not key:  # (relpath refuses an empty path; no object has an empty key)
            continue
        under = key.startswith(base + "/")  # under the folder: the rest of the key, as it is
        want = key[len(base) + 1:] if under else posixpath.relpath(key, base or ".")
        assert report._Links(base, {})._relative(key) == want, (base, key)
        checked += 1
    assert checked > 15_000


def test_ten_thousand_instances_stay_small_and_quick() -> None:
    data = synthetic(10_000)
    started = time.perf_counter()
    page = report.render(data["summary"], key="results/t-bench0000000000000000/report.html",
                         results=data["results"], tails=data["tails"], command=data["command"])
    elapsed = time.perf_counter() - started
    assert len(page) < 600_000, len(page)
    assert elapsed < 2.0, elapsed  # ~30 ms on the 2-core machine; generous under load
    assert page.count(b"<pre>") == report.DETAILED_FAILURES + 1  # + the script
    assert b"<h2>Every instance</h2>" not in page  # the grid only, past TABLE_LIMIT


class FakeBucket:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects, self.reads, self.puts = objects, [], {}  # type: ignore[var-annotated]

    def get(self, key: str) -> bytes | None:
        self.reads.append(key)
        return self.objects.get(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.puts[key] = (data, content_type)


def test_without_outputs_only_the_first_failures_output_is_read() -> None:
    data = synthetic(2_000)  # 40 failed
    summary = data["summary"]
    objects = {e["Output"]: b"line\n" * 50 + b"the end\n" for e in summary["Instances"].values()}
    bucket = FakeBucket(objects)
    key = write_report(bucket, "results/t-bench0000000000000000/summary.json",  # type: ignore[arg-type]
                       summary, results=data["results"], command=data["command"])
    assert key == "results/t-bench0000000000000000/report.html"
    assert len(bucket.reads) == report.DETAILED_FAILURES
    page, content_type = bucket.puts[key]
    assert content_type == "text/html; charset=utf-8"
    assert page.count(b"the end") == report.DETAILED_FAILURES


def test_the_collector_does_not_import_the_renderer_to_start() -> None:
    code = "import sys, shared.collect; print('shared.report' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "False"
    imported = re.findall(r"^(?:import|from) (\w+)", (REPO / "shared/report.py").read_text(),
                          re.M)
    assert set(imported) - {"__future__"} <= set(sys.stdlib_module_names), imported
