"""template.yml as the local host reads it: conditions, string environment values, the queue
triggers' fault tolerance, the TaskCompleted filter — and the product's side of each."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from local.emulators.ecs.events import task_completed
from local.host.delivery_policy import DeliveryPolicy
from local.host.event_bus import check_pattern, matches
from local.host.template import Template, TemplateError
from shared.config import Settings
from shared.deadletter import can_never_succeed
from shared.dispatch import events_reach
from shared.errors import (
    CloudCallError,
    ConfigError,
    IneligibleInstancesError,
    NotAllowedError,
    RequestInvalidError,
    Violation,
)
from shared.events import EventInvalidError
from shared.followup import FollowUpInvalidError
from shared.request import parse_request

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yml"


def _load(**overrides: Any) -> Template:
    return Template.load(TEMPLATE, overrides)


def _env(tpl: Template, function: str) -> dict[str, str]:
    (decl,) = [f for f in tpl.functions() if f.name == function]
    return decl.environment


def _trigger(tpl: Template, name: str) -> dict[str, Any]:
    (decl,) = [t for t in tpl.triggers() if t.name == name]
    return decl.config


# --- Boolean parameters become the strings the functions read ----------------------------------
@pytest.mark.parametrize(("value", "expected"), [(True, "true"), (False, "false"),
                                                 ("true", "true"), ("false", "false")])
def test_completion_events_reaches_every_function_as_true_or_false(value: Any,
                                                                  expected: str) -> None:
    tpl = _load(CompletionEvents=value)  # a -p override on the command line is a string
    for function in tpl.functions():
        assert function.environment["ASSISTFLOW_COMPLETION_EVENTS"] == expected
    assert _trigger(tpl, "task-events")["triggerEnable"] is (expected == "true")
    env = {"FC_REGION": "cn-hangzhou", "ALIBABA_CLOUD_ACCESS_KEY_ID": "k",
           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s", **_env(tpl, "assistflow-submit-http")}
    assert Settings.from_env(env).completion_events is (expected == "true")


def test_the_maintenance_timer_is_off_unless_turned_on() -> None:
    assert _trigger(_load(), "maintenance")["enable"] is False
    assert _trigger(_load(MaintenanceEnabled="true"), "maintenance")["enable"] is True
    with pytest.raises(TemplateError, match="MaintenanceEnabled is Boolean"):
        _load(MaintenanceEnabled="maybe")


def _mini(tmp_path: Path, env_value: str, conditions: str = "") -> Path:
    path = tmp_path / "mini.yml"
    (tmp_path / "code").mkdir(exist_ok=True)
    path.write_text(f"""ROSTemplateFormatVersion: '2015-09-01'
Parameters:
  Flag: {{Type: Boolean, Default: true}}
  Mode: {{Type: String, Default: prod}}
{conditions}
Resources:
  Fn:
    Type: ALIYUN::FC3::Function
    Metadata: {{assistflow: {{CodeDir: code}}}}
    Properties:
      FunctionName: fn
      Handler: index.handler
      Runtime: python3.10
      EnvironmentVariables:
        VALUE: {env_value}
