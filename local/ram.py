"""RAM policies, evaluated as Alibaba Cloud's Resource Access Management evaluates them.

The local cloud gives every function STS credentials bound to the role ``template.yml`` gives
it (``local.state.issue_sts``); each emulator asks, for every call signed with such a key,
whether the role's policies allow it (``EmulatorApp.authorize``). The users' keys from
``endpoints.json`` are an account owner's and are never checked, as on the cloud.

The policy language (https://www.alibabacloud.com/help/en/ram/policy-structure-and-syntax):

* a document is ``{"Version": "1", "Statement": [...]}``; a statement has ``Effect``
  (``Allow`` | ``Deny``), ``Action`` or ``NotAction``, ``Resource`` or ``NotResource``, each a
  string or a list of strings, and an optional ``Condition``;
* in action and resource strings ``*`` matches zero or more characters and ``?`` exactly one;
  element names and predefined values are case-sensitive. Matching here is case-sensitive
  for actions and ARNs too: stricter than a cloud that might fold case, never kinder;
* evaluation: a request is refused if any matching statement says ``Deny`` (an explicit deny
  wins over every allow), allowed if a matching statement says ``Allow``, and refused when
  nothing matches (implicit deny) — "explicit deny first, then explicit allow, default deny"
  (https://www.alibabacloud.com/help/en/oss/user-guide/how-oss-works-with-ram). A call that
  needs several (action, resource) pairs (InvokeCommand: the command and every instance;
  CopyObject: read the source, write the target) is allowed only if every pair is.

``Condition`` blocks are evaluated for exactly what the template uses, and refused when the
policy is loaded (``PolicyError``) for anything else, never silently treated as if the
condition held:

* operators ``StringEquals`` (exact, case-sensitive) and ``StringLike`` (case-sensitive, ``*``
  and ``?`` wildcards) — RAM's "Conditional operators"
  (https://www.alibabacloud.com/help/en/ram/conditional-operator);
* the key ``acs:ResourceTag/<tag-key>``: "the tag information attached to the requested
  resource" (https://www.alibabacloud.com/help/en/ram/use-cases/use-tags-to-control-access-to-ecs-resources-1),
  compared with the tags of the resource each (action, resource) pair names — the emulator
  passes them in ``RamRequest.tags`` (ECS: the instance's ``Tags`` in ``instances.json``);
* "A condition block can contain multiple conditions, and each condition can contain multiple
  key-value pairs … if the condition value matches any of the corresponding values, the
  condition is satisfied … A condition block is satisfied only if all of its conditions are
  satisfied" (RAM "Policy elements", https://www.alibabacloud.com/help/doc-detail/93738.htm):
  values OR, keys and operators AND. A resource without that tag does not satisfy it.

Where the local cloud does not know a resource's tags (a wildcard ``instance/*`` because the
call named no instance, a command, whose tags it does not keep), a condition on them is judged
the strict way: an Allow does not apply and a Deny does, so it is never kinder than RAM.

Anything else the local cloud cannot honour (``Principal`` in an identity policy, a
``Version`` other than "1", an unknown element) is refused at load too.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

EFFECTS = ("Allow", "Deny")
STATEMENT_KEYS = frozenset({"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource",
                            "Condition"})
OPERATORS = ("StringEquals", "StringLike")  # the condition operators evaluated here
RESOURCE_TAG = "acs:ResourceTag/"  # the one condition key evaluated here: a resource's tag
Tags = Mapping[str, str]
_ACTION = re.compile(r"^(\*|[A-Za-z0-9-]+:[A-Za-z0-9*?]+)$")


class PolicyError(ValueError):
    """A policy document the local cloud cannot evaluate faithfully; the message says where."""


@functools.lru_cache(maxsize=4096)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                              for c in text), re.DOTALL)


def wildcard_match(pattern: str, value: str) -> bool:
    """RAM's wildcards: ``*`` any run of characters (``/`` and ``:`` included), ``?`` one."""
    return _pattern(pattern).fullmatch(value) is not None


