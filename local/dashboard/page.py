"""The dashboard's HTML: two tables, no script, refreshed by ``<meta http-equiv="refresh">``.

Like ``report.html`` (``shared.report``), every value is escaped, the page loads nothing and
its Content-Security-Policy allows only its own stylesheet (by hash).
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote

from local.dashboard.data import Row, age
from shared import report

REFRESH_SECONDS = 5
OBJECTS = "/o/"  # where the dashboard serves the results bucket's objects

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:12px 18px;
color:#1d1d1f}h1{font-size:22px;margin:.2em 0}h2{font-size:17px;margin:1.2em 0 .4em}
table{border-collapse:collapse;width:100%}td,th{padding:3px 10px 3px 0;text-align:left;
border-bottom:1px solid #eee;vertical-align:top}code{font:12px ui-monospace,monospace;
white-space:nowrap}
.st{display:inline-block;padding:1px 8px;border-radius:9px;color:#fff;font-weight:600;
background:#9334e6}.ok{background:#2e9d4f}.bad{background:#d93025}.run{background:#1a73e8}
.stp{background:#80868b}.tmo{background:#e37400}.skp{background:#c6cacf;color:#222}
.muted{color:#666}
"""
CSP = report.policy(STYLE)
CLASSES = report.CLASSES  # a status's colour, as in report.html


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def object_url(key: str) -> str:
    """The dashboard's address of an object of the results bucket."""
    return OBJECTS + quote(key, safe="/")


def render(view: dict[str, Any], now: float) -> bytes:
    refresh = (f"<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">"
               if view["running"] else "")
    state = (f"work is running: this page refreshes every {REFRESH_SECONDS} s" if view["running"]
             else "nothing is running; reload to look again")
    page = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
        f"<meta name=\"referrer\" content=\"no-referrer\">{refresh}"
        f"<title>assistflow · local dashboard</title><style>{STYLE}</style></head><body>"
        f"<h1>assistflow · local dashboard</h1><p class=\"muted\">{_e(state)}</p>",
        _table("Requests", view["requests"], now, "invocations",
               {r.id: r.report for r in view["invocations"]}),
        _table("Invocations", view["invocations"], now, "request"),
        "</body></html>\n"]
    return "".join(page).encode("utf-8")


def _table(title: str, rows: list[Row], now: float, related: str,
           reports: dict[str, str] | None = None) -> str:
    if not rows:
        return f"<h2>{title}</h2><p class=\"muted\">None yet.</p>"
    head = ("<tr><th>id</th><th>source</th><th>command</th><th>status</th><th>counts</th>"
            f"<th>age</th><th>{related}</th><th>report</th></tr>")
    body = []
    for row in rows:
        counts = ", ".join(f"{_e(k)} {_e(v)}" for k, v in sorted(row.counts.items()))
        links = (f"<a href=\"{_e(object_url(row.report))}\">report</a>" if row.report
                 else "<span class=\"muted\">when finished</span>" if row.running
                 else "<span class=\"muted\">per invocation</span>")
        if row.summary:
            links += f" · <a href=\"{_e(object_url(row.summary))}\">summary.json</a>"
        body.append(
            f"<tr><td><code>{_e(row.id)}</code></td><td>{_e(row.source)}</td>"
            f"<td>{_e(row.name)}</td><td><span class=\"st {CLASSES.get(row.status.split(',')[0], 'oth')}\">"
            f"{_e(row.status)}</span></td><td>{counts}</td><td>{_e(age(row.created, now))}</td>"
            f"<td>{' '.join(_related(r, (reports or {}).get(r, '')) for r in row.related)}</td>"
            f"<td>{links}</td></tr>")
    return f"<h2>{title} ({len(rows)})</h2><table>{head}{''.join(body)}</table>"


def _related(some_id: str, report: str) -> str:
    """An id, linked to its report when it has one."""
    code = f"<code>{_e(some_id)}</code>"
    return f"<a href=\"{_e(object_url(report))}\">{code}</a>" if report else code
