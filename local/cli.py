"""The ``assistflow`` command.

``assistflow up`` starts the local cloud in the foreground (what ``make run`` calls); Ctrl-C
stops it. State lives in ``$ASSISTFLOW_STATE_DIR`` (default ``.assistflow/``) and survives a
restart.

``assistflow invoke FUNCTION --event FILE`` runs one function once with an event (e.g. one of
``events/``) against the running local cloud, through Function Compute's invoke API with the
official aliyun-fc2 client — like ``sam local invoke``. The result goes to stdout; a function
error exits 1 with one line on stderr. ``--async`` only queues the invocation.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from local.state import DEFAULT_STATE_DIR, STATE_DIR_ENV, state_dir

EXIT_FUNCTION_ERROR = 1  # the function ran and failed
EXIT_USAGE = 2  # nothing ran: no local cloud, unknown function, unreadable event, API refusal


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    if not verbose:  # the SDKs are chatty at INFO
        for noisy in ("werkzeug", "oss2", "aliyunsdkcore", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _parameters(pairs: list[str]) -> dict[str, str]:
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
                       region=args.region, parameters=_parameters(args.parameter))
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


class _CliError(Exception):
    """A one-line reason the command could not run the function."""


def _endpoints(explicit: str | None) -> dict[str, Any]:
    # Resolved without creating the directory: invoke must not leave an empty state dir behind.
    directory = Path(explicit or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)
    path = directory.expanduser().resolve() / "endpoints.json"
    if not path.exists():
        raise _CliError(f"no local cloud is running (no {path}); start one with `assistflow up`")
    endpoints: dict[str, Any] = json.loads(path.read_text())
    if not endpoints.get("fc"):
        raise _CliError(f"{path} has no 'fc' endpoint: the running local cloud predates the "
                        "invoke API; restart it")
    url = urlsplit(endpoints["fc"])
    try:  # fc2 retries refused connections for ~30 s; a stale endpoints.json should fail fast
        socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=2).close()
    except OSError:
        raise _CliError(f"the local cloud at {endpoints['fc']} does not answer (stale {path}?); "
                        "start it with `assistflow up`") from None
    return endpoints


def _function_name(name: str, functions: list[str]) -> str:
    """``name`` itself, or the one function whose name ends in ``-name`` (``collect``)."""
    if name in functions or not functions:
        return name
    matches = [f for f in functions if f.endswith("-" + name)]
    if len(matches) == 1:
        return matches[0]
    raise _CliError(f"no function {name!r}; the local cloud runs: {', '.join(functions)}")


def _read_event(source: str | None) -> bytes:
    if source is None:
        return b""
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise _CliError(f"cannot read the event file: {exc}") from None


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
        raise _CliError("--sign needs an FC HTTP trigger event (JSON with headers and body)") \
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
        endpoints = _endpoints(args.state_dir)
        function = _function_name(args.function, list(endpoints.get("functions") or []))
        payload = _read_event(args.event)
        if args.sign:
            payload = _signed_http_event(payload, endpoints["webhook_secret"])
    except _CliError as exc:
        print(f"assistflow invoke: {exc}", file=sys.stderr)
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
        return EXIT_FUNCTION_ERROR
    print(f"assistflow invoke: {function}: HTTP {exc.status_code} "
          f"{body.get('ErrorCode', '')}: {body.get('ErrorMessage', exc.message)}", file=sys.stderr)
    return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assistflow", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the local cloud and the functions (foreground)")
    up.add_argument("--state-dir", help="state directory (default $ASSISTFLOW_STATE_DIR or "
                                        ".assistflow)")
    up.add_argument("--template", default=str(Path(__file__).resolve().parents[1] /
                                              "template.yml"), help="template to run")
    up.add_argument("--region", default="cn-hangzhou")
    up.add_argument("--parameter", "-p", action="append", default=[], metavar="NAME=VALUE",
                    help="override a template parameter (repeatable), e.g. "
                         "-p MaintenanceSchedule='@every 30s'")
    up.set_defaults(func=cmd_up)
    invoke = sub.add_parser("invoke", help="run one function once with an event file, "
                                           "against the running local cloud")
    invoke.add_argument("function", metavar="FUNCTION",
                        help="function name (assistflow-collect) or its suffix (collect)")
    invoke.add_argument("--event", "-e", metavar="FILE",
                        help="event file, '-' for stdin (default: an empty payload)")
    invoke.add_argument("--async", dest="async_", action="store_true",
                        help="invoke asynchronously: print the request id and return")
    invoke.add_argument("--sign", action="store_true",
                        help="sign an HTTP event's body with the local webhook secret first")
    invoke.add_argument("--state-dir", help="state directory of the running local cloud")
    invoke.add_argument("--service", default="assistflow",
                        help="FC 2.0 service name in the API path; the local host accepts any")
    invoke.add_argument("--timeout", type=float, default=120,
                        help="seconds to wait for a synchronous result (default 120)")
    invoke.set_defaults(func=cmd_invoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
