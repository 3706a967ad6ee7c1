"""`assistflow check-template`: template.yml passes; each mutated copy fails naming the property.

The check runs the ROS CDK's Node.js process, so it runs here as the real entry point in
subprocesses (in parallel), which also keeps the CDK out of the pytest process. The parsing of
the CDK's messages is tested in-process without it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.tools.template_base import Problem, diff, is_intrinsic
from local.tools.template_check import NODE_BANNERS, cdk_problems

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "templates"
# fixture -> (resource, property path, words the message must contain)
BROKEN = {
    "misspelled_property.yml": ("CollectFunction", "Properties.Runtim",
                                ("unknown property", "did you mean Runtime")),
    "wrong_type.yml": ("FollowUpQueue", "Properties.VisibilityTimeout",
                       ("wrong type", "number", "'one minute'")),
    "unknown_trigger_key.yml": ("MaintenanceTimer", "Properties.TriggerConfig.cronExpresion",
                                ("unknown key for TriggerType timer", "cronExpression")),
    "unknown_condition.yml": ("CollectFunction",
                              "Properties.EnvironmentVariables.ASSISTFLOW_COMPLETION_EVENTS",
                              ("condition 'CompletionEventOn' is not declared",
                               "did you mean CompletionEventsOn")),
}


@pytest.fixture(scope="module")
def checked() -> dict[str, subprocess.CompletedProcess[str]]:
    """``assistflow check-template`` on template.yml and on every fixture, all at once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JSII_SILENCE")}
    files = [REPO / "template.yml", *(FIXTURES / name for name in BROKEN)]
    procs = {path.name: subprocess.Popen(
        [sys.executable, "-m", "local", "check-template", str(path)], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for path in files}
    done = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done


def test_template_yml_is_clean(checked: dict[str, subprocess.CompletedProcess[str]]) -> None:
    done = checked["template.yml"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "template.yml: 0 problems" in done.stdout
    assert "resources" in done.stdout and "parameters" in done.stdout
    # jsii's Node end-of-life banner is silenced, not merely hidden in a passing run.
    assert "end-of-life" not in done.stderr and "!!!!" not in done.stderr, done.stderr


@pytest.mark.parametrize("fixture", sorted(BROKEN))
def test_each_mistake_is_one_line_naming_resource_and_property(
        checked: dict[str, subprocess.CompletedProcess[str]], fixture: str) -> None:
    done = checked[fixture]
    resource, path, words = BROKEN[fixture]
    assert done.returncode == 1, done.stdout + done.stderr
    problems = done.stdout.strip().splitlines()
    assert len(problems) == 1, done.stdout  # exactly the one mistake, nothing else
    line = problems[0]
    assert f"Resources.{resource}.{path}:" in line, line
    for word in words:
        assert word in line, line
    assert "1 problem" in done.stderr


def test_banner_silencing_uses_jsiis_acknowledgement_sentence() -> None:
    ack = NODE_BANNERS["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"]
    spec = importlib.util.find_spec("jsii")  # found, not imported: no Node.js process here
    assert spec is not None and spec.origin is not None
    runtime = Path(spec.origin).parent / "_embedded" / "jsii" / "bin__jsii-runtime.js"
    assert ack in runtime.read_text(encoding="utf-8")


def test_cdk_messages_become_problems_on_the_ros_property_names() -> None:
    where = "Resources.Fn.Properties"
    validator = ('Error: Resolution error: Supplied properties not correct for "RosFunctionProps"\n'
                 "  cpu: 64 is larger than min value(0.05).\nObject creation stack:\n  at x")
    assert cdk_problems(validator, where) == [
        Problem(f"{where}.Cpu", "64 is larger than min value(0.05).")]
    deserialize = ("Passed to parameter props of new X: Unable to deserialize value as Props\n"
                   "╰── 🔍 Failure reason(s):\n"
                   "    ╰─ Key 'code': Unable to deserialize value as IResolvable | Code\n"
                   "        ├─ [as Code] Key 'ossBucketName': Unable to deserialize value as "
                   "string | @alicloud/ros-cdk-core.IResolvable | undefined\n"
                   "            ├── 🛑 Failing value is a number\n"
                   "            │      5\n")
    (problem,) = cdk_problems(deserialize, where)
    assert problem.where == f"{where}.Code.OssBucketName"
    assert problem.message == "wrong type: expected string | IResolvable, got a number (5)"


def test_diff_reports_what_the_cdk_dropped_or_changed() -> None:
    expected = {"Code": {"OssBucketName": {"Ref": "B"}, "Typo": 1}, "Enable": True, "N": 1}
    actual = {"Code": {"OssBucketName": {"Ref": "B"}}, "Enable": 1, "N": 1.0}
    found = {p.where: p.message for p in diff(expected, actual, "P")}
    assert set(found) == {"P.Code.Typo", "P.Enable"}
    assert found["P.Code.Typo"].startswith("dropped by the ROS CDK")
    assert is_intrinsic({"Fn::Sub": "x"}) and is_intrinsic({"Ref": "x"})
    assert not is_intrinsic({"Ref": "x", "Other": 1}) and not is_intrinsic({"Refs": "x"})
