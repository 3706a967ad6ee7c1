"""One zip per function of ``template.yml``, as Function Compute runs it.

Each zip holds the function's ``index.py`` (its ``Metadata.assistflow.CodeDir``) at the root,
``shared/`` beside it, and the runtime dependencies — ``[project] dependencies`` of
pyproject.toml, nothing of the ``local``/``dev`` extras — vendored for FC's python3.10 on
manylinux x86_64 with ``pip install --target … --platform manylinux2014_x86_64
--python-version 3.10 --only-binary=:all:``. The zip is named after the function's
``Code.OssObjectName``: upload it to the ``CodeBucket`` under exactly that name.

Wheels are cached (``~/.cache/assistflow/wheels-…``, ``$ASSISTFLOW_CACHE_DIR`` overrides), so a
second run needs no network. A dependency PyPI has only as source (oss2, crcmod) is built into a
wheel here *without a compiler*: a pure-Python build is portable to FC; one that needs a
compiler cannot be vendored from this machine, and packaging stops saying so.

Zips are reproducible: sorted entries, fixed timestamps.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLATFORM = "manylinux2014_x86_64"
PYTHON_VERSION = "3.10"
REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_ENV = "ASSISTFLOW_CACHE_DIR"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can store: reproducible archives
SKIP_PARTS = {"__pycache__"}
BUILT_RECORD = "built-from-source.json"


class PackagingError(Exception):
    """Packaging cannot continue; the message says why and what to do, in one line."""


@dataclass(frozen=True)
class FunctionCode:
    logical_id: str
    function_name: str  # as the template writes it (may be an Fn::Sub)
    code_dir: Path
    handler: str  # index.handler
    object_name: str  # Code.OssObjectName: the zip's name in the CodeBucket


@dataclass(frozen=True)
class Package:
    function: FunctionCode
    path: Path
    size: int
    files: int

    def to_dict(self) -> dict[str, Any]:
        return {"Function": self.function.logical_id, "Zip": str(self.path), "Bytes": self.size,
                "Files": self.files, "OssObjectName": self.function.object_name,
                "Handler": self.function.handler, "CodeDir": str(self.function.code_dir)}


def default_cache() -> Path:
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "assistflow")
    return Path(base)


def functions_of(template: Path) -> list[FunctionCode]:
    """Every ``ALIYUN::FC3::Function`` of the template with where its code is and goes."""
    import yaml

    data = yaml.safe_load(template.read_text(encoding="utf-8")) or {}
    found = []
    for logical_id, decl in (data.get("Resources") or {}).items():
        if not isinstance(decl, dict) or decl.get("Type") != "ALIYUN::FC3::Function":
            continue
        props = decl.get("Properties") or {}
        code_dir = ((decl.get("Metadata") or {}).get("assistflow") or {}).get("CodeDir")
        object_name = (props.get("Code") or {}).get("OssObjectName")
        if not isinstance(code_dir, str):
            raise PackagingError(f"{template.name}: {logical_id} has no Metadata.assistflow."
                                 "CodeDir; add the folder of its index.py")
        if not isinstance(object_name, str):
            raise PackagingError(f"{template.name}: {logical_id} Code.OssObjectName must be a "
                                 "plain name (the zip's name), not a parameter or function")
        handler = str(props.get("Handler", "index.handler"))
        module = handler.rsplit(".", 1)[0]
        directory = (template.parent / code_dir).resolve()
        if not (directory / f"{module.replace('.', '/')}.py").is_file():
            raise PackagingError(f"{template.name}: {logical_id}: {code_dir}/{module}.py does "
                                 f"not exist (Handler {handler})")
        found.append(FunctionCode(logical_id, json.dumps(props.get("FunctionName")), directory,
                                  handler, object_name))
    if not found:
        raise PackagingError(f"{template.name} declares no ALIYUN::FC3::Function")
    return found


def runtime_requirements(root: Path = REPO_ROOT) -> list[str]:
    """pyproject's ``[project] dependencies``: what the deployed functions import."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: the installed metadata holds the same list
        from importlib.metadata import requires

        return [r for r in requires("assistflow") or [] if "extra ==" not in r]
    with open(root / "pyproject.toml", "rb") as fh:
        return list(tomllib.load(fh)["project"]["dependencies"])


def _pip(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, env=env, timeout=600)


def _last_error(done: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in done.stderr.splitlines()
             if ln.startswith("ERROR") or "error" in ln.lower()]
    return (lines[-1] if lines else (done.stderr.strip().splitlines() or ["pip failed"])[-1])


