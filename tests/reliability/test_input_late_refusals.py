"""Issue 13, item 8: refusals that came too late or not at all.

* ``Timeout: 60.0`` passed the schema and CreateCommand refused it (integers only): now 400.
* A literal ``{{`` in a script (a Docker or Go template) switched parameters on and failed with
  ``CmdParam.InvalidParamName``: parameters are on only when ``Parameters`` are sent.
* A body without ``Content-Type`` was accepted although the README promises 415: now 415.
* ``assistflow invocations list`` printed a command ``Name`` holding terminal escape sequences
  raw: every untrusted string the CLI prints is shown escaped.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aliyunsdkecs.request.v20140526.CreateCommandRequest import CreateCommandRequest
from aliyunsdkecs.request.v20140526.InvokeCommandRequest import InvokeCommandRequest

from local.cloud import LocalCloud
from shared import webhook
from tests.functional.test_submit import created, output_of
from tests.localcloud import Endpoints, get_object, wait_for

REPO = Path(__file__).resolve().parents[2]
LINUX = "i-local00000000000001"
ECHO: dict[str, Any] = {"Type": "RunShellScript", "CommandContent": "echo late",
                        "InstanceIds": [LINUX]}
ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[31m\r\x9b31m\u202e"  # title, clear, colour, CR, C1, RLO


def test_a_fractional_timeout_is_400_before_any_command_is_created(endpoints: Endpoints) -> None:
    before = created(endpoints)
    for timeout in (60.0, 6e1, 60.5):
        status, body = endpoints.post({**ECHO, "Timeout": timeout})
        assert status == 400, body
        assert [(e["path"], e["rule"]) for e in body["Errors"]] == [("$.Timeout", "type")]
    assert created(endpoints) == before


def test_a_template_in_a_script_runs_as_written_without_parameters(endpoints: Endpoints) -> None:
    script = "echo '{{.Names}} {{ json . }} {{name}}'"
    status, body = endpoints.post({**ECHO, "CommandContent": script})
    assert status == 202, body
    assert output_of(endpoints, body["InvokeId"], LINUX) == b"{{.Names}} {{ json . }} {{name}}\n"
    # a periodic script goes through CreateCommand: the same
    status, body = endpoints.post({**ECHO, "CommandContent": script, "RepeatMode": "Period",
                                   "Frequency": "rate(1h)"})
    assert status == 202, body


def test_parameters_still_fill_placeholders_when_sent(endpoints: Endpoints) -> None:
    status, body = endpoints.post({**ECHO, "CommandContent": "echo {{who}} on {{ACS::InstanceId}}",
                                   "Parameters": {"who": "tea"}})
    assert status == 202, body
    assert output_of(endpoints, body["InvokeId"], LINUX) == f"tea on {LINUX}\n".encode()
    status, body = endpoints.post({**ECHO, "CommandContent": "echo {{ACS::InstanceId}}",
                                   "Parameters": {}})  # the built-ins alone
    assert status == 202, body
    assert output_of(endpoints, body["InvokeId"], LINUX) == f"{LINUX}\n".encode()


def test_a_signed_body_without_content_type_is_415_and_claims_nothing(
        endpoints: Endpoints) -> None:
    before = created(endpoints)
    body = json.dumps(ECHO).encode()
    headers = webhook.sign(endpoints["webhook_secret"], body)
    url = urlsplit(endpoints["webhook_url"])
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:  # http.client adds no Content-Type of its own (urllib would add a form type)
        connection.request("POST", url.path or "/", body=body, headers=headers)
        answer = connection.getresponse()
        status, refusal = answer.status, json.loads(answer.read())
    finally:
        connection.close()
    assert status == 415, refusal
    assert refusal["Code"] == "UnsupportedMediaType" and "Content-Type" in refusal["Message"]
    digest = headers[webhook.SIGNATURE_HEADER].partition("=")[2]
    assert get_object(endpoints.bucket(), f"webhook-deliveries/{digest}") is None
    assert created(endpoints) == before


def cli(cloud: LocalCloud, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASSISTFLOW_STATE_DIR": str(cloud.state_dir)}
    return subprocess.run([sys.executable, "-m", "local", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def assert_no_raw_controls(text: str) -> None:
    raw = sorted({c for c in text if (ord(c) < 0x20 and c not in "\n\t")
                  or 0x7F <= ord(c) <= 0x9F or c == "\u202e"})
    assert not raw, (raw, text)


def test_the_cli_shows_untrusted_strings_escaped(cloud: LocalCloud, endpoints: Endpoints,
                                                 tally: Any) -> None:
    create = CreateCommandRequest()
    create.set_Name(f"evil{ESCAPES}")
    create.set_Type("RunShellScript")
    create.set_Description(f"described{ESCAPES}")
    create.set_CommandContent(base64.b64encode(
        f"printf 'out{ESCAPES}\\n'".encode()).decode())
    command_id = endpoints.call(create)["CommandId"]
    invoke = InvokeCommandRequest()
    invoke.set_CommandId(command_id)
    invoke.set_InstanceIds([LINUX])
    invoke_id = endpoints.call(invoke)["InvokeId"]
    wait_for(lambda: "Success" in cli(cloud, "invocations", "show", invoke_id).stdout or None,
             timeout=20)
    for args in (("invocations", "list", "--command-id", command_id),
                 ("invocations", "show", invoke_id, "--output"),
                 ("commands", "list", "--name", f"evil{ESCAPES}"),
                 ("commands", "show", command_id),
                 ("commands", "list", "--json"),
                 ("invocations", "show", f"t-bad{ESCAPES}"),  # an error line echoing the id
                 ("results", f"t-bad{ESCAPES}")):
        done = cli(cloud, *args)
        tally["CLI outputs checked for raw escapes"] += 1
        assert_no_raw_controls(done.stdout)
        assert_no_raw_controls(done.stderr)
        if args[:2] == ("invocations", "list"):
            assert done.returncode == 0 and "evil\\x1b]0;owned\\x07" in done.stdout, done
