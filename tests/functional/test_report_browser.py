"""report.html and the dashboard, opened in a real browser (headless Chromium, tests/browser.py).

One three-instance success and one one-instance failure (exit 4, stderr, and output that tries
to inject markup) through the signed webhook; then their reports, as stored and as Chromium
renders them, served three ways: the dashboard, the URL `assistflow results --report` prints,
and a presigned local OSS URL. Screenshots go to $ASSISTFLOW_SCREENS (default /work/screens
when it exists, else the test's temporary directory).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from local.cloud import LocalCloud
from tests import browser
from tests.localcloud import Endpoints, get_object, wait_for

REPO = Path(__file__).resolve().parents[2]
# Would change the page if any of it ran: the title, or a marker attribute on <body>.
INJECTED = ("<script>document.title='pwned'</script>"
            "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\"></html>")
FAILING = (f"echo 'disk /var is full' >&2\ncat <<'EOF'\n{INJECTED}\nEOF\n"
           "echo 'last line before exit'\nexit 4\n")


@pytest.fixture(scope="module")
def ran(endpoints: Endpoints) -> dict[str, Any]:
    """The two invocations, finished: their InvokeIds and summaries."""
    three = endpoints["instances"][:3]
    ok_status, ok = endpoints.post({"Type": "RunShellScript", "InstanceIds": three,
                                    "CommandContent": "echo report-ok on $(hostname)"})
    bad_status, bad = endpoints.post({"Type": "RunShellScript", "InstanceIds": three[:1],
                                      "Name": "assistflow-<b>bold</b>",
                                      "CommandContent": FAILING})
    assert (ok_status, bad_status) == (202, 202), (ok, bad)
    bucket = endpoints.bucket()
    summaries = {i: json.loads(wait_for(lambda i=i: get_object(
        bucket, f"results/{i}/summary.json"), timeout=30))
        for i in (ok["InvokeId"], bad["InvokeId"])}
    return {"ok": ok["InvokeId"], "bad": bad["InvokeId"], "instances": three,
            "summaries": summaries}


def screens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    default = Path("/work/screens") if Path("/work/screens").is_dir() else None
    where = os.environ.get("ASSISTFLOW_SCREENS") or default
    return Path(where) if where else tmp_path_factory.mktemp("screens")


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as answer:
        return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()


def report_url(cloud: LocalCloud, invoke_id: str, *flags: str) -> str:
    env = {**os.environ, "ASSISTFLOW_STATE_DIR": str(cloud.state_dir)}
    done = subprocess.run([sys.executable, "-m", "local", "results", invoke_id, "--report",
                           *flags], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def assert_self_contained(page: str) -> None:
    """No asset from anywhere: no src at all, links only relative, the restrictive CSP."""
    assert "default-src 'none'" in page and "script-src" not in page
    assert re.search(r"<meta http-equiv=\"Content-Security-Policy\" content=\"[^\"]*"
                     r"style-src 'sha256-", page)
    assert not re.search(r"\bsrc\s*=", page.split("<body>", 1)[1].replace("src=x", "")
                         .replace("src=x ", "")) or "&lt;img src=x" in page
    for link in re.findall(r"href=\"?([^\" >]+)", page):
        assert "://" not in link and not link.startswith("//"), link
    assert "<script" not in page and "<img" not in page  # what the output held is text


def test_reports_and_dashboard_in_chromium(cloud: LocalCloud, endpoints: Endpoints,
                                          ran: dict[str, Any],
                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    out = screens(tmp_path_factory)
    ok_id, bad_id, three = ran["ok"], ran["bad"], ran["instances"]
    assert ran["summaries"][ok_id]["Status"] == "Success"
    assert ran["summaries"][bad_id]["Status"] == "Failed"

    # Each report, as `results --report` prints it (the dashboard serves the object).
    urls = {i: report_url(cloud, i) for i in (ok_id, bad_id)}
    for invoke_id, url in urls.items():
        assert url.startswith(endpoints["dashboard_url"]), url
        status, headers, body = fetch(url)
        assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
        stored = endpoints.bucket().get_object(f"results/{invoke_id}/report.html")
        assert stored.headers["Content-Type"] == "text/html; charset=utf-8"
        assert body == stored.read()
        assert_self_contained(body.decode())

    ok_dom = browser.dump_dom(urls[ok_id])
    for instance_id in three:
        assert instance_id in ok_dom
    assert "Success" in ok_dom and "Failures" in ok_dom and "None." in ok_dom

    bad_url = urls[bad_id]
    bad_dom = browser.dump_dom(bad_url)
    assert three[0] in bad_dom and "Failed" in bad_dom
    assert re.search(r"exit code <b>4</b>", bad_dom), bad_dom[bad_dom.find("Failures"):][:1500]
    assert "disk /var is full" in bad_dom and "last line before exit" in bad_dom
    # The injected markup is text on the page, and none of it ran.
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in bad_dom
    assert "&lt;img src=x onerror=" in bad_dom and "&lt;/html&gt;" in bad_dom
    assert "assistflow-&lt;b&gt;bold&lt;/b&gt;" in bad_dom  # the command's name, as text
    assert "pwned" not in re.search(r"<title>(.*?)</title>", bad_dom).group(1)  # type: ignore[union-attr]
    assert not re.search(r"<body[^>]*data-pwned", bad_dom) and "<b>bold</b>" not in bad_dom
    # A link from the report opens the instance's output through the dashboard too.
    status, headers, body = fetch(bad_url.rsplit("/", 1)[0] + f"/{three[0]}/output.txt")
    assert status == 200 and b"disk /var is full" in body
    assert headers["content-type"].startswith("text/plain")
    assert headers["x-content-type-options"] == "nosniff"

    # The local OSS's own presigned URL opens the same page.
    presigned = report_url(cloud, bad_id, "--presign")
    assert presigned.startswith(endpoints["oss"]) and "x-oss-signature" in presigned.lower()
    assert "disk /var is full" in browser.dump_dom(presigned)

    shot = browser.screenshot(bad_url, out / "report.png")
    assert len(browser.png_colours(shot)) > 10, "the report's screenshot is blank"

    # The dashboard lists both invocations (and their requests), with links to the reports.
    dashboard = endpoints["dashboard_url"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", dashboard)
    dom = browser.dump_dom(dashboard)
    assert ok_id in dom and bad_id in dom
    assert f"/o/results/{bad_id}/report.html" in dom and "http" in dom
    assert ran["summaries"][bad_id]["RequestId"] in dom
    shot = browser.screenshot(dashboard, out / "dashboard.png")
    assert len(browser.png_colours(shot)) > 10, "the dashboard's screenshot is blank"


def test_the_report_renders_nothing_it_was_given_even_without_its_csp(
        endpoints: Endpoints, ran: dict[str, Any], tmp_path: Path) -> None:
    """Escaping alone keeps the injected markup inert (the CSP is a second wall), and the
    harness can tell: the same markup left raw does run in this browser."""
    page = endpoints.bucket().get_object(f"results/{ran['bad']}/report.html").read().decode()
    stripped = re.sub(r"<meta http-equiv=\"Content-Security-Policy\"[^>]*>", "", page)
    assert stripped != page
    (tmp_path / "no-csp.html").write_text(stripped)
    dom = browser.dump_dom((tmp_path / "no-csp.html").as_uri())
    assert not re.search(r"<body[^>]*data-pwned", dom) and "&lt;script&gt;" in dom
    assert "pwned" not in re.search(r"<title>(.*?)</title>", dom).group(1)  # type: ignore[union-attr]
    # Control: the raw markup in a page without a CSP runs (title changed, marker set)...
    (tmp_path / "raw.html").write_text(f"<html><head><title>t</title></head><body>{INJECTED}")
    raw = browser.dump_dom((tmp_path / "raw.html").as_uri())
    assert "<title>pwned</title>" in raw and re.search(r"<body[^>]*data-pwned", raw)
    # ... and the report's CSP stops it even when it is there raw.
    (tmp_path / "csp.html").write_text(page.replace("<body>", f"<body>{INJECTED}", 1))
    blocked = browser.dump_dom((tmp_path / "csp.html").as_uri())
    assert "pwned" not in re.search(r"<title>(.*?)</title>", blocked).group(1)  # type: ignore[union-attr]
    assert not re.search(r"<body[^>]*data-pwned", blocked)


def test_the_dashboard_is_read_only_and_answers_to_loopback_names_only(
        endpoints: Endpoints, ran: dict[str, Any]) -> None:
    base = endpoints["dashboard_url"].rstrip("/")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for request, code in (
            (urllib.request.Request(base + "/", method="POST", data=b"x"), 405),
            (urllib.request.Request(base + "/", headers={"Host": "evil.example:80"}), 403),
            (urllib.request.Request(base + "/o/invocations/requests/x.json"), 404),
            (urllib.request.Request(base + f"/o/results/{ran['ok']}/../../webhook-deliveries/"
                                           "x"), 404)):
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open(request, timeout=10)
        assert refused.value.code == code, request.full_url


def test_the_dashboard_refreshes_itself_while_work_runs(endpoints: Endpoints) -> None:
    status, body = endpoints.post({"Type": "RunShellScript", "CommandContent": "sleep 4",
                                   "InstanceIds": endpoints["instances"][:1]})
    assert status == 202, body
    _, headers, page = fetch(endpoints["dashboard_url"])
    text = page.decode()
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["content-security-policy"]
    row = re.search(rf"<tr><td><code>{body['InvokeId']}</code>.*?</tr>", text)
    assert row and "Running" in row.group(0), text
    assert '<meta http-equiv="refresh" content="5">' in text
    bucket = endpoints.bucket()
    wait_for(lambda: get_object(bucket, f"results/{body['InvokeId']}/summary.json"), timeout=30)
    _, _, page = fetch(endpoints["dashboard_url"])
    row = re.search(rf"<tr><td><code>{body['InvokeId']}</code>.*?</tr>", page.decode())
    assert row and "Success" in row.group(0) and "report.html" in row.group(0)


def test_a_periodic_invocation_has_its_report_as_runs_come_in(fresh_cloud_dir: Path) -> None:
    """Follow-ups alone (no completion events: their watchdog would look a minute later)."""
    cloud = LocalCloud(fresh_cloud_dir, parameters={"MaintenanceEnabled": False,
                                                    "CompletionEvents": False})
    try:
        _periodic(Endpoints(cloud.start()))
    finally:
        cloud.stop()


def _periodic(endpoints: Endpoints) -> None:
    from aliyunsdkecs.request.v20140526.StopInvocationRequest import StopInvocationRequest

    status, body = endpoints.post({"Type": "RunShellScript", "CommandContent": "echo tick",
                                   "InstanceIds": endpoints["instances"][:1], "Timeout": 10,
                                   "RepeatMode": "Period", "Frequency": "rate(1m)"})
    assert status == 202, body
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:  # rate() runs first one interval after creation: move the local ECS clock there
        opener.open(urllib.request.Request(f"{endpoints['ecs']}/_emulator/advance",
                                           data=json.dumps({"seconds": 61}).encode(),
                                           headers={"Content-Type": "application/json"},
                                           method="POST"), timeout=30).read()
        key = f"results/{body['InvokeId']}/report.html"
        page = wait_for(lambda: get_object(endpoints.bucket(), key), timeout=30).decode()
        summary = json.loads(get_object(endpoints.bucket(),  # type: ignore[arg-type]
                                        f"results/{body['InvokeId']}/summary.json"))
        assert summary["Runs"] == {endpoints["instances"][0]: 1}
        assert f"<td>Runs</td><td>{endpoints['instances'][0]}: 1</td>" in page
        assert summary["InvocationStatus"] == "Scheduled"  # the schedule goes on
        assert "<span class=\"st run\">Scheduled</span>" in page and "Success" in page
    finally:
        stop = StopInvocationRequest()
        stop.set_InvokeId(body["InvokeId"])
        endpoints.call(stop)
