"""Offline check of a ROS template (``template.yml``) with Alibaba's own tools.

No offline validator knows ``ALIYUN::FC3::*`` except Alibaba's ROS CDK: ``fun validate`` (npm
``@alicloud/fun`` 3.6.24) and the published ROS resource specification (npm
``@alicloud/ros-cdk-spec`` 1.0.13) have no FC3 types, and ROS ``ValidateTemplate`` is an online
API call, while ``ros-cdk-fc3`` 1.15.0 (https://pypi.org/project/ros-cdk-fc3/1.15.0/) ships
the ``RosFunction`` / ``RosTrigger`` classes. So the template is *replayed* through the CDK:
every parameter, resource and output is constructed with its L1 classes —
``ros_cdk_<service>.Ros<Name>`` with its ``Ros<Name>Props`` and, for nested structs, the CDK's
``...Property`` classes (a plain dict would be passed on as a map and its unknown keys silently
dropped: ``code={"ossBucketNam": ...}`` synthesizes ``Code: {}``) — with intrinsic functions as
tokens, in a stack with ``enable_resource_property_constraint``.
Each element is synthesized in its own app, so every broken one is reported, not just the
first, and the synthesized template is compared with the input: anything the CDK dropped or
changed is a problem. The CDK checks names, required properties, types, ranges and allowed
values.

Beyond it (``template_rules``): each ``TriggerConfig`` (a free-form map for ROS) round-trips
through the FC 3.0 SDK's model of its ``TriggerType`` (``alibabacloud-fc20230330``), which
drops unknown keys; ``Ref`` / ``Fn::GetAtt`` / ``Fn::Sub`` must name a parameter, a resource or
one of its attributes (as the CDK class declares them). Not checked offline: ``Runtime``
values, quotas, and whether ROS accepts the combination — that needs ROS ``ValidateTemplate``
online.

Importing this module is cheap; :func:`check` starts the CDK's Node.js process (about a second).
Nothing but ``assistflow check-template`` (and its tests) imports it.
"""

from __future__ import annotations

import collections.abc
import importlib
import os
import re
import tempfile
import typing
from pathlib import Path
from typing import Any

from local.tools.template_base import (
    Invalid,
    Problem,
    Report,
    diff,
    is_intrinsic,
    load,
    ros_name,
    section,
    suggest,
)
from local.tools.template_rules import check_references, check_sections, check_trigger_configs

# jsii prints a large banner on stderr when Node.js is past its end of life (Node 20 here);
# only this exact acknowledgement sentence, jsii's own, silences it.
NODE_EOL_ACK = ("Node14 is now end of life (EOL) as of April 30, 2023. Support of EOL runtimes are "
                "only guaranteed for 30 days after EOL. By silencing this warning you acknowledge "
                "that you are using an EOL version of Node and will upgrade to a supported "
                "version as soon as possible.")
