"""``assistflow up``, ``invoke`` and ``events``: the local cloud and its functions.

``up`` starts the local cloud in the foreground (what ``make run`` calls); Ctrl-C stops it.
``invoke FUNCTION --event FILE`` runs one function once through Function Compute's invoke API
with the official aliyun-fc2 client — like ``sam local invoke``. ``events`` lists or prints the
canonical events of ``events/`` — like ``sam local generate-event``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from local.cli.common import EXIT_FAILED, EXIT_USAGE, CliError, emit_json, load_endpoints, table
from local.state import state_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
EVENTS_DIR = REPO_ROOT / "events"


def parameters(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"assistflow up: --parameter wants NAME=VALUE, not {pair!r}")
        out[name] = value
    return out


def cmd_up(args: argparse.Namespace) -> int:
    from local.cloud import LocalCloud, Ports
    from local.host.template import TemplateError

    directory = state_dir(args.state_dir)
    cloud = LocalCloud(directory, template=Path(args.template).resolve(), ports=Ports.from_env(),
                       region=args.region, parameters=parameters(args.parameter))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        endpoints = cloud.start()
    except TemplateError as exc:
        print(f"assistflow up: {args.template}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"assistflow local cloud is up; endpoints in {cloud.endpoints_path}", flush=True)
    print(f"  webhook   {endpoints['webhook_url']}", flush=True)
    print(f"  ecs {endpoints['ecs']}  mns {endpoints['mns']}  oss {endpoints['oss']}", flush=True)
    print(f"  instances {', '.join(endpoints['instances'])}", flush=True)
    print("Ctrl-C stops it; state is kept in", directory, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping…", flush=True)
        cloud.stop()
    return 0


def _function_name(name: str, functions: list[str]) -> str:
    """``name`` itself, or the one function whose name ends in ``-name`` (``collect``)."""
    if name in functions or not functions:
        return name
    matches = [f for f in functions if f.endswith("-" + name)]
    if len(matches) == 1:
        return matches[0]
    raise CliError(f"no function {name!r}; the local cloud runs: {', '.join(functions)}")


def _read_event(source: str | None) -> bytes:
    if source is None:
        return b""
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read the event file: {exc}") from None


def _signed_http_event(payload: bytes, secret: str) -> bytes:
    """An FC HTTP event whose body is signed now with the local webhook secret.

    The canonical ``events/http-submit.json`` carries a placeholder signature; ``--sign`` makes
    it a delivery the submit function accepts, as if a real sender had just signed it.
    """
    import base64

    from shared import webhook

    try:
        event = json.loads(payload)
        raw = event["body"] or ""
        body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
        headers = {k: v for k, v in (event.get("headers") or {}).items()
                   if k.lower() not in ("x-assistflow-timestamp", "x-assistflow-signature")}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CliError("--sign needs an FC HTTP trigger event (JSON with headers and body)") \
            from None
    event["headers"] = {**headers, **webhook.sign(secret, body)}
    return json.dumps(event).encode()


def _quiet_fc2() -> None:
    """fc2 logs every failed call on the root logger at ERROR, request headers (the signature)
    included; this command prints its own one-line message instead."""
    def drop(record: logging.LogRecord) -> bool:
        return f"{os.sep}fc2{os.sep}" not in record.pathname

    for handler in logging.getLogger().handlers:
        handler.addFilter(drop)


def cmd_invoke(args: argparse.Namespace) -> int:
    import fc2
    import requests
    from fc2.fc_exceptions import FcError

    _quiet_fc2()
    try:
        endpoints = load_endpoints(args.state_dir, probe="fc", remote_hint=False)
        function = _function_name(args.function, list(endpoints.get("functions") or []))
        payload = _read_event(args.event)
        if args.sign:
            payload = _signed_http_event(payload, endpoints["webhook_secret"])
    except CliError as exc:
        print(f"assistflow invoke: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    client = fc2.Client(endpoint=endpoints["fc"], accessKeyID=endpoints["access_key_id"],
                        accessKeySecret=endpoints["access_key_secret"], Timeout=args.timeout)
    headers = {"x-fc-invocation-type": "Async"} if args.async_ else {}
    try:
        response = client.invoke_function(args.service, function, payload=payload,
                                          headers=headers)
    except FcError as exc:
        return _report_error(function, exc)
    except requests.RequestException as exc:
        print(f"assistflow invoke: {function}: the local cloud did not answer: {exc}",
              file=sys.stderr)
        return EXIT_USAGE
    request_id = response.headers.get("x-fc-request-id", "")
    if args.async_:
        print(request_id, flush=True)
        print(f"{function}: accepted for asynchronous invocation; its logs are in the "
              "`assistflow up` output", file=sys.stderr)
        return 0
    data = bytes(response.data or b"")
    sys.stdout.buffer.write(data if data.endswith(b"\n") or not data else data + b"\n")
    sys.stdout.flush()
    duration = response.headers.get("x-fc-invocation-duration", "?")
    print(f"{function}: ok in {duration} ms, request {request_id}", file=sys.stderr)
    return 0


def _report_error(function: str, exc: Any) -> int:
    try:
        body = json.loads(exc.message)
    except (TypeError, ValueError):
        body = {}
    if exc.status_code == 200:  # the API worked; the function failed (x-fc-error-type)
        kind = body.get("errorType") or "error"
        message = " ".join(str(body.get("errorMessage", "")).split())
        print(f"assistflow invoke: {function} failed: {kind}: {message} "
              f"(request {exc.request_id})", file=sys.stderr)
        return EXIT_FAILED
    print(f"assistflow invoke: {function}: HTTP {exc.status_code} "
          f"{body.get('ErrorCode', '')}: {body.get('ErrorMessage', exc.message)}", file=sys.stderr)
    return EXIT_USAGE


def event_descriptions() -> dict[str, str]:
    """``name -> one line`` for each canonical event, from the table in events/README.md."""
    descriptions = {path.stem: "(not described in events/README.md)"
                    for path in sorted(EVENTS_DIR.glob("*.json"))}
    readme = EVENTS_DIR / "README.md"
    if readme.exists():
        for line in readme.read_text(encoding="utf-8").splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            found = re.fullmatch(r"`([\w.-]+)\.json`", cells[0]) if len(cells) >= 2 else None
            if found and found.group(1) in descriptions:
                text = re.sub(r"[`*]", "", cells[1])
                handler = re.sub(r"[`*]", "", cells[2]) if len(cells) > 2 else ""
                descriptions[found.group(1)] = text + (f" → {handler}" if handler else "")
    return descriptions


def cmd_events(args: argparse.Namespace) -> int:
    descriptions = event_descriptions()
    if not args.name:
        if args.json:
            emit_json([{"Name": n, "Description": d, "File": str(EVENTS_DIR / f"{n}.json")}
                       for n, d in descriptions.items()])
        else:
            table([[n, d] for n, d in descriptions.items()], ["EVENT", "DESCRIPTION"])
        return 0
    name = args.name.removesuffix(".json")
    if name not in descriptions:
        raise CliError(f"no event {args.name!r}; there are: {', '.join(descriptions)}")
    sys.stdout.write((EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    sys.stdout.flush()
    return 0
