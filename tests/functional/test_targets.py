"""Issue 14, targets: a request selects its instances by tags and resource group.

Through the signed webhook of a local cloud whose fleet carries tags and resource groups: a
selector runs on exactly its matching instances, a fleet over 10,000 matches is refused with
the count, none is refused too, and a redelivery runs on the list recorded the first time
even after the fleet was re-tagged. Every check of what ran asks Cloud Assistant itself.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import oss2
import pytest

from local.cloud import LocalCloud
from local.emulators.ecs.inventory import default_fleet
from shared import targets, webhook
from shared.clients import Clients
from shared.config import Settings
from shared.errors import NotAllowedError
from shared.intake import Intake
from shared.ledger import read_request
from shared.targets import target_verdicts
from tests.functional.test_cli_submit import cli, table_rows
from tests.functional.test_submit import created
from tests.localcloud import Endpoints, get_object, request_summary
from tests.reliability.cloud_control import calls, control

L1, L2, L3 = (f"i-local0000000000000{n}" for n in (1, 2, 3))
STOPPED = "i-local0000000000000s"
SCRIPT = {"Type": "RunShellScript", "CommandContent": "echo targeted"}
BATCH = [f"i-batch{n:05d}" for n in range(1, 6)]


def fleet(batch_tags: dict[str, dict[str, str]] | None = None) -> list[dict[str, Any]]:
    """The default fleet, five simulated instances in rg-batch (tags per instance), and
    10,001 simulated instances tagged fleet=huge, 1,500 tagged fleet=wide in rg-wide."""
    tags = batch_tags or {i: {"wave": "one" if n < 3 else "two"} for n, i in enumerate(BATCH)}
    return [asdict(i) for i in default_fleet()] + [
        {"InstanceId": i, "Mode": "simulated", "ResourceGroupId": "rg-batch", "Tags": tags[i],
         "Simulated": {"Output": f"ran on {i}\n", "ExitCode": 0, "Duration": 0.1}}
        for i in BATCH] + [
        {"InstanceId": "i-huge", "Count": 10001, "Mode": "simulated", "Tags": {"fleet": "huge"},
         "ResourceGroupId": "rg-huge"},
        {"InstanceId": "i-wide", "Count": 1500, "Mode": "simulated", "Tags": {"fleet": "wide"},
         "ResourceGroupId": "rg-wide"}]


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCloud, Endpoints]]:
    state = tmp_path_factory.mktemp("targets")
    (state / "instances.json").write_text(json.dumps({"instances": fleet()}))
    cloud = LocalCloud(state, parameters={"MaintenanceEnabled": False})
    endpoints = Endpoints(cloud.start())
    yield cloud, endpoints
    cloud.stop()


def ran_on(endpoints: Endpoints, invoke_id: str) -> set[str]:
    """The instances Cloud Assistant ran ``invoke_id`` on."""
    [invocation] = endpoints.invocations(InvokeId=invoke_id)
    return {i["InstanceId"] for i in invocation["InvokeInstances"]["InvokeInstance"]}


def test_a_resource_group_request_runs_on_exactly_that_groups_instances(
        tagged: tuple[LocalCloud, Endpoints]) -> None:
    _, endpoints = tagged
    status, body = endpoints.post({**SCRIPT, "ResourceGroupId": "rg-batch"})
    assert status == 202, body
    assert ran_on(endpoints, body["InvokeId"]) == set(BATCH)
    record = read_request(Clients(_settings(tagged[0])).results, body["RequestId"])
    assert record is not None
    assert record.selector == {"ResourceGroupId": "rg-batch"} and record.targets == tuple(BATCH)


def test_a_tags_request_runs_on_exactly_the_instances_with_every_tag(
        tagged: tuple[LocalCloud, Endpoints]) -> None:
    _, endpoints = tagged
    status, body = endpoints.post({**SCRIPT, "Tags": [{"Key": "wave", "Value": "one"}],
                                   "ResourceGroupId": "rg-batch"})
    assert status == 202, body
    assert ran_on(endpoints, body["InvokeId"]) == set(BATCH[:3])
    status, body = endpoints.post({**SCRIPT, "Tags": [{"Key": "role", "Value": "web"},
                                                      {"Key": "env", "Value": "local"}],
                                   "OnIneligible": "Skip"})
    assert status == 202, body
    assert ran_on(endpoints, body["InvokeId"]) == {L1, L2}
    assert [(s["InstanceId"], s["Reason"]) for s in body["Skipped"]] == [
        (STOPPED, "InstanceNotRunning")]


def test_a_selected_stopped_instance_is_refused_as_a_listed_one_would_be(
        tagged: tuple[LocalCloud, Endpoints]) -> None:
    _, endpoints = tagged
    before = created(endpoints)
    status, body = endpoints.post({**SCRIPT, "Tags": [{"Key": "role", "Value": "web"}]})
    assert status == 422 and body["Code"] == "IneligibleInstances", body
    assert [(e["path"], e["rule"], e["value"]) for e in body["Errors"]] == [
        ("$.Tags", "InstanceNotRunning", STOPPED)]
    assert created(endpoints) == before


REGION_PAGES = 116  # the fixture's 11,512 instances, 100 a page


def test_more_than_ten_thousand_matches_are_refused_with_the_count(
        tagged: tuple[LocalCloud, Endpoints]) -> None:
    _, endpoints = tagged
    before = created(endpoints)
    calls(endpoints, reset=True)
    status, body = endpoints.post({**SCRIPT, "Tags": [{"Key": "fleet", "Value": "huge"}]})
    assert status == 422 and body["Code"] == "TooManyTargets", body
    # ten pages of ListTagResources, then the region's 116 pages side by side: the count
    made = calls(endpoints)
    assert (made["ListTagResources"], made["DescribeInstances"]) == (10, REGION_PAGES), made
    assert "10001 instances match tags fleet=huge" in body["Message"]
    assert body["Errors"][0]["value"] == 10001
    assert created(endpoints) == before


def test_past_ten_thousand_a_region_too_large_to_scan_is_refused_without_a_count(
        tagged: tuple[LocalCloud, Endpoints], monkeypatch: pytest.MonkeyPatch) -> None:
    cloud, endpoints = tagged
    monkeypatch.setattr(targets, "SCAN_MAX_PAGES", 5)
    intake = Intake("cli", key="targets-huge-chain", clients=Clients(_settings(cloud)))
    intake.validate({**SCRIPT, "Tags": [{"Key": "fleet", "Value": "huge"}]})
    intake.check_allowed()
    calls(endpoints, reset=True)
    with pytest.raises(targets.TooManyTargetsError) as refused:
        intake.resolve()
    # ListTagResources, 50 rows (one tag each) a page: past 10,000 ids (page 201) it stops;
    # it gives no total. The one region page read only said the region is too large.
    made = calls(endpoints)
    assert (made["ListTagResources"], made["DescribeInstances"]) == (201, 1), made
    assert "more than 10000 instances match tags fleet=huge" in str(refused.value)
    assert refused.value.violations[0].value is None


@pytest.mark.parametrize("scan", [True, False], ids=["region-scan", "tag-listing"])
def test_a_selector_over_a_thousand_instances_resolves_to_every_one(
        tagged: tuple[LocalCloud, Endpoints], monkeypatch: pytest.MonkeyPatch, scan: bool
        ) -> None:
    """DescribeInstances' tag and group filters cover at most 1,000 instances (as on Alibaba
    Cloud); the resolution, with the function role's keys (RAM enforced), finds all 1,500 -
    by reading the region side by side, or (a region too large for that) through every page
    of ListTagResources."""
    cloud, endpoints = tagged
    if not scan:
        monkeypatch.setattr(targets, "SCAN_MAX_PAGES", 5)
    clients = Clients(_settings(cloud))
    wide = tuple(f"i-wide{n:05d}" for n in range(1, 1501))
    ecs = clients.ecs_in(clients.settings.region)
    assert len(ecs.group_listing("rg-wide")) == 1000  # the local cloud is no kinder
    # after ten pages of ListTagResources: the region (116 pages), or one region page (too
    # large), the 20 other pages and the 1,500 instances by id (15 calls)
    listed, described = (10, REGION_PAGES) if scan else (30, 16)
    for n, (selector, expected) in enumerate((
            ({"Tags": [{"Key": "fleet", "Value": "wide"}]},
             {"ListTagResources": listed, "DescribeInstances": described}),
            ({"ResourceGroupId": "rg-wide"},  # after the filtered listing's ten pages
             {"ListTagResources": listed, "DescribeInstances": described + 10}),
            ({"Tags": [{"Key": "fleet", "Value": "wide"}], "ResourceGroupId": "rg-wide"},
             {"ListTagResources": listed, "DescribeInstances": described}))):
        intake = Intake("cli", key=f"targets-wide-{scan}-{n}", clients=clients)
        intake.validate({**SCRIPT, **selector})
        intake.check_allowed()
        calls(endpoints, reset=True)
        request = intake.resolve()
        assert request.instance_ids == wide, selector
        assert intake.resolution is not None and set(intake.resolution.facts) == set(wide)
        assert intake.resolution.facts[wide[-1]] == {
            "Status": "Running", "OSType": "linux", "ResourceGroupId": "rg-wide"}
        made = calls(endpoints)
        assert {k: made.get(k, 0) for k in expected} == expected, (selector, made)


def test_a_selector_that_matches_nothing_is_refused(tagged: tuple[LocalCloud, Endpoints]
                                                    ) -> None:
    _, endpoints = tagged
    for selector in ({"Tags": [{"Key": "role", "Value": "Web"}]},  # values are case-sensitive
                     {"ResourceGroupId": "rg-nosuchgroup"}):
        status, body = endpoints.post({**SCRIPT, **selector})
        assert status == 422 and body["Code"] == "NoTargets", body


def test_a_redelivery_runs_on_the_recorded_list_whatever_the_fleet_became(
        tagged: tuple[LocalCloud, Endpoints]) -> None:
    cloud, endpoints = tagged
    request = {**SCRIPT, "Tags": [{"Key": "wave", "Value": "two"}],
               "ClientToken": "targets-frozen-1"}
    status, first = endpoints.post(request)
    assert status == 202, first
    assert ran_on(endpoints, first["InvokeId"]) == set(BATCH[3:])
    # The fleet changes: nothing is tagged wave=two any more, another instance is.
    retagged = {i: {"wave": "three"} for i in BATCH}
    retagged[BATCH[0]] = {"wave": "two"}
    (Path(cloud.state_dir) / "instances.json").write_text(json.dumps({"instances":
                                                                      fleet(retagged)}))
    control(endpoints, "ecs", "inventory", {})
    calls(endpoints, reset=True)
    status, again = endpoints.post(request, timestamp=int(time.time()) + 1)  # a new signature
    assert status == 202, again
    assert again["InvokeIds"] == first["InvokeIds"]
    assert ran_on(endpoints, again["InvokeId"]) == set(BATCH[3:])
    assert "DescribeInstances" not in calls(endpoints)  # not resolved again
    # A new request (another ClientToken) resolves the fleet as it is now.
    status, fresh = endpoints.post({**request, "ClientToken": "targets-frozen-2"})
    assert status == 202, fresh
    assert ran_on(endpoints, fresh["InvokeId"]) == {BATCH[0]}


def test_every_target_gets_its_verdict_from_what_resolution_found(
        tagged: tuple[LocalCloud, Endpoints]) -> None:
    """What DryRun shows: each selected instance, eligible or why not, with one lookup of
    the agents (the instances' Status and OSType come from the resolution)."""
    cloud, endpoints = tagged
    before = created(endpoints)
    clients = Clients(_settings(cloud))
    intake = Intake("cli", key="targets-verdicts", clients=clients)
    intake.validate({**SCRIPT, "Tags": [{"Key": "env", "Value": "local"}]})
    intake.check_allowed()
    calls(endpoints, reset=True)
    request = intake.resolve()
    assert intake.resolution is not None
    verdicts = target_verdicts(request, clients, known=intake.resolution.facts)
    assert [(v.instance_id, v.eligible, v.reason) for v in verdicts] == [
        (L1, True, ""), (L2, True, ""), (L3, True, ""),
        ("i-local0000000000000n", False, "AgentNotOnline"),
        (STOPPED, False, "InstanceNotRunning"), ("i-local0000000000000w", False, "OSTypeMismatch")]
    assert lookups(endpoints) == {"DescribeInstances": 1, "DescribeCloudAssistantStatus": 1}
    assert verdicts[0].to_dict() == {"InstanceId": L1, "Eligible": True}
    assert verdicts[4].to_dict()["Message"].startswith(f"{STOPPED} is Stopped")
    assert created(endpoints) == before
    # The allow-list, per target: NotAllowed, and those outside it are not looked at.
    narrow = Clients(replace(clients.settings, allowed_instances=(L1, "i-local0000000000000w")))
    calls(endpoints, reset=True)
    verdicts = target_verdicts(request, narrow, known=intake.resolution.facts)
    assert [(v.instance_id, v.reason) for v in verdicts] == [
        (L1, ""), (L2, "NotAllowed"), (L3, "NotAllowed"), ("i-local0000000000000n", "NotAllowed"),
        (STOPPED, "NotAllowed"), ("i-local0000000000000w", "OSTypeMismatch")]
    assert lookups(endpoints) == {"DescribeCloudAssistantStatus": 1}
    with pytest.raises(NotAllowedError) as refused:
        Intake("cli", key="targets-verdicts", clients=narrow).accept(
            {**SCRIPT, "Tags": [{"Key": "env", "Value": "local"}]})
    assert [(e.path, e.value) for e in refused.value.violations] == [
        ("$.Tags", i) for i in (L2, L3, "i-local0000000000000n", STOPPED)]
    assert created(endpoints) == before


def test_a_dry_run_by_a_tag_lists_every_match_with_its_verdict_and_creates_nothing(
        tagged: tuple[LocalCloud, Endpoints]) -> None:
    """Issue 14's "Must show": a signed ``DryRun`` selecting ``role=web`` answers 200 with
    exactly the three instances tagged so (not the worker, the untagged or the differently
    tagged ones), the stopped one with its reason, and the plan; Cloud Assistant has no new
    command or invocation, OSS no record, result or delivery claim. The same body without
    ``DryRun`` then runs as if the dry run had never been: its RequestId is the same (same
    ClientToken), and it is recorded, claimed, run and summarised."""
    cloud, endpoints = tagged
    request = {**SCRIPT, "Tags": [{"Key": "role", "Value": "web"}], "OnIneligible": "Skip",
               "ClientToken": f"targets-dry-{uuid.uuid4().hex}"}
    dry = json.dumps({**request, "DryRun": True}).encode()
    stamp = int(time.time())
    before = created(endpoints)
    status, body = endpoints.post(dry, timestamp=stamp)
    assert status == 200, body
    assert (body["DryRun"], body["Type"]) == (True, "RunShellScript"), body
    assert [(t["InstanceId"], t["Verdict"]) for t in body["Targets"]] == [
        (L1, "Eligible"), (L2, "Eligible"), (STOPPED, "InstanceNotRunning")], body
    assert [sorted(t) for t in body["Targets"][:2]] == [["InstanceId", "Verdict"]] * 2
    assert body["Targets"][2]["Message"].startswith(f"{STOPPED} is Stopped"), body
    assert body["Plan"] == {"Instances": 2, "Eligible": 2, "Ineligible": 1, "Refused": False,
                            "Batches": [2], "Waves": [2], "DispatchQueue": False}, body
    # The identical signed delivery again: answered again, not a replay (nothing was claimed).
    assert endpoints.post(dry, timestamp=stamp) == (200, body)
    after = created(endpoints)  # (the collector may delete earlier requests' commands)
    assert (after[0] - before[0], after[1] - before[1]) == (set(), set())
    results = Clients(_settings(cloud)).results
    request_id = body["RequestId"]
    assert read_request(results, request_id) is None
    bucket = endpoints.bucket()
    assert get_object(bucket, delivery_claim(endpoints, dry, stamp)) is None
    assert [o.key for o in oss2.ObjectIterator(bucket) if request_id in o.key] == []

    run = json.dumps(request).encode()
    status, ran = endpoints.post(run, timestamp=stamp)
    assert status == 202, ran
    assert ran["RequestId"] == request_id and ran_on(endpoints, ran["InvokeId"]) == {L1, L2}
    assert [(s["InstanceId"], s["Reason"]) for s in ran["Skipped"]] == [
        (STOPPED, "InstanceNotRunning")]
    summary = request_summary(endpoints, ran)
    assert summary["Counts"] == {"Success": 2, "Skipped": 1}, summary
    assert read_request(results, request_id) is not None  # what the dry run did not write
    assert get_object(bucket, delivery_claim(endpoints, run, stamp)) == b""


def delivery_claim(endpoints: Endpoints, body: bytes, timestamp: int) -> str:
    """The key of the webhook's replay claim for ``body`` signed at ``timestamp``
    (``shared.http_intake``: ``webhook-deliveries/{signature}`` in the results bucket)."""
    signature = webhook.sign(endpoints["webhook_secret"], body, timestamp)
    return "webhook-deliveries/" + signature[webhook.SIGNATURE_HEADER].partition("=")[2]


def lookups(endpoints: Endpoints) -> dict[str, int]:
    """The instance lookups made since the calls were reset (the collector may still be
    reading earlier tests' results meanwhile)."""
    return {action: count for action, count in calls(endpoints).items()
            if action in ("DescribeInstances", "DescribeCloudAssistantStatus")}


def _settings(cloud: LocalCloud) -> Settings:
    assert cloud.host is not None
    return Settings.from_env(cloud.host.runtimes["assistflow-submit-http"].environment)


# --- the CLI: --tag / --resource-group --------------------------------------------------------

def script_file(tmp_path: Path, **extra: Any) -> Path:
    """A request file that names no instances: the flags complete it."""
    path = tmp_path / f"request-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps({**SCRIPT, **extra}))
    return path


def test_cli_resource_group_via_queue_waits_for_exactly_that_groups_results(
        tagged: tuple[LocalCloud, Endpoints], tmp_path: Path) -> None:
    cloud, _ = tagged
    done = cli(cloud, "submit", str(script_file(tmp_path)), "--resource-group", "rg-batch",
               "--via", "queue", "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(done.stdout)["Instances"]
    assert sorted(r["InstanceId"] for r in rows) == BATCH
    assert {r["Status"] for r in rows} == {"Success"}


def test_cli_tags_select_and_report_what_was_skipped(
        tagged: tuple[LocalCloud, Endpoints], tmp_path: Path) -> None:
    cloud, _ = tagged
    done = cli(cloud, "submit", str(script_file(tmp_path, OnIneligible="Skip")),
               "--tag", "role=web", "--tag", "env=local", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = table_rows(done.stdout)
    assert {i: cells[1] for i, cells in rows.items()} == {
        L1: "Success", L2: "Success", STOPPED: "Skipped"}
    assert f"skipped {STOPPED}: InstanceNotRunning" in done.stdout
    refused = cli(cloud, "submit", str(script_file(tmp_path)), "--tag", "role=web")
    assert refused.returncode == 4, refused.stderr
    assert f"$.Tags: {STOPPED} is Stopped" in refused.stderr


def test_cli_refuses_a_selector_beside_instance_ids_and_bad_tags(
        tagged: tuple[LocalCloud, Endpoints], tmp_path: Path) -> None:
    cloud, endpoints = tagged
    before = created(endpoints)
    listed = script_file(tmp_path, InstanceIds=[L1])
    done = cli(cloud, "submit", str(listed), "--tag", "role=web")
    assert done.returncode == 3 and "already names its instances (InstanceIds)" in done.stderr
    done = cli(cloud, "submit", str(script_file(tmp_path)), "--tag", "role")
    assert done.returncode == 2 and "give KEY=VALUE" in done.stderr
    done = cli(cloud, "submit", str(script_file(tmp_path)))
    assert done.returncode == 3 and "--tag KEY=VALUE" in done.stderr, done.stderr
    done = cli(cloud, "submit", str(script_file(tmp_path)), "--tag", "team=\x1b[31mops",
               "--resource-group", "rg-\u202ebatch")
    assert done.returncode == 3, done.stderr
    assert "\x1b" not in done.stderr and "\u202e" not in done.stderr
    assert "$.Tags[0].Value" in done.stderr and "$.ResourceGroupId" in done.stderr
    assert created(endpoints) == before
