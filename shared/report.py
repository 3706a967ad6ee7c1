"""``report.html``: one self-contained page per summary, rendered from what the collector holds.

``render(summary, key=…, results=…, tails=…, command=…)`` turns a summary document (an
invocation's ``summary.json``, or any document of the same shape: ``Status``, ``Counts``,
``Instances`` with ``Status`` / ``ExitCode`` / ``Output`` / ``Result`` keys) into HTML bytes.
It is pure (no I/O, no clock, stdlib only) and deterministic: the same inputs give the same
bytes, so a rewrite after a redelivered follow-up is byte-identical like every result object.
Times shown are the summary's own (``StartedAt``, ``FinishedAt``), never "now".

The page is built for a browser that trusts nothing in it:

* everything from a script, a request or the cloud (ids, statuses, command name, script,
  output, error text) is escaped with ``html.escape(quote=True)`` — in text and in attribute
  values alike; links are percent-encoded relative paths (``quote(safe="/")``), so no value can
  become a scheme (``javascript:``), a query or a second attribute;
* a Content-Security-Policy in ``<meta http-equiv>``: ``default-src 'none'`` (no script, image,
  font, frame or connection at all), ``style-src`` the SHA-256 of the one inline stylesheet
  (CSP Level 2 hash source; a hash, not ``'unsafe-inline'``: an injected ``<style>`` — a CSS
  exfiltration vector — would not apply, and the stylesheet is a constant so the hash costs
  nothing), ``base-uri 'none'`` and ``form-action 'none'``. No ``style=""`` attribute is used
  (a hash does not cover those). https://www.w3.org/TR/CSP3/#grammardef-hash-source;
* ``<meta name="referrer" content="no-referrer">``: a presigned URL's signature is not sent on
  as a Referer when a link is followed.

Size and cost stay small at 10,000 instances: one empty ``<a>`` per grid cell (its class is the
status, its link the instance's ``result.json``, its ``title`` the instance id), the detailed
part (output tails) only for the first ``DETAILED_FAILURES`` failures, the full table only up to
``TABLE_LIMIT`` instances.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import posixpath
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

_SAFE = re.compile(r"[A-Za-z0-9_.~/-]+")  # needs no percent-encoding nor quotes

DETAILED_FAILURES = 20  # failures shown with their output tail
LISTED_FAILURES = 500  # failures listed at all (the rest are counted)
TABLE_LIMIT = 500  # a per-instance table up to this many instances; the grid always
TAIL_LINES = 15
TAIL_CHARS = 1500
SCRIPT_CHARS = 2000  # of the script shown
HISTOGRAM_BINS = 12

# Status -> the cell class (a fixed set: a status never becomes a class name itself).
CLASSES = {"Success": "ok", "Failed": "bad", "Error": "bad", "Invalid": "bad",
           "Aborted": "bad", "Timeout": "tmo", "CollectorTimeout": "tmo",
           "Cancelled": "stp", "Terminated": "stp", "Stopped": "stp", "Skipped": "skp",
           "NotStarted": "skp", "PartialFailed": "bad", "Running": "run", "Pending": "run",
           "Scheduled": "run"}
LEGEND = {"ok": "Success", "bad": "Failed", "tmo": "Timeout", "stp": "Stopped",
          "skp": "Skipped", "run": "Running", "oth": "other"}
OK = frozenset({"Success", "Skipped", "NotStarted", "Cancelled", "Terminated"})

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:12px 18px;
color:#1d1d1f;background:#fff}
h1{font-size:22px;margin:.2em 0}h2{font-size:17px;margin:1.2em 0 .4em;border-bottom:1px solid
#ddd}code,pre{font:12px/1.35 ui-monospace,monospace}pre{background:#f5f5f7;padding:8px;
overflow:auto;white-space:pre-wrap;word-break:break-all;max-height:16em;margin:.3em 0}
.st{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.meta td{padding:1px 12px 1px 0;vertical-align:top}.meta td:first-child{color:#666}
.counts span{margin-right:14px}.grid{display:flex;flex-wrap:wrap;gap:1px;max-width:1000px}
.grid span{display:contents}.grid a{width:9px;height:9px;display:block}.grid a:hover{outline:2px
solid #000}.ok,.ok a{background:#2e9d4f}.bad,.bad a{background:#d93025}.tmo,.tmo a{background:
#e37400}.stp,.stp a{background:#80868b}.skp,.skp a{background:#c6cacf}.run,.run a{background:
#1a73e8}.oth,.oth a{background:#9334e6}.st.skp{color:#222}.key i{display:inline-block;width:10px;height:10px;
margin:0 4px 0 10px}table.t{border-collapse:collapse}table.t td,table.t th{padding:2px 10px 2px 0;
text-align:left;border-bottom:1px solid #eee}.fail{border-left:4px solid #d93025;padding:2px 10px;
margin:10px 0}.muted{color:#666}svg text{font:11px sans-serif;fill:#444}svg rect{fill:#1a73e8}
"""


