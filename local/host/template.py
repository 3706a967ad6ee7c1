"""Read ``template.yml`` (ROS) into what the local host runs: functions, triggers, queues, buckets.

Resolves ``Parameters`` (defaults, overridable locally; a ``Boolean`` one becomes a boolean,
as ROS passes it), the pseudo parameters (``ALIYUN::Region``, ``ALIYUN::AccountId``, …),
``Conditions`` (``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or``, ``Condition``), ``Ref``,
``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``, ``Fn::If`` and ``Fn::MemberListToMap`` for the
resource types the host knows.
Attributes that only exist once the host runs (an HTTP trigger's URL) are resolved from the
``attributes`` the host supplies. Some types are declared but not run locally: the Simple Log
Service project, logstore and index of the functions' ``LogConfig`` (the host keeps function
logs in its own log). ``ALIYUN::FC3::AsyncInvokeConfig`` is read by ``async_configs()``: its
retries, event age and MNS-queue ``OnFailure`` / ``OnSuccess`` destinations shape the host's
asynchronous invocations of that function (``local.host.async_invoke``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from local.ram import Policy, PolicyError

SUPPORTED = {
    "ALIYUN::FC3::Function", "ALIYUN::FC3::Trigger", "ALIYUN::MNS::Queue",
    "ALIYUN::MNS::Topic", "ALIYUN::OSS::Bucket", "ALIYUN::RAM::Role",
    "ALIYUN::RAM::ManagedPolicy",
    # declared, not run locally (see the module docstring)
    "ALIYUN::SLS::Project", "ALIYUN::SLS::Logstore", "ALIYUN::SLS::Index",
    "ALIYUN::FC3::AsyncInvokeConfig",
}

# An MNS-queue destination of an asynchronous invocation (FC's "Destinations for asynchronous
# invocations": acs:mns:<region>:<account>:/queues/<name>/messages).
_MNS_DESTINATION = re.compile(r"^acs:mns:[^:]*:[^:]*:/queues/([^/]+)/messages$")


def truthy(value: Any, default: bool = True) -> bool:
    """A ROS Boolean: YAML booleans, or the strings a parameter override may carry."""
    if value is None:
        return default
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no", ""):
            return False
        raise ValueError(f"{value!r} is not a boolean")
    return bool(value)


class TemplateError(ValueError):
    """The template cannot be run locally; the message names the resource and the problem."""


_ENV_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
ENV_LIMIT_BYTES = 4096


def _check_environment(logical_id: str, env: dict[str, Any]) -> None:
    """FC's rules for EnvironmentVariables — names start with a letter and use letters, digits
    and ``_``, the ``FC_`` prefix is reserved, 4 KB in all ("Environment variables",
    https://www.alibabacloud.com/help/en/functioncompute/fc/environment-variables) — so a
    template that FC would refuse fails here too instead of only on deployment."""
    for key in env:
        if not _ENV_NAME.match(str(key)):
            raise TemplateError(f"function {logical_id}: environment variable {key!r} must "
                                "start with a letter and use only letters, digits and _")
        if str(key).upper().startswith("FC_"):
            raise TemplateError(f"function {logical_id}: environment variable {key!r}: the "
                                "FC_ prefix is reserved for Function Compute's own variables")
    for key, value in env.items():
        if isinstance(value, bool):
            raise TemplateError(f"function {logical_id}: environment variable {key} is the "
                                f"boolean {value}; FC environment values are strings — turn a "
                                "Boolean parameter into one with Fn::If [Condition, 'true', "
                                "'false']")
    size = sum(len(str(k)) + len("" if v is None else str(v)) for k, v in env.items())
    if size > ENV_LIMIT_BYTES:
        raise TemplateError(f"function {logical_id}: environment variables total {size} "
                            f"bytes; FC allows {ENV_LIMIT_BYTES}")


@dataclass(frozen=True)
class QueueDecl:
    logical_id: str
    name: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class FunctionDecl:
    logical_id: str
    name: str
    handler: str
    runtime: str
    code_dir: Path
    timeout: int
    memory: int
    environment: dict[str, str]
    role: str = ""  # the Role's ARN (acs:ram::<account>:role/<name>); '' when it has none


@dataclass(frozen=True)
class AsyncConfigDecl:
    """A function's ``ALIYUN::FC3::AsyncInvokeConfig``; ``None`` fields keep FC's defaults."""

    logical_id: str
    function: str
    max_retries: int | None = None  # MaxAsyncRetryAttempts
    max_age: int | None = None  # MaxAsyncEventAgeInSeconds
    on_failure: str = ""  # Destination ARN of DestinationConfig.OnFailure ('' for none)
    on_success: str = ""  # likewise OnSuccess

    @staticmethod
    def queue_of(destination: str) -> str | None:
        """The MNS queue a destination ARN names, ``None`` when it is not an MNS queue."""
        found = _MNS_DESTINATION.match(destination)
        return found.group(1) if found else None


@dataclass(frozen=True)
class TriggerDecl:
    logical_id: str
    name: str
    function: str
    type: str
    config: dict[str, Any]

    @property
    def kind(self) -> str:
        """What the host runs it as: the ``TriggerType``, and for an ``eventbridge`` trigger its
        ``eventSourceConfig.eventSourceType`` too (``eventbridge:MNS``, ``eventbridge:Default``)."""
        if self.type != "eventbridge":
            return self.type
        source = (self.config.get("eventSourceConfig") or {}).get("eventSourceType")
        return f"eventbridge:{source or 'Default'}"


@dataclass
class Template:
    path: Path
    region: str
    account_id: str
    parameters: dict[str, Any]
    resources: dict[str, dict[str, Any]]
    outputs: dict[str, Any]
    attributes: dict[tuple[str, str], Any] = field(default_factory=dict)
    conditions: dict[str, Any] = field(default_factory=dict)

    # --- loading --------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path, overrides: Mapping[str, Any] | None = None,
             region: str = "cn-hangzhou", account_id: str = "1234567890123456") -> Template:
        doc = yaml.safe_load(path.read_text())
        if not isinstance(doc, dict) or doc.get("ROSTemplateFormatVersion") != "2015-09-01":
            raise TemplateError(f"{path}: not a ROS template (ROSTemplateFormatVersion "
                                "'2015-09-01' missing)")
        declared = doc.get("Parameters") or {}
        overrides = dict(overrides or {})
        unknown = set(overrides) - set(declared)
        if unknown:
            raise TemplateError(f"unknown parameter override(s) {sorted(unknown)}; the template "
                                f"declares {sorted(declared)}")
        params: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in overrides:
                params[name] = overrides[name]
            elif "Default" in spec:
                params[name] = spec["Default"]
            else:
                raise TemplateError(f"parameter {name} has no Default; pass a value for it")
            if spec.get("Type") == "Boolean":
                try:
                    params[name] = truthy(params[name], default=False)
                except ValueError as exc:
                    raise TemplateError(f"parameter {name} is Boolean: {exc}") from None
        resources = doc.get("Resources") or {}
        for logical_id, res in resources.items():
            if res.get("Type") not in SUPPORTED:
                raise TemplateError(f"resource {logical_id}: type {res.get('Type')!r} is not "
                                    f"run locally (supported: {', '.join(sorted(SUPPORTED))})")
        tpl = cls(path, region, account_id, params, resources, doc.get("Outputs") or {},
                  conditions=doc.get("Conditions") or {})
        tpl._name_resources()
        return tpl

    def _name_resources(self) -> None:
        """Physical names, so ``Ref`` / ``Fn::GetAtt`` of names resolve before anything runs."""
        name_props = {"ALIYUN::FC3::Function": "FunctionName", "ALIYUN::MNS::Queue": "QueueName",
                      "ALIYUN::MNS::Topic": "TopicName", "ALIYUN::OSS::Bucket": "BucketName",
                      "ALIYUN::RAM::Role": "RoleName", "ALIYUN::FC3::Trigger": "TriggerName",
                      "ALIYUN::SLS::Project": "Name", "ALIYUN::SLS::Logstore": "LogstoreName"}
        # A name may be built from another resource's (a logstore's project): name those first.
        pending = [(lid, res, name_props[res["Type"]]) for lid, res in self.resources.items()
                   if res["Type"] in name_props]
        while pending:
            waiting = []
            for logical_id, res, prop in pending:
                try:
                    self._name(logical_id, res, prop)
                except TemplateError:
                    waiting.append((logical_id, res, prop))
            if len(waiting) == len(pending):
                self._name(*waiting[0])  # raises the TemplateError that names the problem
            pending = waiting

    def _name(self, logical_id: str, res: dict[str, Any], prop: str) -> None:
        name = str(self.resolve((res.get("Properties") or {}).get(prop, logical_id)))
        self.attributes[(logical_id, "Ref")] = name
        self.attributes[(logical_id, prop)] = name
        if res["Type"] == "ALIYUN::MNS::Queue":
            # ROS: ARN is acs:mns:region:account:queues/name; ARN.WithSlash has "/queues".
            self.attributes[(logical_id, "ARN")] = (
                f"acs:mns:{self.region}:{self.account_id}:queues/{name}")
            self.attributes[(logical_id, "ARN.WithSlash")] = (
                f"acs:mns:{self.region}:{self.account_id}:/queues/{name}")
        elif res["Type"] == "ALIYUN::FC3::Function":
            self.attributes[(logical_id, "ARN")] = (
                f"acs:fc:{self.region}:{self.account_id}:functions/{name}")
        elif res["Type"] == "ALIYUN::RAM::Role":
            self.attributes[(logical_id, "Arn")] = f"acs:ram::{self.account_id}:role/{name}"
        elif res["Type"] == "ALIYUN::OSS::Bucket":
            self.attributes[(logical_id, "Name")] = name
        elif res["Type"] == "ALIYUN::SLS::Logstore":
            self.attributes[(logical_id, "ProjectName")] = str(
                self.resolve(res["Properties"]["ProjectName"]))

    # --- intrinsic functions ----------------------------------------------------------------
    def _pseudo(self, name: str) -> Any:
        pseudo = {"ALIYUN::Region": self.region, "ALIYUN::AccountId": self.account_id,
                  "ALIYUN::StackName": "assistflow-local", "ALIYUN::StackId": "local"}
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if (name, "Ref") in self.attributes:
            return self.attributes[(name, "Ref")]
        raise TemplateError(f"Ref to unknown name {name!r}")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self._pseudo(str(arg))
            if key == "Fn::GetAtt":
                logical_id, attr = arg if isinstance(arg, list) else str(arg).split(".", 1)
                if (logical_id, attr) not in self.attributes:
                    raise TemplateError(f"Fn::GetAtt {logical_id}.{attr} is not known locally")
                return self.attributes[(logical_id, attr)]
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                sep, items = arg
                return str(sep).join(str(self.resolve(i)) for i in items)
            if key == "Fn::If":
                name, if_true, if_false = arg
                return self.resolve(if_true if self.condition(str(name)) else if_false)
            if key == "Fn::MemberListToMap":
                return member_list_to_map(*self.resolve(arg))
        return {k: self.resolve(v) for k, v in value.items()}

    def condition(self, name: str) -> bool:
        """The value of the ``Conditions`` entry ``name``."""
        if name not in self.conditions:
            raise TemplateError(f"condition {name!r} is not declared in Conditions")
        return self._evaluate(self.conditions[name])

    def _evaluate(self, expr: Any) -> bool:
        if isinstance(expr, str):
            return self.condition(expr)  # a condition named inside Fn::Not / And / Or
        if isinstance(expr, dict) and len(expr) == 1:
            (key, arg), = expr.items()
            if key == "Condition":
                return self.condition(str(arg))
            if key == "Fn::Equals":
                left, right = (self.resolve(v) for v in arg)
                return bool(left == right)
            if key == "Fn::Not":
                return not self._evaluate(arg[0] if isinstance(arg, list) else arg)
            if key == "Fn::And":
                return all(self._evaluate(item) for item in arg)
            if key == "Fn::Or":
                return any(self._evaluate(item) for item in arg)
        raise TemplateError(f"condition {expr!r}: only Fn::Equals, Fn::Not, Fn::And, Fn::Or and "
                            "Condition are evaluated locally")

    def _sub(self, arg: Any) -> str:
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in extra:
                return str(self.resolve(extra[name]))
            if "." in name and not name.startswith("ALIYUN::"):
                logical_id, attr = name.split(".", 1)
                return str(self.resolve({"Fn::GetAtt": [logical_id, attr]}))
            return str(self._pseudo(name))

        return re.sub(r"\$\{([^}]+)\}", repl, str(text))

    # --- views ------------------------------------------------------------------------------
    def _of_type(self, type_: str) -> list[tuple[str, dict[str, Any]]]:
        return [(lid, res.get("Properties") or {}) for lid, res in self.resources.items()
                if res["Type"] == type_]

    def queues(self) -> list[QueueDecl]:
        return [QueueDecl(lid, self.attributes[(lid, "Ref")], self.resolve(props))
                for lid, props in self._of_type("ALIYUN::MNS::Queue")]

    def buckets(self) -> list[str]:
        return [self.attributes[(lid, "Ref")] for lid, _ in self._of_type("ALIYUN::OSS::Bucket")]

    def functions(self) -> list[FunctionDecl]:
        out = []
        for lid, props in self._of_type("ALIYUN::FC3::Function"):
            meta = (self.resources[lid].get("Metadata") or {}).get("assistflow") or {}
            if "CodeDir" not in meta:
                raise TemplateError(f"function {lid}: Metadata.assistflow.CodeDir (the folder "
                                    "with its code, relative to the template) is required")
            code_dir = (self.path.parent / meta["CodeDir"]).resolve()
            if not code_dir.is_dir():
                raise TemplateError(f"function {lid}: CodeDir {code_dir} does not exist")
            env = self.resolve(props.get("EnvironmentVariables") or {})
            _check_environment(lid, env)
            out.append(FunctionDecl(
                logical_id=lid, name=self.attributes[(lid, "Ref")],
                handler=str(props["Handler"]), runtime=str(props.get("Runtime", "python3.10")),
                code_dir=code_dir, timeout=int(self.resolve(props.get("Timeout", 3))),
                memory=int(self.resolve(props.get("MemorySize", 128))),
                environment={str(k): "" if v is None else str(v) for k, v in env.items()},
                role=str(self.resolve(props.get("Role") or "")),
            ))
        return out

    def role_policies(self, role_arn: str) -> tuple[Policy, ...]:
        """The permission policies of the role ``role_arn``: its ``Policies`` and every
        ``ALIYUN::RAM::ManagedPolicy`` attached to it through ``Roles``. A role the template
        does not declare, or one with ``PolicyAttachments`` (system or custom policies by
        name, whose text is not in the template), cannot be enforced locally: TemplateError,
        never a role that may do anything."""
        found = [(lid, props) for lid, props in self._of_type("ALIYUN::RAM::Role")
                 if self.attributes.get((lid, "Arn")) == role_arn]
        if not found:
            raise TemplateError(f"role {role_arn}: not declared in the template, so its "
                                "permissions cannot be enforced locally")
        lid, props = found[0]
        if props.get("PolicyAttachments"):
            raise TemplateError(f"role {lid}: PolicyAttachments name policies whose text is "
                                "not in the template; declare them as Policies instead")
        name = self.attributes[(lid, "Ref")]
        documents = [(str(self.resolve(p.get("PolicyName", ""))), p.get("PolicyDocument"))
                     for p in props.get("Policies") or []]
        documents += [(str(self.resolve(m.get("PolicyName", mid))), m.get("PolicyDocument"))
                      for mid, m in self._of_type("ALIYUN::RAM::ManagedPolicy")
                      if name in self.resolve(m.get("Roles") or [])]
        try:
            return tuple(Policy.parse(self.resolve(doc), f"{lid}/{pname}")
                         for pname, doc in documents)
        except PolicyError as exc:
            raise TemplateError(f"role {lid}: {exc}") from None

    def triggers(self) -> list[TriggerDecl]:
        return [TriggerDecl(
            logical_id=lid, name=str(self.resolve(props["TriggerName"])),
            function=str(self.resolve(props["FunctionName"])), type=str(props["TriggerType"]),
            config=self.resolve(props.get("TriggerConfig") or {}),
        ) for lid, props in self._of_type("ALIYUN::FC3::Trigger")]

    def async_configs(self) -> dict[str, AsyncConfigDecl]:
        """Each function's ``ALIYUN::FC3::AsyncInvokeConfig``, by FunctionName."""
        out: dict[str, AsyncConfigDecl] = {}
        for lid, props in self._of_type("ALIYUN::FC3::AsyncInvokeConfig"):
            props = self.resolve(props)
            function = str(props.get("FunctionName") or "")
            if not function:
                raise TemplateError(f"async config {lid}: FunctionName is required")
            if function in out:
                raise TemplateError(f"async config {lid}: function {function!r} already has "
                                    f"one ({out[function].logical_id})")
            destinations = props.get("DestinationConfig") or {}
            on_failure, on_success = (
                str((destinations.get(kind) or {}).get("Destination") or "")
                for kind in ("OnFailure", "OnSuccess"))
            retries = props.get("MaxAsyncRetryAttempts")
            age = props.get("MaxAsyncEventAgeInSeconds")
            try:
                decl = AsyncConfigDecl(lid, function,
                                       None if retries is None else int(retries),
                                       None if age is None else int(age), on_failure, on_success)
            except (TypeError, ValueError):
                raise TemplateError(f"async config {lid}: MaxAsyncRetryAttempts and "
                                    "MaxAsyncEventAgeInSeconds are integers") from None
            # FC's PutAsyncInvokeConfig: maxAsyncRetryAttempts 0-8 (default 3),
            # maxAsyncEventAgeInSeconds 1-604800 (default 86400)
            # (https://alibabacloud.com/help/en/functioncompute/api-fc-2023-03-30-struct-putasyncinvokeconfiginput).
            if decl.max_age is not None and not 1 <= decl.max_age <= 604800:
                raise TemplateError(f"async config {lid}: MaxAsyncEventAgeInSeconds "
                                    f"{decl.max_age} is not within 1-604800")
            if decl.max_retries is not None and not 0 <= decl.max_retries <= 8:
                raise TemplateError(f"async config {lid}: MaxAsyncRetryAttempts "
                                    f"{decl.max_retries} is not within 0-8")
            out[function] = decl
        return out

    def resolved_outputs(self) -> dict[str, Any]:
        return {name: self.resolve(out.get("Value")) for name, out in self.outputs.items()}


def member_list_to_map(key_name: str, value_name: str, members: list[str]) -> dict[str, str]:
    """``Fn::MemberListToMap`` (ROS, from OpenStack Heat's function of that name,
    https://docs.openstack.org/heat/latest/template_guide/functions.html): the
    ``.member.<n>.<key_name>=…`` and ``.member.<n>.<value_name>=…`` strings of ``members`` as
    the map {key: value} of each ``n``; each string splits at its first ``=``."""
    keys: dict[str, str] = {}
    values: dict[str, str] = {}
    for member in members:
        name, sep, value = str(member).partition("=")
        found = re.fullmatch(r"\.member\.(\d+)\.(.+)", name)
        if not sep or not found or found.group(2) not in (key_name, value_name):
            raise TemplateError(f"Fn::MemberListToMap: {member!r} is not "
                                f"'.member.<n>.{key_name}=…' or '.member.<n>.{value_name}=…'")
        (keys if found.group(2) == key_name else values)[found.group(1)] = value
    if set(keys) != set(values):
        raise TemplateError("Fn::MemberListToMap: every member needs both a "
                            f"{key_name} and a {value_name}")
    return {keys[n]: values[n] for n in keys}
