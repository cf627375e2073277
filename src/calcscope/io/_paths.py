"""Checks on the input path before anything is read: existence, permissions, link loops."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..errors import InputNotFoundError

__all__ = ["check_input_path", "describe_os_error"]


def describe_os_error(exc: OSError) -> str:
    """A short human reason for an ``OSError`` raised while opening a path."""
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link loop (the link points, directly or not, back to itself)"
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "it does not exist"
    if isinstance(exc, NotADirectoryError):
        return "a part of the path is not a folder"
    return exc.strerror or type(exc).__name__


def check_input_path(path: str | os.PathLike) -> Path:
    """Return ``path`` as a :class:`Path` once it is known to exist and be readable.

    Parameters
    ----------
    path: str or PathLike
        A file or folder given by the user.

    Returns
    -------
    Path
        The same path (not resolved, so messages show what the user typed).

    Raises
    ------
    InputNotFoundError
        The path does not exist, is a dangling or looping symbolic link, or cannot be
        read (permissions).
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and os.path.lexists(p):
            raise InputNotFoundError(
                "the input is a symbolic link whose target does not exist",
                path=str(p),
                hint="point calcscope at the real file or folder",
            ) from exc
        if isinstance(exc, FileNotFoundError):
            raise InputNotFoundError(
                "the input path does not exist",
                path=str(p),
                hint="check the spelling and the working directory",
            ) from exc
        raise InputNotFoundError(
            f"the input path cannot be opened: {describe_os_error(exc)}",
            path=str(p),
            hint="fix the link or the permissions, or point calcscope at the real data",
        ) from exc
    import stat as _stat

    if _stat.S_ISDIR(st.st_mode):
        try:
            with os.scandir(p) as it:
                next(it, None)
        except OSError as exc:
            raise InputNotFoundError(
                f"the input folder cannot be listed: {describe_os_error(exc)}",
                path=str(p),
                hint="give your user read and execute permission on the folder (chmod u+rx)",
            ) from exc
    elif _stat.S_ISREG(st.st_mode):
        try:
            with open(p, "rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise InputNotFoundError(
                f"the input file cannot be read: {describe_os_error(exc)}",
                path=str(p),
                hint="give your user read permission on the file (chmod u+r)",
            ) from exc
    else:
        raise InputNotFoundError(
            "the input is neither a regular file nor a folder (a device, socket or pipe?)",
            path=str(p),
            hint="give calcscope an image file, a DICOM folder or a zip archive",
        )
    return p