def policy(style: str) -> str:
    """The Content-Security-Policy of a page whose only resource is the inline ``style``."""
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    return f"default-src 'none'; style-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"


CSP = policy(STYLE)


def report_key(summary_key: str) -> str:
    """Where a summary's report goes: ``report.html`` beside it."""
    return posixpath.join(posixpath.dirname(summary_key), "report.html")


def tail(text: str, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str:
    """The last ``lines`` lines of ``text``, at most ``chars`` characters of them."""
    kept = "\n".join(text.rstrip("\n").split("\n")[-lines:])
    return kept[-chars:]


def failed(status: str) -> bool:
    return status not in OK


def render(summary: Mapping[str, Any], *, key: str,
           results: Mapping[str, Mapping[str, Any]] | None = None,
           tails: Mapping[str, str] | None = None,
           command: Mapping[str, str] | None = None) -> bytes:
    """The report of ``summary``, to be stored at ``key`` (links are relative to it).

    ``results``: per-instance ``result.json`` documents by instance id (ErrorCode, ErrorInfo,
    StartTime, FinishedTime) — without them the page has no durations or error texts;
    ``tails``: the end of the output of (some) failed instances, by instance id (``tail``);
    ``command``: ``Name``, ``Type``, ``Content`` (the script or its beginning), as known.
    """
    results = results or {}
    tails = tails or {}
    instances: Mapping[str, Mapping[str, Any]] = summary.get("Instances") or {}
    base = posixpath.dirname(key)
    links = _Links(base, instances)
    status = str(summary.get("InvocationStatus") or summary.get("Status") or "")
    title = summary.get("RequestId") if "InvokeIds" in summary else summary.get("InvokeId")
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
        "<meta name=\"referrer\" content=\"no-referrer\">"
        "<meta name=\"viewport\" content=\"width=device-width\">"
        f"<title>{_e(status)} · {_e(title)} · assistflow</title><style>{STYLE}</style>"
        "</head><body>",
        _header(summary, status, title, command),
        _grid(instances, links),
        _failures(instances, results, tails, links),
        _durations(instances, results),
        _table(instances, results, links),
        "<p class=\"muted\">Written by assistflow's collector from the stored results; "
        "links lead to each instance's <code>output.txt</code> and <code>result.json</code> "
        "beside this page.</p></body></html>\n",
    ]
    return "".join(parts).encode("utf-8")


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _cls(status: str) -> str:
    return CLASSES.get(status, "oth")


# A key of plain segments: no empty one (``//``, a leading or trailing ``/``), no ``.`` or ``..``
_PLAIN_KEY = re.compile(r"(?:(?!\.\.?(?:/|$))[^/]+)(?:/(?!\.\.?(?:/|$))[^/]+)*")


class _Links:
    """Each instance's ``output.txt`` / ``result.json`` relative to the report's folder."""

    def __init__(self, base: str, instances: Mapping[str, Mapping[str, Any]]) -> None:
        self.base, self.instances = base, instances
        # the folder's segments, when plain: a key elsewhere is then made relative by its
        # segments, as ``posixpath.relpath`` would (10,000 of its calls, each two ``abspath``
        # and their ``getcwd``, were three quarters of a request report's rendering)
        self._parts = base.split("/") if base and _PLAIN_KEY.fullmatch(base) else None

    def output(self, instance_id: str) -> str:
        return self._link(instance_id, "Output", "output.txt")

    def result(self, instance_id: str) -> str:
        return self._link(instance_id, "Result", "result.json")

    def _link(self, instance_id: str, field: str, name: str) -> str:
        """The object key the summary names (by default ``{instance_id}/{name}`` beside the
        report), relative and percent-encoded: only ``A-Za-z0-9_.~-%/`` remain, so the value
        needs no quotes and can never name a scheme, a query or a fragment."""
        target = self.instances[instance_id].get(field)
        key = str(target) if target else f"{self.base}/{instance_id}/{name}"
        relative = self._relative(key)
        if _SAFE.fullmatch(relative) and not relative.startswith("/"):
            return relative
        return quote(relative if relative[:1] not in ("", "/") else "./" + relative,
                     safe="/")

    def _relative(self, key: str) -> str:
        """``posixpath.relpath(key, base)``, without its cost for a key under the folder (the
        common case) nor for plain keys and folders (by their segments)."""
        if key.startswith(self.base + "/"):
            return key[len(self.base) + 1:]
        base = self._parts
        if base is None or not _PLAIN_KEY.fullmatch(key):
            return posixpath.relpath(key, self.base or ".")
        parts = key.split("/")
        common = 0
        for ours, theirs in zip(base, parts, strict=False):
            if ours != theirs:
                break
            common += 1
        return "/".join([".."] * (len(base) - common) + parts[common:]) or "."