# The same banner for a Node.js newer than jsii 1.85 knows (CI may have one): any value silences.
NODE_BANNERS = {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": NODE_EOL_ACK,
                "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1",
                "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}

RESOURCE_KEYS = {"Type", "Properties", "Metadata", "DependsOn", "Condition", "DeletionPolicy",
                 "Count", "Description"}


# What replaying one named entry gives: the CDK class, its keyword arguments, and the
# dict its synthesized form must equal.
ReplayedEntry = tuple[Any, dict[str, Any], dict[str, Any]]
NamedReplay = collections.abc.Callable[[str, dict[str, Any], str], ReplayedEntry]


class CheckUnavailable(Exception):
    """The check cannot run here (no ROS CDK installed, no ``node``); says what to install."""


def _options(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint) if typing.get_origin(hint) is typing.Union else (hint,)


def _is_struct(hint: Any) -> bool:
    return isinstance(hint, type) and hasattr(hint, "__jsii_name_mapping__")


class _Replay:
    """Builds CDK objects from template data; one throw-away app per element."""

    def __init__(self, outdir: str) -> None:
        for name, value in NODE_BANNERS.items():
            os.environ.setdefault(name, value)
        try:
            import ros_cdk_core
        except ImportError as exc:
            raise CheckUnavailable(f"the ROS CDK is not installed ({exc.name}); run "
                                   "`pip install -e '.[dev]'`") from None
        except Exception as exc:  # jsii could not start node
            raise CheckUnavailable(f"the ROS CDK could not start Node.js ({exc}); install "
                                   "node (>= 18) and put it on PATH") from None
        self.core = ros_cdk_core
        self.outdir = outdir
        self.apps = 0

    # -- values -----------------------------------------------------------------------------

    def value(self, value: Any, hint: Any, where: str) -> Any:
        if is_intrinsic(value):
            return self.core.Token.as_any(value)
        options = _options(hint)
        if isinstance(value, dict):
            struct = next((t for t in options if _is_struct(t)), None)
            return value if struct is None else self.struct(struct, value, where)
        if isinstance(value, list):
            for option in options:
                if typing.get_origin(option) in (list, collections.abc.Sequence):
                    (item,) = typing.get_args(option) or (Any,)
                    problems: list[Problem] = []
                    out = []
                    for n, element in enumerate(value):
                        try:
                            out.append(self.value(element, item, f"{where}[{n}]"))
                        except Invalid as exc:
                            problems.extend(exc.problems)
                    if problems:
                        raise Invalid(problems)
                    return out
        return value

    def struct(self, cls: type, data: dict[str, Any], where: str, owner: str = "",
               renames: dict[str, str] | None = None, skip: frozenset[str] = frozenset()) -> Any:
        """``cls(**kwargs)`` from ROS-named ``data``; every unknown or missing name reported."""
        mapping: dict[str, str] = cls.__jsii_name_mapping__  # type: ignore[attr-defined]
        by_name = {jsii.lower(): py for py, jsii in mapping.items()}
        by_name.update({k.lower(): v for k, v in (renames or {}).items()})
        known = [ros_name(j) for j in mapping.values()] + list(renames or {})
        hints = typing.get_type_hints(cls.__init__)  # type: ignore[misc]
        owner = owner or cls.__qualname__.replace("Property", "").replace("Ros", "", 1)
        kwargs: dict[str, Any] = {}
        problems: list[Problem] = []
        for key, value in data.items():
            if key in skip:
                continue
            py = by_name.get(str(key).lower())
            if py is None:
                problems.append(Problem(f"{where}.{key}", f"unknown property of {owner}"
                                        + suggest(str(key), known)))
                continue
            try:
                kwargs[py] = self.value(value, hints.get(py, Any), f"{where}.{key}")
            except Invalid as exc:
                problems.extend(exc.problems)
        if problems:
            raise Invalid(problems)
        try:
            return cls(**kwargs)
        except TypeError as exc:
            missing = re.findall(r"'(\w+)'", str(exc)) if "missing" in str(exc) else []
            if missing:
                raise Invalid([Problem(f"{where}.{ros_name(mapping.get(m, m))}",
                                        f"required property of {owner} is missing")
                                for m in missing]) from None
            raise Invalid([Problem(where, str(exc))]) from None

    # -- elements ---------------------------------------------------------------------------

    def synthesize(self, build: typing.Callable[[Any], None], where: str) -> dict[str, Any]:
        """Run ``build(stack)`` in a fresh app and return the synthesized template."""
        self.apps += 1
        app = self.core.App(outdir=os.path.join(self.outdir, str(self.apps)))
        stack = self.core.Stack(app, "Check", enable_resource_property_constraint=True)
        try:
            build(stack)
            template: dict[str, Any] = app.synth().get_stack_by_name("Check").template
        except Invalid:
            raise
        except Exception as exc:  # jsii relays the CDK's own error as RuntimeError/JSIIError
            raise Invalid(cdk_problems(str(exc), where)) from None
        return template

    def resource_class(self, rtype: str) -> tuple[type, type]:
        match = re.fullmatch(r"ALIYUN::(\w+)::(\w+)", rtype)
        if not match:
            raise Invalid([Problem("Type", f"{rtype!r} is not an ALIYUN::<Service>::<Name> "
                                            "resource type")])
        service, name = match.groups()
        try:
            module = importlib.import_module(f"ros_cdk_{service.lower()}")
        except ImportError:
            raise Invalid([Problem("Type", f"no ROS CDK package knows {rtype}: add "
                                            f"ros-cdk-{service.lower()} (pinned like the others) "
                                            "to the dev extra")]) from None
        cls, props = getattr(module, f"Ros{name}", None), getattr(module, f"Ros{name}Props", None)
        if cls is None or props is None or rtype != cls.ROS_RESOURCE_TYPE_NAME:
            types = [c.ROS_RESOURCE_TYPE_NAME for n, c in vars(module).items()
                     if n.startswith("Ros") and hasattr(c, "ROS_RESOURCE_TYPE_NAME")]
            raise Invalid([Problem("Type", f"unknown resource type {rtype}"
                                            + suggest(rtype, types))])
        return cls, props


def cdk_problems(message: str, where: str) -> list[Problem]:
    """The CDK's error text as problems naming the property (it names it in camelCase)."""
    text = message.split("\nObject creation stack:", 1)[0].split("\n    at ", 1)[0]
    text = re.sub(r"^(Error: )?(Resolution error: )?", "", text.strip())
    lines = text.splitlines()
    if lines and lines[0].startswith("Supplied properties not correct"):
        found = [re.match(r"\s*(\w+): (.*)", line) for line in lines[1:]]
        problems = [Problem(f"{where}.{ros_name(m.group(1))}", m.group(2).strip())
                    for m in found if m]
        if problems:
            return problems
    keys = re.findall(r"Key '(\w+)': Unable to deserialize value as ([^\n]+)", text)
    if keys:  # jsii's type check: a tree of the union members it tried
        expected = re.sub(r"@alicloud/ros-cdk-\w+\.", "", keys[-1][1]).replace(" | undefined", "")
        failing = re.findall(r"Failing value is (an? \w+)\n[│ ]*([^\n]*)", text)
        got = f", got {failing[-1][0]} ({failing[-1][1].strip()})" if failing else ""
        return [Problem(f"{where}." + ".".join(ros_name(k) for k, _ in keys),
                        f"wrong type: expected {expected}{got}")]
    return [Problem(where, lines[0] if lines else message)]


def _parameter_type(value: Any, core: Any, where: str) -> Any:
    """``String`` -> ``RosParameterType.STRING``, ``CommaDelimitedList`` -> ``COMMA_DELIMITED_LIST``."""
    try:
        return core.RosParameterType[re.sub(r"(?<!^)(?=[A-Z])", "_", str(value)).upper()]
    except KeyError:
        allowed = [ros_name(re.sub(r"_(\w)", lambda m: m.group(1).upper(), t.value.lower()))
                   for t in core.RosParameterType]
        raise Invalid([Problem(where, f"unknown parameter type {value!r}"
                                + suggest(str(value), allowed))]) from None


def check(path: Path) -> Report:
    """Replay ``path`` through the ROS CDK and the FC SDK; every problem found."""
    report = Report()
    try:
        template = load(path)
    except Invalid as exc:
        report.problems.extend(exc.problems)
        return report
    except Exception as exc:  # YAML syntax
        report.problems.append(Problem("(template)", f"cannot be read as YAML: {exc}"))
        return report
    with tempfile.TemporaryDirectory(prefix="assistflow-check-") as outdir:
        replay = _Replay(outdir)
        report.problems.extend(check_sections(template))
        report.problems.extend(_check_parameters(replay, template, report))
        classes = _check_resources(replay, template, report)
        report.problems.extend(_check_outputs(replay, template, report))
        report.problems.extend(check_references(template, classes))
        report.problems.extend(check_trigger_configs(template))
    return report


def _check_named(replay: _Replay, template: dict[str, Any], report: Report, kind: str,
                 shape: str, replay_one: NamedReplay) -> list[Problem]:
    """Replay each entry of the ``Parameters`` or ``Outputs`` section alone and compare.

    ``replay_one(name, decl, where)`` gives the CDK class of the entry, its keyword arguments
    and what its synthesized form must equal; an ``Invalid`` it raises is reported.
    """
    problems: list[Problem] = []
    for name, decl in section(template, kind).items():
        where = f"{kind}.{name}"
        report.checked[kind] = report.checked.get(kind, 0) + 1
        try:
            if not isinstance(decl, dict):
                raise Invalid([Problem(where, shape)])
            cls, kwargs, expected = replay_one(name, decl, where)

            def build(stack: Any, c: Any = cls, n: str = name,
                      kw: dict[str, Any] = kwargs) -> None:
                c(stack, n, **kw)

            built = replay.synthesize(build, where)
            problems.extend(diff(expected, built.get(kind, {}).get(name, {}), where))
        except Invalid as exc:
            problems.extend(exc.problems)
    return problems


def _check_parameters(replay: _Replay, template: dict[str, Any], report: Report) -> list[Problem]:
    core = replay.core

    def parameter(name: str, decl: dict[str, Any], where: str) -> ReplayedEntry:
        props = replay.struct(core.RosParameterProps, decl, where, owner="a parameter",
                              renames={"Default": "default_value"}, skip=frozenset({"Type"}))
        kwargs = dict(props._values)
        if "Type" in decl:
            kwargs["type"] = _parameter_type(decl["Type"], core, f"{where}.Type")
        return core.RosParameter, kwargs, decl

    return _check_named(replay, template, report, "Parameters",
                        "must be a mapping (Type, Default, …)", parameter)


def _check_resources(replay: _Replay, template: dict[str, Any],
                     report: Report) -> dict[str, type]:
    classes: dict[str, type] = {}
    problems: list[Problem] = []
    resources = section(template, "Resources")
    for logical_id, decl in resources.items():
        where = f"Resources.{logical_id}"
        report.checked["Resources"] = report.checked.get("Resources", 0) + 1
        if not isinstance(decl, dict) or "Type" not in decl:
            problems.append(Problem(where, "must be a mapping with a Type"))
            continue
        problems.extend(Problem(f"{where}.{k}", "unknown resource attribute"
                                + suggest(str(k), sorted(RESOURCE_KEYS)))
                        for k in decl if k not in RESOURCE_KEYS)
        depends = decl.get("DependsOn") or []
        problems.extend(Problem(f"{where}.DependsOn", f"{target!r} is not a resource of this "
                                                      "template")
                        for target in ([depends] if isinstance(depends, str) else depends)
                        if target not in resources)
        try:
            cls, props_cls = replay.resource_class(str(decl["Type"]))
        except Invalid as exc:
            problems.extend(Problem(f"{where}.{p.where}", p.message) for p in exc.problems)
            continue
        classes[logical_id] = cls
        properties = decl.get("Properties") or {}
        metadata = decl.get("Metadata") or {}
        try:
            props = replay.struct(props_cls, properties, f"{where}.Properties",
                                  owner=str(decl["Type"]))

            def build(stack: Any, c: type = cls, i: str = logical_id, p: Any = props,
                      m: dict[str, Any] = metadata) -> None:
                resource = c(stack, i, p, True)
                for key, value in m.items():
                    resource.add_meta_data(key, value)

            built = replay.synthesize(build, f"{where}.Properties")
        except Invalid as exc:
            problems.extend(exc.problems)
            continue
        synthesized = built["Resources"][logical_id]
        expected = {"Type": decl["Type"], "Properties": properties}
        if metadata:
            expected["Metadata"] = metadata
        problems.extend(diff(expected, synthesized, where))
    report.problems.extend(problems)
    return classes


def _check_outputs(replay: _Replay, template: dict[str, Any], report: Report) -> list[Problem]:
    core = replay.core

    def output(name: str, decl: dict[str, Any], where: str) -> ReplayedEntry:
        props = replay.struct(core.RosOutputProps, decl, where, owner="an output",
                              skip=frozenset({"Condition"}))
        expected = {k: v for k, v in decl.items() if k != "Condition"}
        return core.RosOutput, dict(props._values), expected

    return _check_named(replay, template, report, "Outputs", "must be a mapping with a Value",
                        output)