""")
    return path


def test_a_boolean_environment_value_is_refused_as_fc_would(tmp_path: Path) -> None:
    tpl = Template.load(_mini(tmp_path, "{Ref: Flag}"))
    with pytest.raises(TemplateError, match="FC environment values are strings"):
        tpl.functions()


def test_conditions_combine_and_fn_if_picks_a_branch(tmp_path: Path) -> None:
    conditions = """Conditions:
  FlagOn: {'Fn::Equals': [{Ref: Flag}, true]}
  Prod: {'Fn::Equals': [prod, {Ref: Mode}]}
  Both: {'Fn::And': [FlagOn, {Condition: Prod}]}
  Either: {'Fn::Or': [{'Fn::Not': [FlagOn]}, Prod]}"""
    path = _mini(tmp_path, "{'Fn::If': [Both, 'yes', 'no']}", conditions)
    assert Template.load(path).functions()[0].environment["VALUE"] == "yes"
    assert Template.load(path, {"Mode": "dev"}).functions()[0].environment["VALUE"] == "no"
    off = Template.load(path, {"Flag": "false", "Mode": "dev"})
    assert (off.condition("Both"), off.condition("Either")) == (False, True)
    missing = Template.load(_mini(tmp_path, "{'Fn::If': [Nope, 'a', 'b']}", conditions))
    with pytest.raises(TemplateError, match="'Nope' is not declared"):
        missing.functions()


# --- the queue triggers: errors tolerated, dead-lettered; the functions know their DLQ --------
@pytest.mark.parametrize(("trigger", "function", "dlq"), [
    ("requests", "assistflow-submit-queue", "assistflow-requests-dlq"),
    ("followups", "assistflow-collect", "assistflow-followups-dlq"),
])
def test_queue_triggers_tolerate_errors_into_the_queue_the_function_parks_in(
        trigger: str, function: str, dlq: str) -> None:
    tpl = _load()
    policy = DeliveryPolicy.from_run_options(_trigger(tpl, trigger)["runOptions"])
    assert (policy.strategy, policy.tolerate_errors, policy.dead_letter_queue) == \
        ("EXPONENTIAL_DECAY_RETRY", True, dlq)
    assert policy.give_up() == "dead-letter"
    assert _env(tpl, function)["ASSISTFLOW_DEAD_LETTER_QUEUE"] == dlq
    assert dlq in {q.name for q in tpl.queues()}


@pytest.mark.parametrize(("trigger", "function", "dlq", "asynchronous"), [
    ("requests", "assistflow-submit-queue", "assistflow-requests-dlq", False),
    ("dispatch", "assistflow-dispatch", "assistflow-dispatch-dlq", True),
    ("followups", "assistflow-collect", "assistflow-followups-dlq", True),
])
def test_the_fan_out_queues_invoke_asynchronously_and_fail_into_their_dead_letter_queue(
        trigger: str, function: str, dlq: str, asynchronous: bool) -> None:
    # FC 3.0's reading: asyncInvocationType false = asynchronous, so the fan-out's jobs run side
    # by side; what FC's retries give up on reaches the same queue the function parks in.
    tpl = _load()
    assert _trigger(tpl, trigger)["asyncInvocationType"] is (not asynchronous)
    config = tpl.async_configs()[function]
    assert (config.max_retries, config.max_age) == (8, 86400)
    assert config.queue_of(config.on_failure) == dlq == _env(tpl, function)[
        "ASSISTFLOW_DEAD_LETTER_QUEUE"]


@pytest.mark.parametrize(("properties", "complaint"), [
    ("MaxAsyncRetryAttempts: 9", "MaxAsyncRetryAttempts 9 is not within 0-8"),
    ("MaxAsyncEventAgeInSeconds: 0", "MaxAsyncEventAgeInSeconds 0 is not within 1-604800"),
    ("MaxAsyncRetryAttempts: many", "are integers"),
])
def test_an_async_invoke_config_fc_would_refuse_is_refused(tmp_path: Path, properties: str,
                                                           complaint: str) -> None:
    path = _mini(tmp_path, "x")
    path.write_text(path.read_text() + f"""  FnAsync:
    Type: ALIYUN::FC3::AsyncInvokeConfig
    Properties:
      FunctionName: fn
      {properties}
