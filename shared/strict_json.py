"""JSON and JSON Schema as their specifications read them, not as Python stretches them.

Python's ``json`` accepts more than JSON, and the ``jsonschema`` library evaluates patterns with
Python's ``re``; each difference let a bad request through or turned it into a crash:

* **Numbers.** ``json.loads`` reads ``NaN`` / ``Infinity`` (not JSON, RFC 8259 §6), turns
  ``1e999`` into ``inf`` (which ``json.dumps`` writes back as the non-JSON ``Infinity``), and
  raises a plain ``ValueError`` for an integer of more than 4300 digits (Python's "int max str
  digits" limit, https://docs.python.org/3/library/stdtypes.html#int-max-str-digits). Here
  each is a ``Violation``.
* **Nesting.** ``json.loads`` raises ``RecursionError`` at about a thousand levels, and a
  validator recursing into a deep value may too. ``MAX_DEPTH`` levels are read; the deepest
  field of a command request is three levels down.
* **Text.** A ``\\ud800`` escape alone is valid JSON text but no Unicode string: it cannot be
  encoded as UTF-8, so it crashes whatever later sends it (an SDK call, a log line, the answer).
  Every string and key must be valid Unicode.
* **Patterns.** JSON Schema evaluates ``pattern`` as an ECMA-262 regular expression
  (https://json-schema.org/draft/2020-12/json-schema-validation#section-6.3.3, §4.3 of the core
  specification), where ``$`` (without the ``m`` flag) matches only at the end of the input and
  ``.`` matches no line terminator (ECMA-262 §22.2.2). The ``jsonschema`` library (4.x,
  ``jsonschema/_keywords.py``: ``pattern``) calls Python's ``re.search``, where ``$`` also matches
  before a trailing newline — ``"cn-hangzhou\\n"`` matched ``^[a-z]{2,}(-[a-z0-9]+)+$`` — and
  ``.`` matches ``\\r``. ``Validator`` evaluates ``pattern`` with the ECMA meaning of both.
* **Integers.** JSON Schema counts ``60.0`` as an integer; Cloud Assistant's ``Timeout`` (a
  ``Long``) takes only an integer literal, so a request's ``"integer"`` is one written without a
  fraction or exponent.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from shared.errors import Violation

MAX_DEPTH = 16  # levels of arrays and objects a request may nest (it needs 3)
MAX_INT_DIGITS = 20  # no field takes more (int64 has 19 digits)


class _Refused(ValueError):
    """A number ``json.loads`` would read but JSON (or this request) does not allow."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"the body has an integer of {len(text.lstrip('-'))} digits; no field "
                       f"takes more than {MAX_INT_DIGITS}")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the body has a number too large for a double ({text[:20]}…)")
    return value


def _parse_constant(name: str) -> Any:
    raise _Refused(f"the body has {name}, which is not JSON; send a number or a string")


def loads(text: str | bytes) -> Any:
    """``json.loads`` of JSON only; ``ValueError`` (a ``json.JSONDecodeError`` for a syntax
    error, ``UnicodeDecodeError`` for bytes that are no UTF-8) or ``RecursionError`` otherwise —
    ``load_violation`` says which, as a ``Violation``."""
    return json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                      parse_constant=_parse_constant)


def load_violation(exc: Exception) -> Violation | None:
    """The ``Violation`` of an exception ``loads`` raised; None if it is none of them."""
    if isinstance(exc, UnicodeDecodeError):
        return Violation("$", "json", "the body must be UTF-8 JSON")
    if isinstance(exc, json.JSONDecodeError):
        return Violation("$", "json", f"the body is not valid JSON ({exc.msg} at line "
                         f"{exc.lineno} column {exc.colno}); send a JSON object")
    if isinstance(exc, _Refused):
        return Violation("$", "json", str(exc))
    if isinstance(exc, RecursionError):
        return Violation("$", "maxDepth", f"the body nests arrays or objects more than "
                         f"{MAX_DEPTH} levels deep; a command request needs three")
    return None


def text_violations(document: Any) -> list[Violation]:
    """Values no request may hold, whatever the schema says: nesting deeper than ``MAX_DEPTH``
    (reported once) and strings or keys that are not valid Unicode. Walked without recursion."""
    found: list[Violation] = []
    stack: list[tuple[Any, str, int]] = [(document, "$", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if not _unicode(value):
                found.append(Violation(path, "unicode", f"{_shown(path)} has a lone surrogate "
                                       "(an unpaired \\ud800-\\udfff escape); send valid Unicode"))
            continue
        children: Iterator[tuple[Any, str]]
        if isinstance(value, dict):
            children = iter([(item, f"{path}.{_printable(key)}") for key, item in value.items()]
                            + [(key, f"{path}.{_printable(key)}") for key in value])
        elif isinstance(value, list):
            children = ((item, f"{path}[{n}]") for n, item in enumerate(value))
        else:
            continue
        if depth >= MAX_DEPTH:
            return [Violation(path, "maxDepth", f"{_shown(path)} nests arrays or objects more "
                              f"than {MAX_DEPTH} levels deep; a command request needs three")]
        stack.extend((item, item_path, depth + 1) for item, item_path in children)
    return sorted(found, key=lambda v: v.path)


def _unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(key: str) -> str:
    """A key as it can appear in a path: lone surrogates written as escapes."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def _shown(path: str) -> str:
    return "the request" if path == "$" else path


# -- JSON Schema with ECMA-262 patterns and JSON integers ------------------------------------------

_ECMA_DOT = "[^\\n\\r\\u2028\\u2029]"  # ECMA-262's "." without the s flag: no line terminator
_COMPILED: dict[str, re.Pattern[str]] = {}


def ecma_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled for Python with ECMA-262's meaning of ``$`` (the end of the input
    only: Python's ``\\Z``) and ``.`` (any character but a line terminator); escapes and
    character classes are copied as they are. The schema's patterns use nothing else whose
    meaning differs (no ``\\d`` / ``\\w``, no lookbehind, no flags)."""
    compiled = _COMPILED.get(pattern)
    if compiled is None:
        out: list[str] = []
        index, in_class = 0, False
        while index < len(pattern):
            char = pattern[index]
            if char == "\\":
                out.append(pattern[index:index + 2])
                index += 2
                continue
            if in_class:
                in_class = char != "]"
            elif char == "[":
                in_class = True
            elif char == "$":
                char = "\\Z"
            elif char == ".":
                char = _ECMA_DOT
            out.append(char)
            index += 1
        compiled = _COMPILED[pattern] = re.compile("".join(out))
    return compiled


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _json_integer(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


Validator = validators.extend(
    Draft202012Validator, validators={"pattern": _pattern},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _json_integer))
