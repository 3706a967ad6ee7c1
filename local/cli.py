"""The ``assistflow`` command.

``assistflow up`` starts the local cloud in the foreground (what ``make run`` calls); Ctrl-C
stops it. State lives in ``$ASSISTFLOW_STATE_DIR`` (default ``.assistflow/``) and survives a
restart.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from local.state import state_dir


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


def cmd_up(args: argparse.Namespace) -> int:
    from local.cloud import LocalCloud, Ports

    directory = state_dir(args.state_dir)
    cloud = LocalCloud(directory, template=Path(args.template).resolve(), ports=Ports.from_env(),
                       region=args.region)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    endpoints = cloud.start()
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
    up.set_defaults(func=cmd_up)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
