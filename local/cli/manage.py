"""``assistflow invocations …`` and ``assistflow commands …``: Cloud Assistant, by hand.

The seed's other APIs — DescribeInvocations, StopInvocation, DescribeCommands, ModifyCommand,
DeleteCommand — on whichever cloud the CLI talks to, with tables for people and ``--json``
(the API's own records) for scripts.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from local.cli.common import (
    EXIT_OK,
    CliError,
    cloud_error,
    decode,
    emit_json,
    instances_of,
    say,
    table,
    target,
)

if TYPE_CHECKING:
    from shared.clients import CloudAssistant


def _client(args: argparse.Namespace) -> CloudAssistant:
    return target(args).clients.ecs


def _call(operation: Any) -> Any:
    from shared.errors import AssistflowError

    try:
        return operation()
    except AssistflowError as exc:
        raise cloud_error(exc) from None


def cmd_invocations_list(args: argparse.Namespace) -> int:
    client = _client(args)
    found = _call(lambda: client.describe_invocations(
        instance_id=args.instance or "", command_id=args.command_id or "",
        status=args.status or "", limit=args.limit))
    if args.json:
        emit_json(found)
        return EXIT_OK
    table([[r.get("InvokeId"), r.get("CommandName"), r.get("CommandType"),
            r.get("InvocationStatus"), len(instances_of(r)), r.get("CreationTime")]
           for r in found], ["INVOKE ID", "COMMAND", "TYPE", "STATUS", "INSTANCES", "CREATED"])
    return EXIT_OK


def cmd_invocations_show(args: argparse.Namespace) -> int:
    client = _client(args)
    record = _call(lambda: client.invocation(args.invoke_id, include_output=args.output))
    if args.json:
        emit_json(record)
        return EXIT_OK
    say(f"{record['InvokeId']}  {record.get('InvocationStatus')}  command "
        f"{record.get('CommandId')} ({record.get('CommandName')}, {record.get('CommandType')})"
        f"  created {record.get('CreationTime')}  timeout {record.get('Timeout')}s")
    instances = instances_of(record)
    table([[i.get("InstanceId"), i.get("InvocationStatus"), i.get("ExitCode"),
            i.get("StartTime"), i.get("FinishTime"), i.get("ErrorCode")]
           for i in instances], ["INSTANCE", "STATUS", "EXIT", "STARTED", "FINISHED", "ERROR"])
    if args.output:
        for item in instances:
            say(f"--- {item.get('InstanceId')} output")
            text = decode(str(item.get("Output", "")))
            if text:
                say(text.rstrip("\n"))
    return EXIT_OK


def cmd_invocations_stop(args: argparse.Namespace) -> int:
    client = _client(args)
    _call(lambda: client.stop_invocation(args.invoke_id, args.instance or []))
    record = _call(lambda: client.invocation(args.invoke_id))
    if args.json:
        emit_json(record)
        return EXIT_OK
    which = ", ".join(args.instance) if args.instance else "every instance"
    say(f"stop requested for {args.invoke_id} on {which}; now "
        f"{record.get('InvocationStatus')} (running scripts report Terminated once killed)")
    return EXIT_OK


def cmd_commands_list(args: argparse.Namespace) -> int:
    client = _client(args)
    found = _call(lambda: client.describe_commands(name=args.name or "", type_=args.type or "",
                                                   limit=args.limit))
    if args.json:
        emit_json(found)
        return EXIT_OK
    table([[c.get("CommandId"), c.get("Name"), c.get("Type"), c.get("Timeout"),
            c.get("InvokeTimes"), c.get("CreationTime")] for c in found],
          ["COMMAND ID", "NAME", "TYPE", "TIMEOUT", "INVOKED", "CREATED"])
    return EXIT_OK


def _command(client: CloudAssistant, command_id: str) -> dict[str, Any]:
    return dict(_call(lambda: client.describe_command(command_id)))


def _show_command(command: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(command)
        return
    table([[k, command.get(k)] for k in ("CommandId", "Name", "Type", "Description",
                                         "WorkingDir", "Timeout", "EnableParameter",
                                         "InvokeTimes", "CreationTime")], ["FIELD", "VALUE"])
    say("--- content")
    say(decode(str(command.get("CommandContent", ""))).rstrip("\n"))


def cmd_commands_show(args: argparse.Namespace) -> int:
    _show_command(_command(_client(args), args.command_id), args.json)
    return EXIT_OK


def cmd_commands_modify(args: argparse.Namespace) -> int:
    changes = {k: v for k, v in (("name", args.name), ("description", args.description),
                                 ("timeout", args.timeout), ("working_dir", args.working_dir))
               if v is not None}
    if not changes:
        raise CliError("nothing to modify: give --name, --description, --timeout or "
                       "--working-dir")
    client = _client(args)
    _call(lambda: client.modify_command(args.command_id, **changes))
    _show_command(_command(client, args.command_id), args.json)
    return EXIT_OK


def cmd_commands_delete(args: argparse.Namespace) -> int:
    client = _client(args)
    _call(lambda: client.delete_command(args.command_id))
    if args.json:
        emit_json({"CommandId": args.command_id, "Deleted": True})
    else:
        say(f"deleted {args.command_id}")
    return EXIT_OK


def add_parsers(sub: Any, cloud: argparse.ArgumentParser) -> None:
    """The ``invocations`` and ``commands`` subcommand trees."""
    inv = sub.add_parser("invocations", help="list, show or stop invocations "
                                             "(DescribeInvocations, StopInvocation)")
    inv_sub = inv.add_subparsers(dest="action", required=True)
    p = inv_sub.add_parser("list", parents=[cloud], help="recent invocations, newest first")
    p.add_argument("--instance", help="only invocations on this instance")
    p.add_argument("--command-id", help="only invocations of this command")
    p.add_argument("--status", help="only this InvokeStatus (Running, Finished, Failed, …)")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    p.set_defaults(func=cmd_invocations_list)
    p = inv_sub.add_parser("show", parents=[cloud], help="one invocation, per instance")
    p.add_argument("invoke_id", metavar="INVOKE_ID")
    p.add_argument("--output", action="store_true", help="include each instance's output")
    p.set_defaults(func=cmd_invocations_show)
    p = inv_sub.add_parser("stop", parents=[cloud], help="stop a running invocation")
    p.add_argument("invoke_id", metavar="INVOKE_ID")
    p.add_argument("--instance", action="append", metavar="ID",
                   help="only on this instance (repeatable; default: all)")
    p.set_defaults(func=cmd_invocations_stop)

    cmd = sub.add_parser("commands", help="list, show, modify or delete saved commands "
                                          "(DescribeCommands, ModifyCommand, DeleteCommand)")
    cmd_sub = cmd.add_subparsers(dest="action", required=True)
    p = cmd_sub.add_parser("list", parents=[cloud], help="saved commands, newest first")
    p.add_argument("--name", help="only commands with this name")
    p.add_argument("--type", help="only this Type (RunShellScript, …)")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    p.set_defaults(func=cmd_commands_list)
    p = cmd_sub.add_parser("show", parents=[cloud], help="one command, with its script")
    p.add_argument("command_id", metavar="ID")
    p.set_defaults(func=cmd_commands_show)
    p = cmd_sub.add_parser("modify", parents=[cloud], help="change a command's name, "
                                                           "description, timeout or directory")
    p.add_argument("command_id", metavar="ID")
    p.add_argument("--name")
    p.add_argument("--description")
    p.add_argument("--timeout", type=int, help="seconds")
    p.add_argument("--working-dir")
    p.set_defaults(func=cmd_commands_modify)
    p = cmd_sub.add_parser("delete", parents=[cloud], help="delete a saved command")
    p.add_argument("command_id", metavar="ID")
    p.set_defaults(func=cmd_commands_delete)