def _header(summary: Mapping[str, Any], status: str, title: Any,
            command: Mapping[str, str] | None) -> str:
    command = command or {}
    rows = [("Command", " · ".join(_e(v) for v in (command.get("Name"), command.get("Type"),
                                                    summary.get("CommandId")) if v)),
            ("Request", _e(summary.get("RequestId"))), ("Source", _e(summary.get("Source"))),
            ("Region", _e(summary.get("RegionId"))),
            ("Started", _e(summary.get("StartedAt"))),
            ("Finished", _e(summary.get("FinishedAt")))]
    if summary.get("InvokeIds"):
        rows.insert(1, ("Invocations", " ".join(_e(i) for i in summary["InvokeIds"])))
    if summary.get("Runs"):
        rows.append(("Runs", " ".join(f"{_e(i)}: {_e(n)}"
                                      for i, n in sorted(summary["Runs"].items()))))
    counts = summary.get("Counts") or {}
    total = summary.get("InstanceCount", sum(int(v) for v in counts.values()))
    out = [f"<h1><span class=\"st {_cls(status)}\">{_e(status)}</span> {_e(title)}</h1>",
           "<table class=\"meta\">",
           *(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows if v), "</table>",
           f"<p class=\"counts\"><b>{_e(total)} instance(s)</b>: ",
           *(f"<span><span class=\"st {_cls(str(k))}\">{_e(k)}</span> {_e(v)}</span>"
             for k, v in sorted(counts.items())),
           " <a href=\"#failures\">failures ↓</a>" if any(
               failed(str(k)) and v for k, v in counts.items()) else "", "</p>"]
    content = command.get("Content") or ""
    if content:
        cut = len(content) > SCRIPT_CHARS
        out.append(f"<details{'' if cut else ' open'}><summary>Script"
                   f"{' (beginning)' if cut else ''}</summary>"
                   f"<pre>{_e(content[:SCRIPT_CHARS])}</pre></details>")
    return "".join(out)


def _failures(instances: Mapping[str, Mapping[str, Any]],
              results: Mapping[str, Mapping[str, Any]], tails: Mapping[str, str],
              links: _Links) -> str:
    bad = [i for i in sorted(instances) if failed(str(instances[i].get("Status")))]
    if not bad:
        return "<h2>Failures</h2><p>None.</p>"
    out = [f"<h2 id=\"failures\">Failures ({len(bad)})</h2>"]
    for instance_id in bad[:DETAILED_FAILURES]:
        entry, doc = instances[instance_id], results.get(instance_id) or {}
        output, result = links.output(instance_id), links.result(instance_id)
        error = " — ".join(_e(v) for v in (doc.get("ErrorCode"), doc.get("ErrorInfo")) if v)
        out.append(
            f"<div class=\"fail\"><b>{_e(instance_id)}</b> "
            f"<span class=\"st {_cls(str(entry.get('Status')))}\">{_e(entry.get('Status'))}"
            f"</span> exit code <b>{_e(entry.get('ExitCode'))}</b>"
            + (f"<br>{error}" if error else "")
            + (f"<pre>{_e(tails[instance_id])}</pre>" if tails.get(instance_id) else "")
            + f"<a href=\"{_e(output)}\">output.txt</a> · "
              f"<a href=\"{_e(result)}\">result.json</a></div>")
    rest = bad[DETAILED_FAILURES:LISTED_FAILURES]
    if rest:
        out.append("<table class=\"t\"><tr><th>instance</th><th>status</th><th>exit</th>"
                   "<th>error</th></tr>")
        out += [f"<tr><td><a href=\"{_e(links.result(i))}\">{_e(i)}</a></td>"
                f"<td>{_e(instances[i].get('Status'))}</td><td>{_e(instances[i].get('ExitCode'))}"
                f"</td><td>{_e((results.get(i) or {}).get('ErrorCode'))}</td></tr>"
                for i in rest]
        out.append("</table>")
    if len(bad) > LISTED_FAILURES:
        out.append(f"<p>… and {len(bad) - LISTED_FAILURES} more: see summary.json.</p>")
    return "".join(out)


