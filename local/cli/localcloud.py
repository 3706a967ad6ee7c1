"""``assistflow up``, ``invoke`` and ``events``: the local cloud and its functions.

``up`` starts the local cloud in the foreground (what ``make run`` calls); Ctrl-C stops it.
``--profile`` (or ``ASSISTFLOW_PROFILE``) picks how fast and strict it is (``local.profile``).
``invoke FUNCTION --event FILE`` runs one function once through Function Compute's invoke API
(``local.fc_client``) — like ``sam local invoke``. ``events`` lists or prints the canonical
events of ``events/`` — like ``sam local generate-event``.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
from pathlib import Path

from local.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    CliError,
    emit_json,
    load_endpoints,
    printable,
    say,
    table,
)
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
    from local.profile import Profile, ProfileError

    directory = state_dir(args.state_dir)
    try:
        profile = Profile.resolve(getattr(args, "profile", None))
    except ProfileError as exc:
        print(f"assistflow up: --profile: {exc}", file=sys.stderr)
        return EXIT_USAGE
    cloud = LocalCloud(directory, template=Path(args.template).resolve(), ports=Ports.from_env(),
                       region=args.region, parameters=parameters(args.parameter),
                       profile=profile)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        endpoints = cloud.start()
    except TemplateError as exc:
        print(f"assistflow up: {args.template}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"assistflow local cloud is up; endpoints in {cloud.endpoints_path}", flush=True)
    print(f"  webhook   {endpoints['webhook_url']}", flush=True)
    print(f"  dashboard {endpoints['dashboard_url']}", flush=True)
    print(f"  ecs {endpoints['ecs']}  mns {endpoints['mns']}  oss {endpoints['oss']}", flush=True)
    print(f"  instances {', '.join(endpoints['instances'])}", flush=True)
    print(f"  profile   {profile.name}" + (f" — {profile.description}" if profile.description
                                          else ""), flush=True)
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


def cmd_invoke(args: argparse.Namespace) -> int:
    from local.fc_client import FunctionCompute
    from shared.errors import CloudCallError

    try:
        endpoints = load_endpoints(args.state_dir, probe="fc", remote_hint=False)
        function = _function_name(args.function, list(endpoints.get("functions") or []))
        payload = _read_event(args.event)
        if args.sign:
            payload = _signed_http_event(payload, endpoints["webhook_secret"])
    except CliError as exc:
        say(f"assistflow invoke: {exc.message}", sys.stderr)
        return EXIT_USAGE
    fc = FunctionCompute(endpoints["fc"], endpoints["access_key_id"],
                         endpoints["access_key_secret"], timeout=args.timeout)
    try:
        invoked = fc.invoke(args.service, function, payload, asynchronous=args.async_)
    except CloudCallError as exc:
        reason = ("the local cloud did not answer: " if exc.error_code == "NetworkError"
                  else "") + exc.message
        say(f"assistflow invoke: {function}: {reason}", sys.stderr)
        return EXIT_USAGE
    if invoked.failed:
        say(f"assistflow invoke: {function} failed: {invoked.error_type}: "
            f"{invoked.error_message} (request {invoked.request_id})", sys.stderr)
        return EXIT_FAILED
    if args.async_:
        print(invoked.request_id, flush=True)
        print(f"{function}: accepted for asynchronous invocation; its logs are in the "
              "`assistflow up` output", file=sys.stderr)
        return 0
    data = printable(invoked.data.decode("utf-8", errors="replace"))
    sys.stdout.write(data if data.endswith("\n") or not data else data + "\n")
    sys.stdout.flush()
    print(f"{function}: ok in {invoked.duration_ms} ms, request {invoked.request_id}",
          file=sys.stderr)
    return 0


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