""")
    with pytest.raises(TemplateError, match=complaint):
        Template.load(path).async_configs()


def test_the_role_may_send_to_the_dead_letter_queues_and_write_the_logstore() -> None:
    tpl = _load()
    statements = tpl.resolve(tpl.resources["FunctionRole"]["Properties"]["Policies"][0]
                             ["PolicyDocument"]["Statement"])
    granted = {(action, resource) for s in statements for action in s["Action"]
               for resource in s["Resource"] if s["Effect"] == "Allow"}
    base = "acs:mns:cn-hangzhou:1234567890123456:/queues"
    assert ("mns:SendMessage", f"{base}/assistflow-requests-dlq/messages") in granted
    assert ("mns:SendMessage", f"{base}/assistflow-followups-dlq/messages") in granted
    project = tpl.attributes[("LogProject", "Name")]
    assert ("log:PostLogStoreLogs", "acs:log:cn-hangzhou:1234567890123456:project/"
            f"{project}/logstore/functions") in granted
    for function in tpl.resources.values():
        if function["Type"] == "ALIYUN::FC3::Function":
            assert tpl.resolve(function["Properties"]["LogConfig"]) == {
                "Project": project, "Logstore": "functions", "LogBeginRule": "DefaultRegex"}


# --- the TaskCompleted filter: this deployment's commands only ----------------------------------
def _event(command_name: str) -> dict[str, Any]:
    """The event the ECS emulator publishes when a run of a command called ``command_name`` ends."""
    run = SimpleNamespace(invoke_id="t-1", instance_id="i-1", status="Success", exit_code=0,
                          finished_time="2026-01-01T00:00:01Z", start_time="2026-01-01T00:00:00Z",
                          run=0)
    invocation = SimpleNamespace(command_id="c-1", command_name=command_name, repeat_mode="Once")
    return task_completed(region="cn-hangzhou", account_id="1", time="2026-01-01T00:00:01Z",
                          run=run, invocation=invocation)  # type: ignore[arg-type]


def test_task_completed_pattern_takes_only_commands_named_with_the_prefix() -> None:
    pattern = json.loads(_trigger(_load(), "task-events")["eventRuleFilterPattern"])
    assert matches(pattern, _event("assistflow"))
    assert matches(pattern, _event("assistflow-nightly"))
    assert not matches(pattern, _event("backup-by-another-team"))
    other = json.loads(_trigger(_load(EventsCommandPrefix="ops-"), "task-events")
                       ["eventRuleFilterPattern"])
    assert matches(other, _event("ops-patch")) and not matches(other, _event("assistflow"))


def test_dispatch_expects_events_only_for_what_the_filter_lets_through() -> None:
    settings = Settings.from_env({"FC_REGION": "cn-hangzhou", "ALIBABA_CLOUD_ACCESS_KEY_ID": "k",
                                  "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s",
                                  "ASSISTFLOW_FOLLOWUP_QUEUE": "f",
                                  "ASSISTFLOW_RESULTS_BUCKET": "b"})
    base = {"Type": "RunShellScript", "CommandContent": "true", "InstanceIds": ["i-abcdefgh"]}
    assert events_reach(parse_request(base), settings)  # default Name "assistflow"
    assert events_reach(parse_request({**base, "Name": "assistflow-x"}), settings)
    assert not events_reach(parse_request({**base, "Name": "nightly"}), settings)
    saved = {"CommandId": "c-abcd1234", "InstanceIds": ["i-abcdefgh"]}
    assert not events_reach(parse_request(saved), settings)  # its name is not looked up


# --- what a queue function parks ----------------------------------------------------------------
@pytest.mark.parametrize(("error", "parked"), [
    (RequestInvalidError([Violation("$", "type", "not an object")]), True),
    (NotAllowedError("no", []), True),
    (IneligibleInstancesError("stopped", []), True),
    (EventInvalidError("not an MNS event"), True),
    (FollowUpInvalidError("not a follow-up"), True),
    (CloudCallError("PutObject", "AccessDenied", "the role may not write there"), True),
    (CloudCallError("InvokeCommand", "Throttling.User", "slow down", transient=True), False),
    (CloudCallError("SendMessage", "InternalError", "try again", transient=True), False),
    (ConfigError("ASSISTFLOW_FOLLOWUP_QUEUE is not set"), False),
    (KeyError("a bug"), False),
])
def test_only_what_retrying_cannot_fix_is_parked(error: BaseException, parked: bool) -> None:
    assert can_never_succeed(error) is parked


def test_patterns_match_as_eventbridge_documents_them() -> None:
    event = _event("assistflow-x")
    assert matches({}, event)
    assert matches({"data": {"commandName": [{"suffix": "-x"}], "instanceId": ["i-1", "i-2"]}},
                   event)
    assert not matches({"data": {"commandName": ["assistflow"]}}, event)  # exact, not prefix
    assert not matches({"data": {"missing": [{"anything-but": "y"}]}}, event)  # field must exist
    assert matches({"source": [{"anything-but": ["acs.oss", "acs.mns"]}]}, event)


@pytest.mark.parametrize("bad", [
    {"data": {"commandName": [{"contains": "flow"}]}},  # nested: refused too
    {"type": [{"numeric": [">", 0]}]},
    {"type": "ecs:CloudAssistant:TaskCompleted"},
])
def test_a_pattern_the_bus_cannot_evaluate_is_refused_at_start(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        check_pattern(bad)
