"""Safe extraction of zip archives into a temporary folder that is always removed."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ArchiveError

__all__ = ["ArchiveLimits", "DEFAULT_ARCHIVE_LIMITS", "extracted_zip", "is_zip_file", "TEMP_PREFIX"]

#: prefix of the temporary folders calcscope creates (tests look for leftovers by it)
TEMP_PREFIX = "calcscope-zip-"

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    """Limits that protect against zip bombs and abuse.

    Attributes
    ----------
    max_total_bytes: int
        Largest total uncompressed size accepted (declared and actually extracted).
    max_entries: int
        Largest number of entries (files and folders) accepted.
    max_ratio: float
        Largest uncompressed/compressed ratio accepted for one entry ...
    ratio_min_bytes: int
        ... when that entry declares at least this many uncompressed bytes (tiny
        files legitimately compress very well).
    """

    max_total_bytes: int = 8 * 1024**3
    max_entries: int = 50_000
    max_ratio: float = 200.0
    ratio_min_bytes: int = 1 << 20


DEFAULT_ARCHIVE_LIMITS = ArchiveLimits()


def is_zip_file(path: Path) -> bool:
    """True when ``path`` ends in .zip or starts with the zip local-header signature."""
    if path.name.lower().endswith(".zip"):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _safe_member_path(name: str, *, archive: str) -> PurePosixPath | None:
    """Relative POSIX path of a member, refusing absolute paths and '..' components."""
    norm = name.replace("\\", "/")
    pure = PurePosixPath(norm)
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in pure.parts:
        raise ArchiveError(
            f"the archive contains an entry that would be written outside the extraction folder ('{name}'): "
            "path traversal",
            path=archive,
            hint="this archive is unsafe; re-create it with relative paths only",
        )
    parts = [p for p in pure.parts if p not in ("", ".")]
    if not parts:
        return None
    return PurePosixPath(*parts)


def _check_members(zf: zipfile.ZipFile, *, archive: str, limits: ArchiveLimits) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise ArchiveError(
            f"the archive has {len(infos)} entries, more than the {limits.max_entries} calcscope accepts",
            path=archive,
            hint="unzip it yourself and pass the folder of the series you want",
        )
    total = sum(info.file_size for info in infos)
    if total > limits.max_total_bytes:
        raise ArchiveError(
            f"the archive declares {total / 1024**3:.1f} GiB of uncompressed data, more than the "
            f"{limits.max_total_bytes / 1024**3:.1f} GiB calcscope accepts; refusing a possible zip bomb",
            path=archive,
            hint="unzip it yourself if you trust it and pass the folder",
        )
    members: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    for info in infos:
        rel = _safe_member_path(info.filename, archive=archive)
        mode = (info.external_attr >> 16) & 0xFFFF
        if stat.S_ISLNK(mode):
            raise ArchiveError(
                f"the archive contains a symbolic link ('{info.filename}'), which calcscope does not extract",
                path=archive,
                hint="re-create the archive without links",
            )
        if info.flag_bits & 0x1:
            raise ArchiveError(
                f"the archive entry '{info.filename}' is encrypted",
                path=archive,
                hint="decrypt the archive first",
            )
        if info.file_size >= limits.ratio_min_bytes:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_ratio:
                raise ArchiveError(
                    f"the archive entry '{info.filename}' expands {ratio:.0f}-fold "
                    f"({info.compress_size} bytes to {info.file_size} bytes), more than the {limits.max_ratio:.0f}-fold "
                    "calcscope accepts; refusing a possible zip bomb",
                    path=archive,
                    hint="unzip it yourself if you trust it and pass the folder",
                )
        if rel is not None and not info.is_dir():
            members.append((info, rel))
    return members


@contextmanager
def extracted_zip(path: str | os.PathLike, *, limits: ArchiveLimits | None = None) -> Iterator[Path]:
    """Extract a zip archive safely into a temporary folder, yield it, then remove it.

    The declared sizes, the compression ratio of each entry, the number of entries and
    every entry's path are checked before anything is written; while extracting, the
    bytes actually produced are counted again so that a lying header cannot get past.

    Parameters
    ----------
    path: str or PathLike
        The zip archive.
    limits: ArchiveLimits, optional
        Defaults to :data:`DEFAULT_ARCHIVE_LIMITS`.

    Yields
    ------
    Path
        The temporary folder holding the extracted files; removed on exit, even on error.

    Raises
    ------
    ArchiveError
        Not a valid zip, damaged, encrypted, path traversal, links, or beyond the limits.
    """
    lim = DEFAULT_ARCHIVE_LIMITS if limits is None else limits
    archive = str(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise ArchiveError(
            f"the file is not a readable zip archive ({exc})",
            path=archive,
            hint="check that the download or copy completed",
        ) from exc
    with zf, tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as tmp:
        members = _check_members(zf, archive=archive, limits=lim)
        declared = sum(info.file_size for info, _ in members)
        free = shutil.disk_usage(tmp).free
        if declared > free:
            raise ArchiveError(
                f"the archive needs {declared / 1024**2:.0f} MiB to extract but only {free / 1024**2:.0f} MiB are free "
                "in the temporary folder",
                path=archive,
                hint="free disk space or set TMPDIR to a larger disk",
            )
        root = Path(tmp)
        written = 0
        for info, rel in members:
            target = root.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            produced = 0
            try:
                with zf.open(info) as src, open(target, "wb") as dst:
                    while chunk := src.read(_CHUNK):
                        produced += len(chunk)
                        written += len(chunk)
                        if produced > info.file_size or written > lim.max_total_bytes:
                            raise ArchiveError(
                                f"the archive entry '{info.filename}' expands beyond its declared size; "
                                "refusing a possible zip bomb",
                                path=archive,
                                hint="unzip it yourself if you trust it and pass the folder",
                            )
                        dst.write(chunk)
            except ArchiveError:
                raise
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
                raise ArchiveError(
                    f"the archive entry '{info.filename}' could not be extracted ({exc})",
                    path=archive,
                    hint="the archive is damaged or uses an unsupported compression; re-create it",
                ) from exc
        yield root