def _grid(instances: Mapping[str, Mapping[str, Any]],
          links: _Links) -> str:
    used = sorted({_cls(str(e.get("Status"))) for e in instances.values()})
    legend = "".join(f"<i class=\"{c}\"></i>{LEGEND[c]}" for c in used)
    # Consecutive cells of one status share a <span class>: with most instances alike, a cell
    # is its link alone (unquoted: _link leaves nothing that needs quotes).
    runs: list[str] = []
    current = ""
    for instance_id, entry in sorted(instances.items()):
        cls = _cls(str(entry.get("Status")))
        if cls != current:
            runs.append(f"{'</span>' if current else ''}<span class={cls}>")
            current = cls
        runs.append(f"<a href={links.result(instance_id)}></a>")
    cells = "".join(runs) + ("</span>" if current else "")
    return (f"<h2>Instances ({len(instances)})</h2><p class=\"key muted\">one square per "
            f"instance, by id; point at one to see its link (the instance id), open it for its "
            f"result.json:{legend}</p>"
            f"<div class=\"grid\">{cells}</div>")


def _seconds(doc: Mapping[str, Any]) -> float | None:
    """StartTime to FinishedTime (Cloud Assistant's ISO 8601 UTC, ``…Z``), if both parse."""
    began, ended = _instant(doc.get("StartTime")), _instant(doc.get("FinishedTime"))
    return None if began is None or ended is None else max(0.0, ended - began)


@functools.lru_cache(maxsize=4096)  # a fleet's times repeat: parse each one once
def _instant(text: Any) -> float | None:
    if not text:
        return None
    try:  # python3.10 (FC's runtime) reads no "Z"
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _durations(instances: Iterable[str], results: Mapping[str, Mapping[str, Any]]) -> str:
    values = sorted(s for s in (_seconds(results.get(i) or {}) for i in instances)
                    if s is not None)
    if not values:
        return "<h2>Durations</h2><p class=\"muted\">No start and finish times.</p>"
    n = len(values)
    quantiles = " · ".join(f"{name} {values[min(n - 1, int(q * n))]:.1f} s"
                           for name, q in (("p50", .5), ("p90", .9), ("p99", .99)))
    low, high = values[0], values[-1]
    count = HISTOGRAM_BINS if high - low >= 0.1 else 1  # all alike: one bar
    width = (high - low) / count or 1.0
    bins = [0] * count
    for v in values:
        bins[min(count - 1, int((v - low) / width))] += 1
    peak = max(bins)
    bars = "".join(
        f"<rect x=\"{40 + k * 50}\" y=\"{110 - round(90 * c / peak)}\" width=\"44\" "
        f"height=\"{round(90 * c / peak)}\"></rect><text x=\"{40 + k * 50}\" y=\"125\">"
        f"{low + k * width:.1f}</text>"
        + (f"<text x=\"{40 + k * 50}\" y=\"{105 - round(90 * c / peak)}\">{c}</text>" if c
           else "")
        for k, c in enumerate(bins))
    return (f"<h2>Durations</h2><p>{n} timed · min {low:.1f} s · {quantiles} · max "
            f"{high:.1f} s</p><svg width=\"{60 + 50 * count}\" height=\"130\" "
            f"role=\"img\" aria-label=\"instances per duration, seconds\">{bars}</svg>")


def _table(instances: Mapping[str, Mapping[str, Any]],
           results: Mapping[str, Mapping[str, Any]],
           links: _Links) -> str:
    if len(instances) > TABLE_LIMIT:
        return ""
    rows = []
    for instance_id, entry in sorted(instances.items()):
        seconds = _seconds(results.get(instance_id) or {})
        output, result = links.output(instance_id), links.result(instance_id)
        rows.append(f"<tr><td>{_e(instance_id)}</td><td><span class=\"st "
                    f"{_cls(str(entry.get('Status')))}\">{_e(entry.get('Status'))}</span></td>"
                    f"<td>{_e(entry.get('ExitCode'))}</td>"
                    f"<td>{'' if seconds is None else f'{seconds:.1f} s'}</td>"
                    f"<td><a href=\"{_e(output)}\">output.txt</a> · "
                    f"<a href=\"{_e(result)}\">result.json</a></td></tr>")
    return ("<h2>Every instance</h2><table class=\"t\"><tr><th>instance</th><th>status</th>"
            "<th>exit</th><th>duration</th><th>objects</th></tr>" + "".join(rows) + "</table>")
