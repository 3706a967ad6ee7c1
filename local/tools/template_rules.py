"""Template checks beyond the ROS CDK's: references, and what is inside a ``TriggerConfig``.

ROS types ``TriggerConfig`` as a free-form map ("ALIYUN::FC3::Trigger",
https://www.alibabacloud.com/help/en/ros/developer-reference/aliyun-fc3-trigger), so each one
round-trips through the FC 3.0 SDK's model of its ``TriggerType`` (``alibabacloud-fc20230330``:
``Model().from_map(config).to_map()`` drops the keys the model does not know). ``Ref`` /
``Fn::GetAtt`` / ``Fn::Sub`` must name a parameter, a resource or an attribute its CDK class
declares; ``Fn::If`` and ``Condition`` must name an entry of ``Conditions`` ("Fn::If",
https://www.alibabacloud.com/help/en/ros/user-guide/function-if).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from local.tools.template_base import Problem, diff, is_intrinsic, section, suggest

SECTIONS = {"ROSTemplateFormatVersion", "Description", "Metadata", "Parameters", "Mappings",
            "Conditions", "Rules", "Resources", "Outputs", "Locals", "Transform", "Workspace"}

# FC 3.0 TriggerType -> the SDK model of its triggerConfig ("" = no model to check it against).
TRIGGER_MODELS = {"timer": "TimerTriggerConfig", "http": "HTTPTriggerConfig",
                  "eventbridge": "EventBridgeTriggerConfig", "mns_topic": "MNSTopicTriggerConfig",
                  "oss": "OSSTriggerConfig", "log": "SLSTriggerConfig",
                  "cdn_events": "CDNTriggerConfig", "tablestore": ""}


def check_sections(template: dict[str, Any]) -> list[Problem]:
    problems = [Problem(str(k), "unknown template section" + suggest(str(k), sorted(SECTIONS)))
                for k in template if k not in SECTIONS]
    if str(template.get("ROSTemplateFormatVersion")) != "2015-09-01":
        problems.append(Problem("ROSTemplateFormatVersion", "must be '2015-09-01'"))
    if not isinstance(template.get("Resources"), dict) or not template["Resources"]:
        problems.append(Problem("Resources", "the template declares no resources"))
    return problems


def attributes(cls: type) -> list[str]:
    """The ``Fn::GetAtt`` attribute names a CDK L1 class declares (``ARN.WithSlash``, …)."""
    names = []
    for member, value in inspect.getmembers(cls):
        if member.startswith("attr_"):
            found = re.search(r"Attribute:?\s*([\w.]+):", getattr(value, "__doc__", "") or "")
            if found:
                names.append(found.group(1))
    return names


def check_references(template: dict[str, Any], classes: dict[str, type]) -> list[Problem]:
    parameters = set(section(template, "Parameters"))
    resources = set(section(template, "Resources"))
    conditions = set(section(template, "Conditions"))
    problems: list[Problem] = []
    cache: dict[str, list[str]] = {}

    def known(name: str, local: set[str]) -> bool:
        return name in parameters or name in resources or name in local \
            or name.startswith("ALIYUN::")

    def visit(value: Any, where: str, local: set[str]) -> None:
        if isinstance(value, list):
            for n, item in enumerate(value):
                visit(item, f"{where}[{n}]", local)
            return
        if not isinstance(value, dict):
            return
        if "Ref" in value and len(value) == 1 and isinstance(value["Ref"], str):
            if not known(value["Ref"], local):
                problems.append(Problem(where, f"Ref {value['Ref']!r} names no parameter or "
                                               "resource of this template"))
            return
        if "Fn::GetAtt" in value and len(value) == 1 and isinstance(value["Fn::GetAtt"], list):
            target, *rest = value["Fn::GetAtt"] + [""]
            if target not in resources:
                problems.append(Problem(where, f"Fn::GetAtt names {target!r}, which is not a "
                                               "resource of this template"))
            elif target in classes and isinstance(rest[0], str):
                names = cache.setdefault(target, attributes(classes[target]))
                if names and rest[0] not in names:
                    problems.append(Problem(where, f"{target} has no attribute {rest[0]!r}"
                                                   + suggest(rest[0], names)))
            return
        named = value.get("Fn::If", [None])[0] if isinstance(value.get("Fn::If"), list) \
            else value.get("Condition") if isinstance(value.get("Condition"), str) else None
        if len(value) == 1 and named is not None and named not in conditions:
            problems.append(Problem(where, f"condition {named!r} is not declared in Conditions"
                                    + suggest(str(named), sorted(conditions))))
        if "Fn::Sub" in value and len(value) == 1:
            sub = value["Fn::Sub"]
            text, variables = (sub[0], sub[1]) if isinstance(sub, list) and len(sub) == 2 \
                else (sub, {})
            defined = set(variables) if isinstance(variables, dict) else set()
            for ref in re.findall(r"\$\{([^!}][^}]*)\}", text if isinstance(text, str) else ""):
                base = ref if ref.startswith("ALIYUN::") else ref.split(".", 1)[0]
                if not known(base, local | defined):
                    problems.append(Problem(where, f"Fn::Sub refers to ${{{ref}}}, which names "
                                                   "no parameter or resource"))
            visit(variables, where, local)
            return
        for key, item in value.items():
            visit(item, f"{where}.{key}", local)

    for name, decl in section(template, "Resources").items():
        if isinstance(decl, dict):
            visit(decl.get("Properties"), f"Resources.{name}.Properties", set())
    for name, decl in section(template, "Outputs").items():
        visit(decl, f"Outputs.{name}", set())
    for name, decl in section(template, "Conditions").items():
        visit(decl, f"Conditions.{name}", set())
    return problems


def check_trigger_configs(template: dict[str, Any]) -> list[Problem]:
    from alibabacloud_fc20230330 import models

    problems: list[Problem] = []
    for name, decl in section(template, "Resources").items():
        if not isinstance(decl, dict) or decl.get("Type") != "ALIYUN::FC3::Trigger":
            continue
        props = decl.get("Properties") or {}
        where = f"Resources.{name}.Properties"
        kind, config = props.get("TriggerType"), props.get("TriggerConfig")
        if is_intrinsic(kind) or kind is None:
            continue
        if kind not in TRIGGER_MODELS:
            problems.append(Problem(f"{where}.TriggerType", f"unknown trigger type {kind!r}"
                                    + suggest(str(kind), sorted(TRIGGER_MODELS))))
            continue
        if not TRIGGER_MODELS[kind] or not isinstance(config, dict) or is_intrinsic(config):
            continue
        model = getattr(models, TRIGGER_MODELS[kind])
        round_trip = model().from_map(config).to_map()
        for problem in diff(config, round_trip, f"{where}.TriggerConfig"):
            if problem.message.startswith("dropped"):
                key = problem.where.rsplit(".", 1)[-1]
                known = re.findall(r"result\['(\w+)'\]", inspect.getsource(model.to_map))
                hint = suggest(key, known) if problem.where.count(".") == \
                    f"{where}.TriggerConfig".count(".") + 1 else ""
                problems.append(Problem(problem.where, f"unknown key for TriggerType {kind} "
                                        f"(FC 3.0 {model.__name__} drops it){hint}"))
            else:
                problems.append(Problem(problem.where, f"{problem.message} ({model.__name__})"))
    return problems
