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

``Condition`` blocks are not evaluated here. A policy that has one is refused when it is
loaded (``PolicyError``), never silently treated as if the condition held; so is anything
else the local cloud cannot honour (``Principal`` in an identity policy, a ``Version`` other
than "1", an unknown element).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

EFFECTS = ("Allow", "Deny")
STATEMENT_KEYS = frozenset({"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource"})
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


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_action: bool = False  # the statement covers every action *except* ``actions``
    not_resource: bool = False

    def covers(self, action: str, resource: str) -> bool:
        action_hit = any(wildcard_match(p, action) for p in self.actions)
        resource_hit = any(wildcard_match(p, resource) for p in self.resources)
        return action_hit != self.not_action and resource_hit != self.not_resource


@dataclass(frozen=True)
class Policy:
    name: str
    statements: tuple[Statement, ...]

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
                               for index, item in enumerate(statements)))


def _statement(item: Any, where: str) -> Statement:
    if not isinstance(item, Mapping):
        raise PolicyError(f"{where}: a statement is an object")
    if "Condition" in item:
        raise PolicyError(f"{where}: has a Condition, which the local cloud does not evaluate; "
                          "it refuses the policy rather than ignore the condition (remove it, "
                          "or teach local/ram.py that condition)")
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
    return Statement(str(effect), actions, resources, not_action, not_resource)


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
    """What one API call asks RAM for: (action, resource ARN) pairs, all of which must pass."""

    checks: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, action: str, resources: Iterable[str]) -> RamRequest:
        return cls(tuple((action, resource) for resource in resources))

    def __add__(self, other: RamRequest) -> RamRequest:
        return RamRequest(self.checks + other.checks)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    explicit: bool = False  # refused by a Deny statement (else: nothing allowed it)
    action: str = ""  # the refused pair
    resource: str = ""

    def describe(self) -> str:
        why = "an explicit Deny" if self.explicit else "no statement allows it"
        return f"{self.action} on {self.resource}: {why}"


@dataclass(frozen=True)
class Identity:
    """Whom a key belongs to — a RAM role (``acs:ram::<account>:role/<name>``) — and the
    permission policies attached to that role."""

    arn: str
    policies: tuple[Policy, ...]

    def evaluate(self, request: RamRequest) -> Decision:
        if not request.checks:
            raise ValueError("a RAM request names at least one action and resource")
        for action, resource in request.checks:
            matching = [s for p in self.policies for s in p.statements
                        if s.covers(action, resource)]
            if any(s.effect == "Deny" for s in matching):
                return Decision(False, True, action, resource)
            if not matching:
                return Decision(False, False, action, resource)
        return Decision(True)
