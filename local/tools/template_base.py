"""The pieces of the template check that need neither the ROS CDK nor the FC SDK.

A ``Problem`` names where in the template (``Resources.X.Properties.Y``) and what is wrong.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Problem:
    where: str  # e.g. Resources.SubmitHttpFunction.Properties.Runtime
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)  # section -> elements replayed


class Invalid(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems


def load(path: Path) -> dict[str, Any]:
    """The template as plain data; the short forms ``!Ref X`` / ``!GetAtt A.B`` / ``!Sub …``
    become their long forms, as ROS reads them."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def short_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        if suffix == "Ref":
            return {"Ref": value}
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{suffix}": value}

    Loader.add_multi_constructor("!", short_form)
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)
    if not isinstance(data, dict):
        raise Invalid([Problem("(template)", "is not a YAML mapping of template sections")])
    return data


def is_intrinsic(value: Any) -> bool:
    """``{"Ref": …}`` or ``{"Fn::…": …}``: a value ROS computes at deployment."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    key = str(next(iter(value)))
    return key == "Ref" or key.startswith("Fn::")


def ros_name(jsii_name: str) -> str:
    return jsii_name[:1].upper() + jsii_name[1:]


def suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else f"; known: {', '.join(sorted(known))}"


def diff(expected: Any, actual: Any, where: str) -> list[Problem]:
    """Where the synthesized ``actual`` lost or changed something of the input ``expected``."""
    if isinstance(expected, dict) and isinstance(actual, dict) and not is_intrinsic(expected):
        out: list[Problem] = []
        for key, value in expected.items():
            if key not in actual:
                out.append(Problem(f"{where}.{key}", "dropped by the ROS CDK: not a property "
                                                     "it knows here (spelling? nesting?)"))
            else:
                out.extend(diff(value, actual[key], f"{where}.{key}"))
        return out
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [p for n, (e, a) in enumerate(zip(expected, actual, strict=True))
                for p in diff(e, a, f"{where}[{n}]")]
    same = (expected == actual and isinstance(expected, bool) == isinstance(actual, bool))
    return [] if same else [Problem(where, f"the ROS CDK turned {expected!r} into {actual!r}")]


def section(template: dict[str, Any], name: str) -> dict[str, Any]:
    value = template.get(name) or {}
    return value if isinstance(value, dict) else {}


