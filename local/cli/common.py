"""What every ``assistflow`` subcommand shares: exit codes, errors, where the cloud is, output.

The cloud is the local one by default — ``$ASSISTFLOW_STATE_DIR/endpoints.json`` (default
``.assistflow/``) says where everything is — or real Alibaba Cloud with ``--region`` and the
``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``_SECRET`` (+ ``_SECURITY_TOKEN``) variables. Either way the
result is one ``shared.config.Settings`` and ``shared.clients.Clients``: the same code paths the
functions use serve both clouds.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from local.state import DEFAULT_STATE_DIR, STATE_DIR_ENV

if TYPE_CHECKING:
    from shared.clients import Clients
    from shared.config import Settings

EXIT_OK = 0
EXIT_FAILED = 1  # some instances failed, or the function failed
EXIT_USAGE = 2  # usage or environment: bad flags, no local cloud, missing credentials
EXIT_INVALID = 3  # the command request is invalid (400)
EXIT_REFUSED = 4  # refused: 401/403/413/415/422, or the cloud said no (unknown id, …)
EXIT_CLOUD = 5  # cloud error: 5xx, throttling, network — trying again later may help

EXIT_CODES_HELP = """\
exit codes:
  0  ok
  1  some instances failed (or the function failed)
  2  usage or environment: bad flags, no local cloud running, missing credentials
  3  invalid command request (400): every violation is printed
  4  refused: 401/403/413/415/422, or the cloud said no (unknown id, ineligible instance)
  5  cloud error: 5xx, throttling or network; trying again later may help
"""

DEFAULT_PREFIX = "assistflow"  # the template's Prefix parameter


class CliError(Exception):
    """One line that says what went wrong and what to do, and the exit code that goes with it."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def code_for_status(status: int) -> int:
    """The exit code of an HTTP-ish status (the webhook's, or an ``AssistflowError``'s)."""
    if status < 400:
        return EXIT_OK
    if status == 400:
        return EXIT_INVALID
    if status >= 500:
        return EXIT_CLOUD
    return EXIT_REFUSED


def cloud_error(exc: Exception) -> CliError:
    """A ``shared`` error (``CloudCallError``, ``ConfigError``, …) as a one-line CLI error."""
    from shared.errors import AssistflowError, CloudCallError, ConfigError

    if isinstance(exc, ConfigError):
        return CliError(exc.message, EXIT_USAGE)
    if isinstance(exc, CloudCallError):
        hint = "; try again later" if exc.transient else ""
        return CliError(exc.message + hint, EXIT_CLOUD if exc.transient else EXIT_REFUSED)
    if isinstance(exc, AssistflowError):
        return CliError(f"{exc.code}: {exc.message}", code_for_status(exc.status))
    return CliError(str(exc), EXIT_CLOUD)


def add_cloud_options(parser: argparse.ArgumentParser) -> None:
    """Where the cloud is: the local one (default) or Alibaba Cloud (``--region``)."""
    group = parser.add_argument_group(
        "cloud", "default: the running local cloud; --region: Alibaba Cloud with the "
                 "ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET (+ _SECURITY_TOKEN) variables")
    group.add_argument("--state-dir", help="state directory of the local cloud (default "
                                           "$ASSISTFLOW_STATE_DIR or .assistflow)")
    group.add_argument("--region", help="use Alibaba Cloud in this region, e.g. cn-hangzhou")
    group.add_argument("--account-id", help="Alibaba Cloud account id, for MNS "
                                            "(default $ALIBABA_CLOUD_ACCOUNT_ID)")
    group.add_argument("--results-bucket", help="results bucket (default "
                                                "$ASSISTFLOW_RESULTS_BUCKET; the stack's "
                                                "ResultsBucket output)")
    group.add_argument("--results-prefix", help="results key prefix (default results)")
    group.add_argument("--request-queue", help=f"request queue (default {DEFAULT_PREFIX}-requests)")
    group.add_argument("--followup-queue",
                       help=f"follow-up queue (default {DEFAULT_PREFIX}-followups)")
    group.add_argument("--webhook-url", help="webhook URL (default $ASSISTFLOW_WEBHOOK_URL; the "
                                             "stack's WebhookUrl output); its secret is read "
                                             "from $ASSISTFLOW_WEBHOOK_SECRET")


@dataclass
class Target:
    """One cloud: settings for ``shared``, plus what only a sender needs."""

    settings: Settings
    local: bool
    description: str
    webhook_url: str = ""
    webhook_secret: str = field(default="", repr=False)
    request_queue: str = ""
    _clients: Clients | None = field(default=None, repr=False)

    @property
    def clients(self) -> Clients:
        if self._clients is None:
            from shared.clients import Clients

            self._clients = Clients(self.settings)
        return self._clients

    def need_results_bucket(self) -> None:
        if not self.settings.results_bucket:
            raise CliError("which results bucket? pass --results-bucket or set "
                           "ASSISTFLOW_RESULTS_BUCKET (the stack's ResultsBucket output)")


