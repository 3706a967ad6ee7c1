"""A real browser for the tests: Debian's headless Chromium, driven by its command line.

``--dump-dom`` prints the DOM after the page loaded and its scripts (if any could) ran;
``--virtual-time-budget`` lets the page settle (timers, a meta refresh) without real waiting;
``--screenshot`` writes a PNG. One short-lived process per look, a fresh profile each time: no
driver, no dev dependency, nothing to keep alive between tests.

Chromium is installed if it is missing (``apt-get install -y chromium``, as root — CI runs as
root); when it cannot be, the test fails with the reason (never skips). It may reach nothing
but this machine's loopback: every other host name resolves to nothing
(``--host-resolver-rules``) and its background services are off.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import pytest

FLAGS = [
    "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
    "--disable-dev-shm-usage", "--disable-extensions", "--disable-sync",
    "--disable-background-networking", "--disable-component-update",
    "--disable-domain-reliability", "--disable-client-side-phishing-detection",
    "--no-pings", "--dns-prefetch-disable", "--hide-scrollbars", "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]
if os.geteuid() == 0:  # Chromium's own sandbox refuses to run as root
    FLAGS.append("--no-sandbox")
TIMEOUT = 60


def chromium() -> str:
    """The Chromium binary, installed from Debian's packages if missing; fails if it can't be."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail("Chromium is not installed and this user cannot install it: run "
                    "`sudo apt-get install -y chromium` (the browser tests need it)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    steps = [["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, env=env, timeout=900,
                              check=False)
        if done.returncode != 0:
            pytest.fail(f"could not install Chromium ({' '.join(step)} exited "
                        f"{done.returncode}): {done.stderr.strip()[-500:]}")
    found = shutil.which("chromium")
    if not found:
        pytest.fail("apt-get installed chromium but no `chromium` is on PATH")
    return found


def _run(args: list[str]) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        done = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if done.returncode != 0:
        pytest.fail(f"chromium exited {done.returncode}: {done.stderr.strip()[-800:]}")
    return done.stdout


def dump_dom(url: str, budget_ms: int = 1500) -> str:
    """The page's DOM as Chromium has it once loaded (and scripts, if any ran, ran)."""
    return _run([f"--virtual-time-budget={budget_ms}", "--dump-dom", url])


def screenshot(url: str, path: Path, size: tuple[int, int] = (1280, 1000)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    _run([f"--window-size={size[0]},{size[1]}", f"--screenshot={path}",
          "--virtual-time-budget=1000", url])
    assert path.exists(), f"chromium wrote no screenshot to {path}"
    return path


def png_colours(path: Path, step: int = 7, rows: int = 600) -> set[tuple[int, ...]]:
    """The distinct colours of a sample of an 8-bit RGB/RGBA PNG's pixels (every ``step``-th
    of every ``step``-th row, in the first ``rows`` rows: what a person sees first), decoded
    here: IHDR, IDAT and the five row filters (https://www.w3.org/TR/png/#9Filters)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), f"unexpected PNG format {depth}/{colour}"
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    previous, colours = bytearray(stride), set()
    for y in range(min(height, rows)):
        start = y * (stride + 1)
        kind, row = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = row[i - bpp] if i >= bpp else 0
            b, c = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                row[i] = (row[i] + a) & 255
            elif kind == 2:
                row[i] = (row[i] + b) & 255
            elif kind == 3:
                row[i] = (row[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % step == 0:
            colours.update(tuple(row[x:x + 3]) for x in range(0, stride, bpp * step))
        previous = row
    return colours
