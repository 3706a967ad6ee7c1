"""`assistflow package`: one zip per function whose handler imports in a bare Python 3.10.

Each zip is unpacked alone next to a fresh virtual environment without pip or anything else,
and its handler plus every SDK the handlers use at run time are imported there, as FC's
python3.10 runtime would. Wheels come from the cache (``~/.cache/assistflow``); only a first run
on a machine downloads them.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

from local.tools.package import functions_of

REPO = Path(__file__).resolve().parents[2]
# What the handlers import at run time (lazily, so `import index` alone would not prove it).
RUNTIME_IMPORTS = ("oss2", "jsonschema", "mns.account", "mns.queue", "aliyunsdkcore.client",
                   "aliyunsdkecs.request.v20140526.InvokeCommandRequest", "shared.clients",
                   "shared.request", "shared.collect", "shared.intake")


def python310() -> tuple[str, str, str]:
    """(interpreter, its X.Y, a note if it is not Python 3.10)."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = [shutil.which("python3.10"),
                  *sorted(glob.glob(f"{root}/versions/3.10*/bin/python3.10"))]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=30)
        if probe.returncode == 0 and probe.stdout.strip() == "3.10":
            return candidate, "3.10", ""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return sys.executable, version, (
        f"no working python3.10 on PATH or under {root}: the zips are built for and imported "
        f"in the current interpreter, Python {version}, instead of FC's 3.10")


def package(out: Path, version: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "local", "package", "--out", str(out),
                           "--python-version", version, *extra], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_package_builds_zips_whose_handlers_import_in_a_bare_python310(tmp_path: Path) -> None:
    interpreter, version, note = python310()
    if note:  # said out loud, never a silent skip
        print(f"NOTE: {note}")
        warnings.warn(note, stacklevel=1)
    done = package(tmp_path / "dist", version, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    expected = {f.object_name: f for f in functions_of(REPO / "template.yml")}
    packages = {Path(p["Zip"]).name: p for p in report["Packages"]}
    assert set(packages) == set(expected)
    assert any("oss2 has no wheel on PyPI" in note for note in report["Notes"])

    venv = tmp_path / "venv"
    subprocess.run([interpreter, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    for name, item in packages.items():
        assert item["OssObjectName"] == name and item["Bytes"] > 1_000_000
        with zipfile.ZipFile(item["Zip"]) as archive:
            names = set(archive.namelist())
            assert {"index.py", "shared/__init__.py", "shared/schemas/command-request.v1.json",
                    "oss2/__init__.py", "jsonschema/__init__.py"} <= names
            assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
            assert "__init__.py" not in names and not any(n.startswith(("local/", "functions/",
                                                                         "bin/")) for n in names)
            code = tmp_path / "code" / name
            archive.extractall(code)
        probe = ("import importlib, importlib.util, sys; sys.path.insert(0, '.');"
                 "import index; assert callable(index.handler);"
                 f"[importlib.import_module(m) for m in {RUNTIME_IMPORTS!r}];"
                 "assert importlib.util.find_spec('yaml') is None;"  # only what the zip holds
                 "assert importlib.util.find_spec('local') is None;"
                 "print(sys.version_info[:2])")
        ran = subprocess.run([str(venv / "bin" / "python"), "-I", "-c", probe], cwd=code,
                             capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, f"{name}: {ran.stderr}"
        assert ran.stdout.strip() == str(tuple(int(p) for p in version.split(".")))

    again = package(tmp_path / "again", version)  # human output; the wheels are cached now
    assert again.returncode == 0, again.stderr
    for name in packages:
        assert f"oss://<CodeBucket>/{name}" in again.stdout
        assert digest(tmp_path / "again" / name) == digest(tmp_path / "dist" / name)  # same bytes
    assert again.stdout.splitlines()[-1].startswith("upload each zip under its OssObjectName")