def endpoints_file(explicit: str | None) -> Path:
    # Resolved without creating the directory: a command must not leave an empty state dir.
    directory = Path(explicit or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)
    return directory.expanduser().resolve() / "endpoints.json"


def load_endpoints(explicit: str | None, probe: str = "ecs",
                   remote_hint: bool = True) -> dict[str, Any]:
    """``endpoints.json`` of the running local cloud; ``CliError`` if none answers."""
    path = endpoints_file(explicit)
    if not path.exists():
        raise CliError(f"no local cloud is running (no {path}); start one with `assistflow up`"
                       + (" or pass --region for Alibaba Cloud" if remote_hint else ""))
    endpoints: dict[str, Any] = json.loads(path.read_text())
    if not endpoints.get(probe):
        raise CliError(f"{path} has no {probe!r} endpoint: the running local cloud is older "
                       "than this command; restart it")
    url = urlsplit(endpoints[probe])
    try:  # SDKs retry refused connections for a long time; a stale file should fail fast
        socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=2).close()
    except OSError:
        raise CliError(f"the local cloud at {endpoints[probe]} does not answer (stale {path}?); "
                       "start it with `assistflow up`") from None
    return endpoints


def target(args: argparse.Namespace) -> Target:
    """The cloud the command talks to (see the module docstring)."""
    from shared.config import Credentials, Settings

    env = os.environ
    prefix = (getattr(args, "results_prefix", None) or env.get("ASSISTFLOW_RESULTS_PREFIX")
              or "").strip("/")
    if getattr(args, "region", None):
        key_id = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID", "")
        secret = env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "")
        if not key_id or not secret:
            raise CliError("--region talks to Alibaba Cloud: set ALIBABA_CLOUD_ACCESS_KEY_ID and "
                           "ALIBABA_CLOUD_ACCESS_KEY_SECRET (+ ALIBABA_CLOUD_SECURITY_TOKEN for "
                           "STS credentials)")
        region = args.region
        account = (args.account_id or env.get("ALIBABA_CLOUD_ACCOUNT_ID")
                   or env.get("ASSISTFLOW_ACCOUNT_ID", ""))
        settings = Settings(
            region=region,
            credentials=Credentials(key_id, secret, env.get("ALIBABA_CLOUD_SECURITY_TOKEN", "")),
            followup_queue=args.followup_queue or env.get("ASSISTFLOW_FOLLOWUP_QUEUE")
            or f"{DEFAULT_PREFIX}-followups",
            results_bucket=args.results_bucket or env.get("ASSISTFLOW_RESULTS_BUCKET", ""),
            results_prefix=prefix or "results",
            account_id=account,
            webhook_secret=env.get("ASSISTFLOW_WEBHOOK_SECRET", ""),
            # empty: the public endpoints shared.config derives (the CLI runs outside a VPC)
            mns_endpoint=env.get("ASSISTFLOW_MNS_ENDPOINT", ""),
            oss_endpoint=env.get("ASSISTFLOW_OSS_ENDPOINT", ""),
            allowed_instances=_split(env.get("ASSISTFLOW_ALLOWED_INSTANCES", "")),
            allowed_types=_split(env.get("ASSISTFLOW_ALLOWED_TYPES", "")),
            allowed_commands=_split(env.get("ASSISTFLOW_ALLOWED_COMMANDS", "")),
            allowed_regions=_split(env.get("ASSISTFLOW_ALLOWED_REGIONS", "")),
            notify_prefix=env.get("ASSISTFLOW_NOTIFY_PREFIX") or f"{DEFAULT_PREFIX}-notify",
            notify_allowed_hosts=_split(env.get("ASSISTFLOW_NOTIFY_ALLOWED_HOSTS", "")),
            dispatch_queue=env.get("ASSISTFLOW_DISPATCH_QUEUE") or f"{DEFAULT_PREFIX}-dispatch",
        )
        return Target(settings, False, f"Alibaba Cloud {region}",
                      webhook_url=args.webhook_url or env.get("ASSISTFLOW_WEBHOOK_URL", ""),
                      webhook_secret=settings.webhook_secret,
                      request_queue=args.request_queue or env.get("ASSISTFLOW_REQUEST_QUEUE")
                      or f"{DEFAULT_PREFIX}-requests")
    e = load_endpoints(getattr(args, "state_dir", None))
    settings = local_settings(
        e, followup_queue=getattr(args, "followup_queue", None) or e["followup_queue"],
        results_bucket=getattr(args, "results_bucket", None) or e["results_bucket"],
        results_prefix=prefix or e.get("results_prefix") or "results",
        account_id=e.get("account_id", ""), webhook_secret=e["webhook_secret"],
        ecs_endpoint=e["ecs"], mns_endpoint=e["mns"], oss_endpoint=e["oss"],
        notify_prefix=env.get("ASSISTFLOW_NOTIFY_PREFIX") or f"{DEFAULT_PREFIX}-notify",
        # as the local cloud's functions have it (local.cloud): receivers on 127.0.0.1 only
        notify_allowed_hosts=_split(env.get("ASSISTFLOW_NOTIFY_ALLOWED_HOSTS") or "127.0.0.1"),
        dispatch_queue=e.get("dispatch_queue", ""),
    )
    return Target(settings, True, f"local cloud ({e['state_dir']})",
                  webhook_url=getattr(args, "webhook_url", None) or e["webhook_url"],
                  webhook_secret=e["webhook_secret"],
                  request_queue=getattr(args, "request_queue", None) or e.get("request_queue", ""))