def vendor(requirements: list[str], target: Path, cache: Path,
           python_version: str = PYTHON_VERSION,
           say: Callable[[str], None] = lambda _: None) -> list[str]:
    """Install ``requirements`` for FC into ``target``; notes on wheels built from source.

    Offline from the wheel cache when it has everything; otherwise pip downloads what is
    missing into the cache first.
    """
    wheels = cache / f"wheels-{PLATFORM}-cp{python_version.replace('.', '')}"
    wheels.mkdir(parents=True, exist_ok=True)
    platform = ["--platform", PLATFORM, "--python-version", python_version,
                "--implementation", "cp", "--only-binary=:all:"]
    install = ["install", "--no-index", "--find-links", str(wheels), "--target", str(target),
               "--no-compile", "--quiet", *platform, *requirements]
    done = _pip(install)
    if done.returncode != 0:
        say(f"downloading wheels for python{python_version} {PLATFORM} into {wheels}")
        _download(requirements, wheels, platform, say)
        shutil.rmtree(target, ignore_errors=True)
        done = _pip(install)
        if done.returncode != 0:
            raise PackagingError(f"pip could not install the dependencies from {wheels}: "
                                 f"{_last_error(done)}")
    for leftover in ("bin",):  # console scripts: FC runs none of them
        shutil.rmtree(target / leftover, ignore_errors=True)
    record = wheels / BUILT_RECORD
    built = json.loads(record.read_text()) if record.exists() else {}
    return [f"{name} has no wheel on PyPI: vendored a pure-Python wheel built from its "
            "source distribution" for name in sorted(built)]


def _download(requirements: list[str], wheels: Path, platform: list[str],
              say: Callable[[str], None]) -> None:
    record = wheels / BUILT_RECORD
    built: dict[str, str] = json.loads(record.read_text()) if record.exists() else {}
    for _ in range(20):  # pip reports one sdist-only requirement at a time
        done = _pip(["download", "--dest", str(wheels), "--find-links", str(wheels), "--quiet",
                     *platform, *requirements])
        if done.returncode == 0:
            return
        missing = re.search(r"No matching distribution found for (\S+)", done.stderr)
        if not missing:
            raise PackagingError(f"pip could not download the dependencies (offline, with no "
                                 f"cached wheels in {wheels}?): {_last_error(done)}")
        requirement = missing.group(1)
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        if name in built:
            raise PackagingError(f"{requirement} has no wheel for {platform[1]} "
                                 f"python{platform[3]}, even after building one")
        say(f"{requirement}: no wheel on PyPI; building a pure-Python one from its source")
        with tempfile.TemporaryDirectory() as scratch:
            # No compiler: setup scripts with an optional C speed-up (crcmod) fall back to
            # pure Python, which is portable to FC; anything needing a compiler fails here.
            env = {**os.environ, "CC": "false", "CXX": "false"}
            made = _pip(["wheel", "--no-deps", "--no-binary", ":all:", "--no-cache-dir",
                         "--wheel-dir", scratch, "--quiet", requirement], env=env)
            wheel = next(Path(scratch).glob("*.whl"), None)
            if made.returncode != 0 or wheel is None or not wheel.name.endswith("-none-any.whl"):
                raise PackagingError(
                    f"{requirement} has no wheel for python{platform[3]} {platform[1]} on PyPI "
                    "and its source needs a compiler; pin a version that ships manylinux "
                    "wheels, or build it on a manylinux machine and put the wheel in "
                    f"{wheels}")
            shutil.move(str(wheel), wheels / wheel.name)
        built[name] = wheel.name
        record.write_text(json.dumps(built, indent=2, sort_keys=True))
    raise PackagingError("pip kept finding requirements without wheels; giving up")


def _files(root: Path, prefix: str = "", skip_init: bool = False) -> list[tuple[str, Path]]:
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or SKIP_PARTS & set(rel.parts) or path.suffix == ".pyc":
            continue
        if skip_init and rel == Path("__init__.py"):
            continue  # functions/<name>/__init__.py makes it a package here; FC imports index
        out.append((prefix + rel.as_posix(), path))
    return out


def write_zip(dest: Path, entries: list[tuple[str, Path]]) -> int:
    names = [name for name, _ in entries]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise PackagingError(f"{dest.name}: several files would be {clash[0]}; a vendored "
                             "package shadows the function or shared/")
    tmp = dest.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name, path in sorted(entries):
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.external_attr = ((path.stat().st_mode & 0o777) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    tmp.replace(dest)
    return len(entries)


def build(template: Path, out: Path, cache: Path | None = None,
          python_version: str = PYTHON_VERSION,
          say: Callable[[str], None] = lambda _: None) -> tuple[list[Package], list[str]]:
    """Write one zip per function into ``out``; the packages and notes about them."""
    functions = functions_of(template)
    out.mkdir(parents=True, exist_ok=True)
    shared = [(name, path) for name, path in _files(REPO_ROOT / "shared", "shared/")
              if path.suffix in (".py", ".json") or path.name == "py.typed"]
    with tempfile.TemporaryDirectory(prefix="assistflow-vendor-") as scratch:
        target = Path(scratch) / "vendor"
        notes = vendor(runtime_requirements(), target, cache or default_cache(), python_version,
                       say)
        vendored = _files(target)
        packages = []
        for function in functions:
            dest = out / Path(function.object_name).name
            count = write_zip(dest, _files(function.code_dir, skip_init=True) + shared + vendored)
            packages.append(Package(function, dest, dest.stat().st_size, count))
    return packages, notes
