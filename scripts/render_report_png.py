#!/usr/bin/env python
"""Render a calcscope ``report.html`` to PNG with headless Chromium.

Usage::

    python scripts/render_report_png.py OUT/report.html docs/img/demo-report.png [--width 1100] [--height 2400]

Chromium is looked up as ``chromium``, ``chromium-browser``, ``google-chrome`` (or
``$CHROMIUM``); on Debian install it with ``apt-get install -y chromium``. The page
is self-contained, so Chromium runs with networking features disabled. With
``--max-kb`` the PNG is re-quantised to a palette (Pillow, shipped with matplotlib)
when it is larger than that.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    env = os.environ.get("CHROMIUM")
    if env:
        return env
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def render(html: Path, png: Path, *, width: int, height: int, chromium: str) -> None:
    """Screenshot ``html`` at ``width`` x ``height`` CSS pixels into ``png``."""
    with tempfile.TemporaryDirectory(prefix="calcscope-chromium-") as profile:
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={png.resolve()}",
            html.resolve().as_uri(),
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)


def shrink(png: Path, max_kb: int) -> None:
    """Quantise ``png`` to a 128-colour palette when it is bigger than ``max_kb``."""
    if png.stat().st_size <= max_kb * 1024:
        return
    from PIL import Image

    img = Image.open(png).convert("RGB")
    for colours in (128, 64, 32):
        img.quantize(colors=colours, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)
        if png.stat().st_size <= max_kb * 1024:
            return


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", type=Path)
    ap.add_argument("png", type=Path)
    ap.add_argument("--width", type=int, default=1100)
    ap.add_argument("--height", type=int, default=2400)
    ap.add_argument("--max-kb", type=int, default=None, help="re-quantise when the PNG is larger than this")
    args = ap.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print("Chromium not found; install it (Debian: apt-get install -y chromium) or set $CHROMIUM.",
              file=sys.stderr)
        return 2
    args.png.parent.mkdir(parents=True, exist_ok=True)
    render(args.html, args.png, width=args.width, height=args.height, chromium=chromium)
    if args.max_kb:
        shrink(args.png, args.max_kb)
    print(f"{args.png} {args.png.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