def local_settings(e: dict[str, Any], **overrides: Any) -> Settings:
    """Settings for the local cloud of ``endpoints.json`` ``e``, with the owner's keys (the
    CLI's and the dashboard's, ``local.dashboard``)."""
    from shared.config import Credentials, Settings

    env = os.environ
    values: dict[str, Any] = {
        "region": e["region"], "credentials": Credentials(e["access_key_id"],
                                                          e["access_key_secret"]),
        "followup_queue": e["followup_queue"], "results_bucket": e["results_bucket"],
        "results_prefix": e.get("results_prefix") or "results",
        "account_id": e.get("account_id", ""), "webhook_secret": e["webhook_secret"],
        "ecs_endpoint": e["ecs"], "mns_endpoint": e["mns"], "oss_endpoint": e["oss"],
        "notify_prefix": env.get("ASSISTFLOW_NOTIFY_PREFIX") or f"{DEFAULT_PREFIX}-notify",
        # as the local cloud's functions have it (local.cloud): receivers on 127.0.0.1 only
        "notify_allowed_hosts": _split(env.get("ASSISTFLOW_NOTIFY_ALLOWED_HOSTS")
                                       or "127.0.0.1"),
    }
    return Settings(**(values | overrides))


def _split(value: str) -> tuple[str, ...]:
    return tuple(item for item in value.replace(",", " ").split() if item)


# -- Cloud Assistant's records --------------------------------------------------------------------

def instances_of(invocation: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-instance records of one DescribeInvocations ``Invocation``."""
    return list((invocation.get("InvokeInstances") or {}).get("InvokeInstance") or [])


def decode(content: str) -> str:
    """A Base64 ``CommandContent`` / ``Output`` as text (as-is if it is not Base64)."""
    try:
        return base64.b64decode(content or "", validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return content or ""


# -- output -------------------------------------------------------------------------------------
#
# Everything the CLI prints passes ``printable``: command names, descriptions and scripts,
# instance output, the cloud's error messages — strings anyone with access to the account (or
# a script's output) controls. A terminal obeys escape sequences in them: colours are the least
# of it (OSC 52 writes the clipboard, OSC 0 the window title, CSI 2J clears the screen, a CR
# overwrites what was printed), and Unicode's bidirectional overrides reorder what is shown
# ("Trojan Source", CVE-2021-42574). So C0 controls but newline and tab, DEL, C1 controls and
# those overrides are shown as escapes (``\x1b``), never sent. ``--json`` keeps every value,
# escaped as JSON.

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: Any) -> str:
    """``text`` safe to print to a terminal (see above)."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def emit_json(data: Any, stream: IO[str] | None = None) -> None:
    out = stream or sys.stdout
    text = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    # json.dumps escapes C0 controls itself; DEL, C1 and the overrides it leaves as they are
    out.write(_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n")
    out.flush()


def table(rows: list[list[Any]], headers: list[str], stream: IO[str] | None = None,
          indent: str = "") -> None:
    """Aligned columns: readable in a terminal, greppable in a pipe."""
    out = stream or sys.stdout
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for row in [headers, *cells]:
        out.write(indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                  .rstrip() + "\n")
    out.flush()


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    return " ".join(printable(value).split())


def say(message: str, stream: IO[str] | None = None) -> None:
    """One message, made ``printable``."""
    out = stream or sys.stdout
    out.write(printable(message) + "\n")
    out.flush()
