"""The function host's trigger interface, on tests/fixtures/host/kinds.yml.

A trigger kind is a ``Trigger`` subclass plus one line in ``TRIGGER_KINDS``; the host publishes
what a trigger declares as attributes before it builds the functions, attaches the function,
starts it, and stops it in two steps around closing the runtimes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from local.host import host as host_module
from local.host.http_trigger import HttpTrigger
from local.host.template import TriggerDecl
from local.host.trigger import Trigger, TriggerContext
from tests.fixtures.host.harness import HostHarness


class FakeTrigger(Trigger):
    """Records what the host asked of it, and what the function's runtime looked like then."""

    def __init__(self, name: str, function: str, config: dict[str, Any]) -> None:
        super().__init__(name, function)
        self.config = config
        self.steps: list[str] = ["create"]

    @classmethod
    def create(cls, decl: TriggerDecl, context: TriggerContext) -> FakeTrigger:
        assert context.label  # the context carries what the host offers
        return cls(decl.name, decl.function, decl.config)

    def attributes(self) -> dict[str, str]:
        self.steps.append("attributes")
        return {"TriggerId": f"fake-{self.name}"}

    def attach(self, runtime: Any) -> None:
        super().attach(runtime)
        self.steps.append("attach")

    def start(self) -> None:
        self.steps.append(f"start:{self.runtime.spec.name}")

    def begin_stop(self) -> None:
        self.steps.append(f"begin_stop:closed={self.runtime.closed}")

    def stop(self) -> None:
        self.steps.append(f"stop:closed={self.runtime.closed}")


def test_an_http_triggers_url_reaches_another_functions_environment(tmp_path: Path) -> None:
    with HostHarness(tmp_path, "kinds.yml") as harness:
        assert harness.host is not None
        url = harness.host.trigger("hook", HttpTrigger).url
        assert url.startswith("http://127.0.0.1:")
        assert harness.host.runtimes["caller"].environment["HOOK_URL"] == url
        assert harness.template.resolve({"Fn::GetAtt": ["HookTrigger", "UrlInternet"]}) == url
    assert harness.leftover_threads == []


def test_a_kind_the_host_does_not_run_is_skipped_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="assistflow.host"), \
            HostHarness(tmp_path, "kinds.yml") as harness:
        assert harness.host is not None
        assert sorted(t.name for t in harness.host.triggers.values()) == ["hook"]
    assert "trigger uploads: type oss is not emulated yet" in caplog.text


def test_a_new_kind_is_one_line_in_trigger_kinds(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(host_module.TRIGGER_KINDS, "oss", FakeTrigger.create)
    with HostHarness(tmp_path, "kinds.yml") as harness:
        assert harness.host is not None
        fake = harness.host.trigger("uploads", FakeTrigger)
        assert fake.config == {"events": ["oss:ObjectCreated:*"]}
        assert harness.template.resolve({"Fn::GetAtt": ["Uploads", "TriggerId"]}) == "fake-uploads"
        with pytest.raises(KeyError):
            harness.host.trigger("uploads", HttpTrigger)  # a trigger of another kind
    # Nothing new is accepted while the functions still run; the join comes once they closed.
    assert fake.steps == ["create", "attributes", "attach", "start:caller",
                          "begin_stop:closed=False", "stop:closed=True"]
    assert harness.leftover_threads == []
