"""The local dashboard (``dashboard_url`` in ``endpoints.json``): recent requests and
invocations of the local cloud and their reports, read-only, on 127.0.0.1."""

from local.dashboard.app import DashboardApp, serve

__all__ = ["DashboardApp", "serve"]
