"""The OSS API actions, one function each, registered in ``OPERATIONS`` by their OSS name.

Each takes the model and the ``Call`` (``call.params`` is the request's ``RequestParts``:
bucket, key, query and headers; ``call.request`` gives the body) and returns the werkzeug
``Response`` the service would send; errors are raised as ``OssError`` subclasses and rendered
by the app. Which request names which action is the route table in ``app.py``.

OSS has more actions than one module holds, so ``operations`` is a package here (ECS and MNS
keep an ``operations.py``; the import, ``from .operations import OPERATIONS``, is the same):
``buckets`` (the service and bucket settings), ``listing`` (ListObjects v1/v2, batch delete),
``objects`` (put, get, head, copy, append, delete), ``attributes`` (object ACL, tagging,
symlinks, restore), ``multipart`` (multipart uploads).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...base import Operations

if TYPE_CHECKING:
    from ..model import OssModel

OPERATIONS: Operations[OssModel] = Operations()

# Each module registers its actions in OPERATIONS when imported.
from . import attributes, buckets, listing, multipart, objects  # noqa: E402

__all__ = ["OPERATIONS", "attributes", "buckets", "listing", "multipart", "objects"]
