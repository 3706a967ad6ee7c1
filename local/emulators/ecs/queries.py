"""The read side of the Cloud Assistant model: commands, invocations and their records.

A *record* is what DescribeInvocationResults lists: without history, one per (invocation,
instance) — the target's status with its latest run's output; with history, one per run.
Records are plain dicts with the model's own keys; the handlers name them as the API does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from local.emulators.ecs import rules
from local.emulators.ecs.errors import InvalidCmdIdNotFound, InvalidInvokeIdNotFound

if TYPE_CHECKING:
    from local.emulators.ecs.inventory import Instance
    from local.emulators.ecs.store import Store

_RUN_COLUMNS = ("r.run, r.exit_code, r.output, r.dropped, r.error_code, r.error_info,"
                " r.start_time, r.finished_time")


def _glob(pattern: str) -> tuple[str, str]:
    """DescribeCommands' ``x*``, ``*x``, ``*x*`` wildcards as an SQL condition."""
    return ("GLOB ?", pattern) if "*" in pattern else ("= ?", pattern)


class Queries:
    """Mixed into ``CloudAssistant``: every read the handlers make."""

    store: Store
    instances: dict[str, Instance]

    # --- commands ------------------------------------------------------------------------
    def command_row(self, command_id: str, include_unkept: bool = False) -> Any:
        """A retained command; RunCommand's own (KeepCommand=false) only for its run."""
        row = self.store.one("SELECT * FROM commands WHERE command_id = ? AND keep >= ?",
                             (command_id, 0 if include_unkept else 1))
        if row is None:
            raise InvalidCmdIdNotFound(command_id=command_id)
        return row

    def list_commands(self, command_id: str = "", name: str = "", type_: str = "",
                      description: str = "") -> list[Any]:
        sql, args = "SELECT * FROM commands WHERE keep = 1", []
        for column, value in (("command_id", command_id), ("name", name), ("type", type_),
                              ("description", description)):
            if value:
                op, arg = _glob(value) if column in ("name", "description") else ("= ?", value)
                sql += f" AND {column} {op}"
                args.append(arg)
        return self.store.query(sql + " ORDER BY seq DESC", args)

    # --- invocations ---------------------------------------------------------------------
    def invocation_row(self, invoke_id: str) -> Any:
        row = self.store.one("SELECT * FROM invocations WHERE invoke_id = ?", (invoke_id,))
        if row is None:
            raise InvalidInvokeIdNotFound(invoke_id=invoke_id)
        return row

    def list_invocations(self, invoke_id: str = "", command_id: str = "", instance_id: str = "",
                         command_name: str = "", command_type: str = "", repeat_mode: str = "",
                         timed: bool | None = None) -> list[Any]:
        sql, args = "SELECT * FROM invocations WHERE 1=1", []
        for column, value in (("invoke_id", invoke_id), ("command_id", command_id),
                              ("command_name", command_name), ("command_type", command_type),
                              ("repeat_mode", repeat_mode)):
            if value:
                sql += f" AND {column} = ?"
                args.append(value)
        if instance_id:
            sql += " AND invoke_id IN (SELECT invoke_id FROM targets WHERE instance_id = ?)"
            args.append(instance_id)
        if timed is not None:
            sql += " AND repeat_mode " + ("!= 'Once'" if timed else "= 'Once'")
        return self.store.query(sql + " ORDER BY seq DESC", args)

    def records(self, invoke_id: str = "", instance_id: str = "", command_id: str = "",
                include_history: bool = False) -> list[dict[str, Any]]:
        """Per-instance records, newest invocation first, then by instance and run."""
        where, args = "", []
        for column, value in (("t.invoke_id", invoke_id), ("t.instance_id", instance_id),
                              ("i.command_id", command_id)):
            if value:
                where += f" AND {column} = ?"
                args.append(value)
        base = ("SELECT t.invoke_id, t.instance_id, i.command_id, i.repeat_mode, t.status AS"
                " target_status, t.repeats, t.creation_time, t.update_time, t.stop_time, i.seq")
        if include_history:
            rows = self.store.query(
                f"{base}, r.status, {_RUN_COLUMNS}, r.stop_time AS run_stop_time,"
                " r.update_time AS run_update_time FROM targets t JOIN invocations i"
                " USING (invoke_id) JOIN results r ON r.invoke_id = t.invoke_id"
                f" AND r.instance_id = t.instance_id WHERE 1=1{where}"
                " ORDER BY i.seq DESC, t.instance_id, r.run", args)
            out = [self._record(r, history=True) for r in rows]
            seen = {(r["invoke_id"], r["instance_id"]) for r in out}
            # targets that have not run yet still show, as Scheduled
            for rec in self.records(invoke_id, instance_id, command_id):
                if (rec["invoke_id"], rec["instance_id"]) not in seen:
                    out.append(rec)
            return out
        rows = self.store.query(
            f"{base}, t.status, {_RUN_COLUMNS} FROM targets t JOIN invocations i"
            " USING (invoke_id) LEFT JOIN results r ON r.invoke_id = t.invoke_id"
            f" AND r.instance_id = t.instance_id AND r.run = t.repeats WHERE 1=1{where}"
            " ORDER BY i.seq DESC, t.instance_id", args)
        return [self._record(r, history=False) for r in rows]

    @staticmethod
    def _record(row: Any, history: bool) -> dict[str, Any]:
        rec = {key: row[key] for key in row.keys()}  # noqa: SIM118 (sqlite3.Row)
        rec["output"] = bytes(rec["output"] or b"")
        rec["dropped"] = rec["dropped"] or 0
        for key in ("error_code", "error_info", "start_time", "finished_time"):
            rec[key] = rec[key] or ""
        if history:
            rec["repeats"] = rec["run"]
            rec["stop_time"] = rec.pop("run_stop_time")
            rec["update_time"] = rec.pop("run_update_time")
        return rec

    def instance_activity(self, instance_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Per instance: runs in flight, runs ever, last invocation time (CloudAssistantStatus)."""
        if not instance_ids:
            return {}
        marks = ",".join("?" * len(instance_ids))
        rows = self.store.query(
            "SELECT instance_id, COUNT(*) AS runs, MAX(creation_time) AS last,"
            " SUM(status IN ('Pending', 'Running', 'Stopping')) AS active"
            f" FROM results WHERE instance_id IN ({marks}) GROUP BY instance_id", instance_ids)
        return {r["instance_id"]: {"runs": r["runs"], "last": r["last"] or "",
                                   "active": r["active"] or 0} for r in rows}

    def final_runs(self, keys: list[tuple[str, str, int]]) -> list[Any]:
        """The runs among ``keys`` that reached a final status, with their invocation's
        command id, name and repeat mode (what a TaskCompleted event carries)."""
        rows = []
        for key in keys:
            row = self.store.one(
                "SELECT r.*, i.command_id, i.command_name, i.repeat_mode FROM results r"
                " JOIN invocations i USING (invoke_id)"
                " WHERE r.invoke_id = ? AND r.instance_id = ? AND r.run = ?", key)
            if row is not None and row["status"] in rules.TERMINAL:
                rows.append(row)
        return rows
