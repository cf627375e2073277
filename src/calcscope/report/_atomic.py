"""Atomic creation of an output folder.

Everything is written into a temporary folder created beside the destination (same
file system, so the final step is a rename). Only when every file is complete does
the temporary folder take the destination's name. Any exception removes the
temporary folder and propagates, so a failed run leaves neither a partial output
folder nor a stray temporary one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import OutputError

__all__ = ["atomic_output_dir"]


def _check_destination(out_dir: Path, *, force: bool) -> None:
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise OutputError(
            "the output path exists and is not a folder",
            path=str(out_dir),
            hint="choose another --out path",
        )
    if out_dir.exists() and not force:
        raise OutputError(
            "the output folder already exists; calcscope does not overwrite results silently",
            path=str(out_dir),
            hint="choose another --out folder or pass --force to replace it",
        )


@contextlib.contextmanager
def atomic_output_dir(out_dir: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``out_dir`` when the block succeeds.

    Parameters
    ----------
    out_dir: str or PathLike
        Final folder. Its parent is created when missing.
    force: bool
        Replace an existing ``out_dir``; the old folder is removed only after the
        new one is complete and in place.

    Raises
    ------
    OutputError
        ``out_dir`` exists (without ``force``), is a file, or cannot be created.
    """
    out = Path(out_dir)
    _check_destination(out, force=force)
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    except OSError as exc:
        raise OutputError(
            f"the output folder cannot be created ({exc.strerror or exc})",
            path=str(out),
            hint="check that the parent folder exists and is writable",
        ) from exc
    try:
        yield tmp
        _check_destination(out, force=force)  # something may have appeared meanwhile
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            old.rmdir()
            os.replace(out, old)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
