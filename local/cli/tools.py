"""``assistflow check-template`` and ``assistflow package``: before deploying.

Both import their machinery only when run (the check starts the ROS CDK's Node.js process;
packaging runs pip), so no other subcommand pays for them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from local.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, emit_json, say, table

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yml"


def _template(path: str | None) -> Path:
    template = Path(path) if path else DEFAULT_TEMPLATE
    if not template.is_file():
        raise CliError(f"no template at {template}")
    return template


def cmd_check_template(args: argparse.Namespace) -> int:
    from local.tools.template_check import CheckUnavailable, check

    template = _template(args.file)
    try:
        report = check(template)
    except CheckUnavailable as exc:
        raise CliError(str(exc)) from None
    name = args.file or template.name
    if args.json:
        emit_json({"Template": str(template), "Problems": [
            {"Where": p.where, "Message": p.message} for p in report.problems],
            "Checked": report.checked})
        return EXIT_FAILED if report.problems else EXIT_OK
    for problem in report.problems:
        say(f"{name}: {problem}")
    counts = ", ".join(f"{n} {section.lower()}" for section, n in report.checked.items())
    count = len(report.problems)
    say(f"{name}: {count} problem{'s' * (count != 1)} ({counts or 'nothing'} replayed through "
        "the ROS CDK; trigger configs through the FC 3.0 SDK)",
        sys.stderr if report.problems else sys.stdout)
    return EXIT_FAILED if report.problems else EXIT_OK


def cmd_package(args: argparse.Namespace) -> int:
    from local.tools.package import PackagingError, build

    template = _template(args.template)
    out = Path(args.out)
    progress = sys.stderr if args.json else sys.stdout
    try:
        packages, notes = build(template, out, Path(args.cache_dir) if args.cache_dir else None,
                                args.python_version, say=lambda m: say(m, progress))
    except PackagingError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if args.json:
        emit_json({"Packages": [p.to_dict() for p in packages], "Notes": notes})
        return EXIT_OK
    for note in notes:
        say(f"note: {note}")
    table([[p.function.logical_id, str(p.path), f"{p.size / 1e6:.1f} MB", p.files,
            f"oss://<CodeBucket>/{p.function.object_name}"] for p in packages],
          ["FUNCTION", "ZIP", "SIZE", "FILES", "UPLOAD AS"])
    say(f"upload each zip under its OssObjectName to the bucket you pass as the CodeBucket "
        f"parameter, e.g. `aliyun oss cp {packages[0].path} "
        f"oss://$CODE_BUCKET/{packages[0].function.object_name}`")
    return EXIT_OK


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check-template", help="check template.yml offline with the ROS CDK "
                                              "and the FC 3.0 SDK (exit 1 on any problem)")
    p.add_argument("file", nargs="?", metavar="FILE", help="template (default template.yml)")
    p.add_argument("--json", action="store_true", help="problems as JSON")
    p.set_defaults(func=cmd_check_template)
    p = sub.add_parser("package", help="build one zip per function for Function Compute")
    p.add_argument("--out", default="dist", help="directory for the zips (default dist/)")
    p.add_argument("--template", help="template (default template.yml)")
    p.add_argument("--cache-dir", help="wheel cache (default $ASSISTFLOW_CACHE_DIR or "
                                       "~/.cache/assistflow)")
    p.add_argument("--python-version", default="3.10",
                   help="Python of the FC runtime the wheels are for (default 3.10)")
    p.add_argument("--json", action="store_true", help="the packages as JSON")
    p.set_defaults(func=cmd_package)
