"""Benchmark 3: cold start, as the import time of each handler module.

Each figure is the median over N fresh interpreter processes of the time ``import index``
takes, with the function's folder first on ``sys.path`` and the repository root on
``PYTHONPATH`` (on FC, ``shared/`` is packaged beside ``index.py``) — what FC pays before the
first invocation of a new instance. Next to them, the naive baseline: a fresh process
importing every SDK the functions use at module level (``aliyunsdkcore.client``, the three
ECS requests of the seed, ``mns.account``, ``oss2``, ``jsonschema``). The variants are run
round-robin so background noise spreads evenly. Bytecode caches are warm (one unmeasured
import first). One extra ``python -X importtime`` run per variant names the top-level imports
that cost the most.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, log
from bench.measure import median

HANDLERS = ("submit_http", "submit_queue", "submit_timer", "collect", "reconcile")
NAIVE = "naive_all_sdks"
NAIVE_IMPORTS = (
    "aliyunsdkcore.client",
    "aliyunsdkecs.request.v20140526.CreateCommandRequest",
    "aliyunsdkecs.request.v20140526.InvokeCommandRequest",
    "aliyunsdkecs.request.v20140526.DescribeInvocationResultsRequest",
    "mns.account",
    "oss2",
    "jsonschema",
)
TIMER = ("import time as _t\n_s = _t.perf_counter()\n{imports}\n"
         "print((_t.perf_counter() - _s) * 1000)\n")


def _code(variant: str) -> str:
    if variant == NAIVE:
        return TIMER.format(imports="\n".join(f"import {m}" for m in NAIVE_IMPORTS))
    return TIMER.format(imports="import index")


def _cwd(variant: str) -> Path:
    return REPO_ROOT if variant == NAIVE else REPO_ROOT / "functions" / variant


def _env() -> dict[str, str]:
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "HOME")
           if k in os.environ}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def _once(variant: str, *args: str) -> subprocess.CompletedProcess[str]:
    # ``-c`` puts the working directory first on sys.path, as FC's runtime does the code folder.
    return subprocess.run([sys.executable, *args, "-c", _code(variant)], cwd=_cwd(variant),
                          env=_env(), capture_output=True, text=True, timeout=120, check=True)


def top_imports(variant: str, count: int = 6) -> list[dict[str, Any]]:
    """The costliest imports of one run of ``python -X importtime``: what ``index`` imported
    directly (handlers), or the top-level imports (the naive baseline)."""
    done = _once(variant, "-X", "importtime")
    rows: list[dict[str, Any]] = []
    children: list[dict[str, Any]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3:
            continue
        raw_name = parts[2]
        depth = (len(raw_name) - len(raw_name.lstrip(" ")) - 1) // 2
        row = {"module": raw_name.strip(), "cumulative_ms": int(parts[1]) / 1000}
        if depth == 1:
            children.append(row)
        elif depth == 0:
            if variant == NAIVE:
                rows.append(row)
            elif row["module"] == "index":
                rows = children
            children = []
    rows.sort(key=lambda r: float(r["cumulative_ms"]), reverse=True)
    return rows[:count]


def run(runs: int) -> dict[str, Any]:
    variants = (*HANDLERS, NAIVE)
    for variant in variants:  # warm the bytecode caches; not measured
        _once(variant)
    samples: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(runs):
        for variant in variants:
            samples[variant].append(float(_once(variant).stdout.strip().splitlines()[-1]))
    result: dict[str, Any] = {"runs": runs, "import_ms": {}, "min_ms": {}, "max_ms": {},
                              "samples_ms": samples, "top_imports": {}}
    for variant in variants:
        result["import_ms"][variant] = median(samples[variant])
        result["min_ms"][variant] = min(samples[variant])
        result["max_ms"][variant] = max(samples[variant])
        result["top_imports"][variant] = top_imports(variant)
        log(f"import {variant}: median {result['import_ms'][variant]:.1f} ms over {runs}")
    return result
