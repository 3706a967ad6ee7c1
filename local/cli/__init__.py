"""The ``assistflow`` command.

Against the running local cloud by default (``$ASSISTFLOW_STATE_DIR/endpoints.json``, default
``.assistflow/``), against Alibaba Cloud with ``--region`` and the ``ALIBABA_CLOUD_ACCESS_KEY_ID``
/ ``_SECRET`` (+ ``_SECURITY_TOKEN``) variables.

- ``up`` / ``invoke`` / ``events``: run the local cloud, one function, list canonical events;
- ``submit`` / ``results``: send a command request (http, queue or direct) and read results;
- ``invocations`` / ``commands``: Cloud Assistant's Describe/Stop/Modify/Delete APIs;
- ``check-template`` / ``package``: check template.yml offline; zip the functions for FC.

Human output by default, ``--json`` for scripts; the exit codes are in ``assistflow --help``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from local.cli import localcloud, manage, tools
from local.cli.common import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_USAGE,
    CliError,
    add_cloud_options,
    cloud_error,
    say,
)
from local.cli.localcloud import cmd_invoke, cmd_up
from local.cli.localcloud import parameters as _parameters

EXIT_FUNCTION_ERROR = EXIT_FAILED  # `invoke`: the function ran and failed

__all__ = ["EXIT_FUNCTION_ERROR", "EXIT_USAGE", "_parameters", "build_parser", "cmd_invoke",
           "cmd_up", "main"]

DESCRIPTION = ("Run Cloud Assistant commands on fleets of ECS instances through the assistflow "
               "functions — on the local cloud or on Alibaba Cloud — and check, package and "
               "run those functions.")
EPILOG = EXIT_CODES_HELP + """
cloud:
  default  the local cloud of `assistflow up` ($ASSISTFLOW_STATE_DIR/endpoints.json)
  --region Alibaba Cloud, with ALIBABA_CLOUD_ACCESS_KEY_ID / _SECRET (+ _SECURITY_TOKEN) and,
           as needed, --results-bucket, --account-id (MNS), --webhook-url and
           ASSISTFLOW_WEBHOOK_SECRET
"""


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("werkzeug", "oss2", "aliyunsdkcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


def _configure_up_logging(args: argparse.Namespace) -> None:
    # `up` narrates what the local cloud does (the functions' logs, each invocation).
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.INFO)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assistflow", description=DESCRIPTION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cloud = argparse.ArgumentParser(add_help=False)
    add_cloud_options(cloud)
    cloud.add_argument("--json", action="store_true", help="machine-readable output")

    up = sub.add_parser("up", help="start the local cloud and the functions (foreground)")
    up.add_argument("--state-dir", help="state directory (default $ASSISTFLOW_STATE_DIR or "
                                        ".assistflow)")
    up.add_argument("--template", default=str(tools.DEFAULT_TEMPLATE), help="template to run")
    up.add_argument("--region", default="cn-hangzhou")
    up.add_argument("--parameter", "-p", action="append", default=[], metavar="NAME=VALUE",
                    help="override a template parameter (repeatable), e.g. "
                         "-p MaintenanceSchedule='@every 30s'")
    up.add_argument("--profile", help="how fast and strict the local cloud is: fast (default, "
                                      "or $ASSISTFLOW_PROFILE), realistic, or a profile file")
    up.set_defaults(func=cmd_up, setup=_configure_up_logging)

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

    events = sub.add_parser("events", help="list the canonical FC events of events/, or print "
                                           "one (like `sam local generate-event`)")
    events.add_argument("name", nargs="?", metavar="NAME", help="e.g. timer, http-submit")
    events.add_argument("--json", action="store_true", help="the list as JSON")
    events.set_defaults(func=localcloud.cmd_events)

    submit = sub.add_parser("submit", parents=[cloud], help="send a command request and "
                                                            "print its InvokeIds")
    submit.add_argument("file", metavar="FILE", help="the command request (JSON), '-' for stdin")
    submit.add_argument("--via", choices=("http", "queue", "direct"), default="http",
                        help="http: signed webhook POST (default); queue: SendMessage to the "
                             "request queue; direct: shared.intake in this process")
    submit.add_argument("--wait", action="store_true",
                        help="show progress until the request summary is stored, then a "
                             "per-instance table (exit 1 if any instance failed or never "
                             "started)")
    submit.add_argument("--wait-timeout", type=float, metavar="SECONDS",
                        help="give up waiting after this long (default: Timeout + 240 s)")
    submit.add_argument("--tag", action="append", metavar="KEY=VALUE",
                        help="select the instances carrying this tag (repeatable: every tag "
                             "must match) instead of InstanceIds in the file")
    submit.add_argument("--resource-group", metavar="ID",
                        help="select the instances of this resource group (rg-…) instead of "
                             "InstanceIds in the file")
    submit.add_argument("--dry-run", action="store_true",
                        help="DryRun: each target's pre-flight verdict and the plan; nothing "
                             "is created (http and direct only)")
    submit.add_argument("--max-concurrency", metavar="N|N%",
                        help="RateControl.MaxConcurrency: at most this many instances at once")
    submit.add_argument("--max-errors", metavar="N|N%",
                        help="RateControl.MaxErrors: start no more instances once more than "
                             "this many have failed")
    submit.set_defaults(func=_lazy("local.cli.submit", "cmd_submit"))

    results = sub.add_parser("results", parents=[cloud], help="read an invocation's or a "
                                                              "request's results from OSS")
    results.add_argument("invoke_id", metavar="INVOKE_ID|REQUEST_ID",
                         help="t-… (one invocation) or r-… (a request: every batch and wave)")
    results.add_argument("--instance", metavar="ID", help="one instance: result.json and its "
                                                          "whole output")
    results.add_argument("--bucket", help="results bucket, if the request's Output named one")
    results.add_argument("--prefix", help="results prefix, if the request's Output named one")
    results.add_argument("--report", action="store_true",
                         help="print a URL that opens the invocation's report.html (locally "
                              "the dashboard's; with --presign, or on Alibaba Cloud, a "
                              "presigned OSS URL)")
    results.add_argument("--presign", action="store_true",
                         help="with --report locally: the local OSS's presigned URL instead")
    results.add_argument("--expires", type=int, default=3600, metavar="SECONDS",
                         help="how long a presigned --report URL is valid (default 3600)")
    results.add_argument("--domain", default="", metavar="URL",
                         help="with --report: a custom domain bound to the bucket "
                              "(https://…), where OSS lets a browser display HTML")
    results.set_defaults(func=_lazy("local.cli.results", "cmd_results"))

    manage.add_parsers(sub, cloud)
    tools.add_parsers(sub)
    return parser


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """A subcommand whose module is imported only when it runs."""
    def run(args: argparse.Namespace) -> int:
        import importlib

        return int(getattr(importlib.import_module(module), name)(args))

    return run


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    if hasattr(args, "setup"):
        args.setup(args)
    command = " ".join(filter(None, [args.command, getattr(args, "action", None)]))
    try:
        return int(args.func(args))
    except CliError as exc:
        say(f"assistflow {command}: {exc.message}", sys.stderr)
        for detail in getattr(exc, "details", []):
            say(f"  {detail}", sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"assistflow {command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        from shared.errors import AssistflowError

        if isinstance(exc, AssistflowError):
            error = cloud_error(exc)
            say(f"assistflow {command}: {error.message}", sys.stderr)
            return error.code
        raise


if __name__ == "__main__":
    sys.exit(main())

