"""The deployment's allow-list: which instances and command types it may touch at all.

Configured by environment (``ASSISTFLOW_ALLOWED_INSTANCES``: ids, or prefixes ending in ``*``;
``ASSISTFLOW_ALLOWED_TYPES``: command types). Empty lists allow everything. Checked before any
API call, so a refused request creates nothing.
"""

from __future__ import annotations

from shared.config import Settings
from shared.errors import NotAllowedError, Violation
from shared.request import CommandRequest


def instance_allowed(instance_id: str, allowed: tuple[str, ...]) -> bool:
    if not allowed:
        return True
    return any(instance_id.startswith(entry[:-1]) if entry.endswith("*") else instance_id == entry
               for entry in allowed)


def check_allowed(request: CommandRequest, settings: Settings) -> None:
    """Raise ``NotAllowedError`` listing every instance and type outside the allow-lists."""
    violations = [
        Violation(f"$.InstanceIds[{index}]", "allowList",
                  f"instance {instance_id} is outside this deployment's allow-list "
                  "(ASSISTFLOW_ALLOWED_INSTANCES)", instance_id)
        for index, instance_id in enumerate(request.instance_ids)
        if not instance_allowed(instance_id, settings.allowed_instances)
    ]
    if settings.allowed_types and request.type and request.type not in settings.allowed_types:
        violations.append(Violation("$.Type", "allowList",
                                    f"command type {request.type} is not allowed here; allowed: "
                                    f"{', '.join(settings.allowed_types)}", request.type))
    if violations:
        raise NotAllowedError(f"{len(violations)} item(s) of the request are not allowed by this "
                              "deployment", violations)