@functools.lru_cache(maxsize=1024)
def _any_pattern(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One expression that matches a whole value exactly when one of ``patterns`` does: a
    statement's list in one ``fullmatch``, not one per item (an InvokeCommand on 100 instances
    is 101 pairs to judge against every statement)."""
    return re.compile("|".join(f"(?:{_pattern(p).pattern})" for p in patterns), re.DOTALL)


@dataclass(frozen=True)
class Condition:
    """One condition key under one operator: ``{"StringEquals": {"acs:ResourceTag/team":
    ["ops", "dev"]}}`` is ``Condition("StringEquals", "team", ("ops", "dev"))``."""

    operator: str
    tag_key: str  # the <tag-key> of acs:ResourceTag/<tag-key>
    values: tuple[str, ...]

    def holds(self, tags: Tags) -> bool:
        value = tags.get(self.tag_key)
        if value is None:
            return False
        if self.operator == "StringEquals":
            return value in self.values
        return any(wildcard_match(pattern, value) for pattern in self.values)


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_action: bool = False  # the statement covers every action *except* ``actions``
    not_resource: bool = False
    conditions: tuple[Condition, ...] = ()

    def acts_on(self, action: str) -> bool:
        """Whether the statement is about ``action`` (its Action, or all but its NotAction)."""
        return (_any_pattern(self.actions).fullmatch(action) is not None) != self.not_action

    def reaches(self, resource: str) -> bool:
        """Whether the statement is about ``resource`` (its Resource, or all but its
        NotResource)."""
        return (_any_pattern(self.resources).fullmatch(resource) is not None) \
            != self.not_resource

    def conditions_hold(self, tags: Tags | None) -> bool:
        """Whether the Condition block is satisfied for a resource with ``tags`` (None: the
        local cloud does not know them — an Allow then does not apply, a Deny does)."""
        if not self.conditions:
            return True
        if tags is None:
            return self.effect == "Deny"
        return all(c.holds(tags) for c in self.conditions)


@dataclass(frozen=True)
class Policy:
    name: str
    statements: tuple[Statement, ...]
    # The document it was parsed from: what a policy is sent as to an emulator in a process
    # of its own (``Identity.to_json``), parsed again there.
    document: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, document: Any, name: str = "") -> Policy:
        """A policy document (parsed JSON / YAML) as a ``Policy``; ``PolicyError`` for anything
        RAM would refuse or the local cloud would have to ignore."""
        where = f"policy {name!r}" if name else "policy"
        if not isinstance(document, Mapping):
            raise PolicyError(f"{where}: a policy document is an object with Version and "
                              "Statement")
        unknown = set(document) - {"Version", "Statement"}
        if unknown:
            raise PolicyError(f"{where}: unknown element(s) {sorted(unknown)}")
        if document.get("Version") != "1":
            raise PolicyError(f"{where}: Version must be the string \"1\" (got "
                              f"{document.get('Version')!r})")
        statements = document.get("Statement")
        if not isinstance(statements, list) or not statements:
            raise PolicyError(f"{where}: Statement must be a non-empty list")
        return cls(name, tuple(_statement(item, f"{where}, Statement[{index}]")
                               for index, item in enumerate(statements)), document)


def _statement(item: Any, where: str) -> Statement:
    if not isinstance(item, Mapping):
        raise PolicyError(f"{where}: a statement is an object")
    if "Principal" in item or "NotPrincipal" in item:
        raise PolicyError(f"{where}: Principal belongs in a trust or resource policy, not in a "
                          "role's permission policy")
    unknown = set(item) - STATEMENT_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown element(s) {sorted(unknown)}")
    effect = item.get("Effect")
    if effect not in EFFECTS:
        raise PolicyError(f"{where}: Effect must be Allow or Deny (got {effect!r})")
    actions, not_action = _one_of(item, "Action", where)
    for action in actions:
        if not _ACTION.match(action):
            raise PolicyError(f"{where}: {action!r} is not an action (service:ActionName, "
                              "wildcards allowed, or *)")
    resources, not_resource = _one_of(item, "Resource", where)
    conditions = _conditions(item["Condition"], where) if "Condition" in item else ()
    return Statement(str(effect), actions, resources, not_action, not_resource, conditions)


def _conditions(block: Any, where: str) -> tuple[Condition, ...]:
    """A Condition block as ``Condition``s; ``PolicyError`` for an operator or key the local
    cloud does not evaluate (it refuses the policy rather than ignore the condition)."""
    if not isinstance(block, Mapping) or not block:
        raise PolicyError(f"{where}: Condition must be a non-empty object of operators")
    out = []
    for operator, keys in block.items():
        if operator not in OPERATORS:
            raise PolicyError(f"{where}: Condition operator {operator!r} is not evaluated by the "
                              f"local cloud (only {', '.join(OPERATORS)}); it refuses the policy "
                              "rather than ignore the condition")
        if not isinstance(keys, Mapping) or not keys:
            raise PolicyError(f"{where}: Condition.{operator} must be a non-empty object of keys")
        for key, raw in keys.items():
            tag_key = str(key)[len(RESOURCE_TAG):] if str(key).startswith(RESOURCE_TAG) else ""
            if not tag_key:
                raise PolicyError(f"{where}: Condition key {key!r} is not evaluated by the local "
                                  f"cloud (only {RESOURCE_TAG}<tag-key>); it refuses the policy "
                                  "rather than ignore the condition")
            values = [raw] if isinstance(raw, str) else raw
            if not isinstance(values, list) or not values or \
                    not all(isinstance(v, str) for v in values):
                raise PolicyError(f"{where}: Condition.{operator}.{key} must be a string or a "
                                  "non-empty list of strings")
            out.append(Condition(str(operator), tag_key, tuple(values)))
    return tuple(out)


def _one_of(item: Mapping[str, Any], element: str, where: str) -> tuple[tuple[str, ...], bool]:
    """The values of ``element`` or of ``Not<element>`` (exactly one must be given)."""
    given = [key for key in (element, f"Not{element}") if key in item]
    if len(given) != 1:
        raise PolicyError(f"{where}: give exactly one of {element} and Not{element}")
    raw = item[given[0]]
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, list) or not values or \
            not all(isinstance(v, str) and v for v in values):
        raise PolicyError(f"{where}: {given[0]} must be a non-empty string or list of strings")
    return tuple(values), given[0].startswith("Not")


@dataclass(frozen=True)
class RamRequest:
    """What one API call asks RAM for: (action, resource ARN) pairs, all of which must pass,
    and the tags of the resources the service knows (``acs:ResourceTag``; a resource missing
    from ``tags`` has tags the local cloud does not know)."""

    checks: tuple[tuple[str, str], ...]
    tags: Mapping[str, Tags] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, action: str, resources: Iterable[str],
           tags: Mapping[str, Tags] | None = None) -> RamRequest:
        return cls(tuple((action, resource) for resource in resources), dict(tags or {}))

    def __add__(self, other: RamRequest) -> RamRequest:
        return RamRequest(self.checks + other.checks, {**self.tags, **other.tags})


@dataclass(frozen=True)
class Decision:
    allowed: bool
    explicit: bool = False  # refused by a Deny statement (else: nothing allowed it)
    action: str = ""  # the refused pair
    resource: str = ""
    unmet: bool = False  # a statement would allow it but for its Condition

    def describe(self) -> str:
        why = "an explicit Deny" if self.explicit else \
            "no statement allows it" + (" (a Condition did not hold)" if self.unmet else "")
        return f"{self.action} on {self.resource}: {why}"


@dataclass(frozen=True)
class Identity:
    """Whom a key belongs to — a RAM role (``acs:ram::<account>:role/<name>``) — and the
    permission policies attached to that role."""

    arn: str
    policies: tuple[Policy, ...]

    def to_json(self) -> dict[str, Any]:
        """The role and its policy documents, as ``from_json`` reads them back."""
        if any(p.document is None for p in self.policies):
            raise ValueError(f"{self.arn}: a policy not parsed from a document cannot be sent")
        return {"arn": self.arn,
                "policies": [{"name": p.name, "document": p.document} for p in self.policies]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Identity:
        return cls(str(data["arn"]), tuple(Policy.parse(p["document"], p["name"])
                                           for p in data["policies"]))

    def evaluate(self, request: RamRequest) -> Decision:
        if not request.checks:
            raise ValueError("a RAM request names at least one action and resource")
        about: dict[str, list[Statement]] = {}  # the statements about each action asked
        for action, resource in request.checks:
            statements = about.get(action)
            if statements is None:
                statements = about[action] = [s for p in self.policies for s in p.statements
                                              if s.acts_on(action)]
            tags = request.tags.get(resource)
            covering = [s for s in statements if s.reaches(resource)]
            matching = [s for s in covering if s.conditions_hold(tags)]
            if any(s.effect == "Deny" for s in matching):
                return Decision(False, True, action, resource)
            if not matching:
                return Decision(False, False, action, resource,
                                unmet=any(s.conditions for s in covering))
        return Decision(True)
