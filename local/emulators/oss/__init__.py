"""Local Alibaba Cloud OSS emulator for the unchanged ``oss2`` SDK (see ``app.OssApp``)."""

from __future__ import annotations

from .app import OssApp

__all__ = ["OssApp"]
