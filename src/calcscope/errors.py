"""Error hierarchy of calcscope.

Every error a user can cause derives from :class:`CalcscopeError`. Each class
carries its own process exit code so that scripts calling the ``calcscope``
command can tell failures apart, and each message is written as one paragraph:
what is wrong, which file, and what to do about it.

Exit codes
----------
====  ==============================  =========================================
code  class                           meaning
====  ==============================  =========================================
2     UsageError                      bad command-line option or argument
3     InputNotFoundError              path missing, unreadable or a link loop
4     UnsupportedFormatError          not a CT file/folder calcscope can read
5     CorruptInputError               truncated/damaged file, NaN/inf voxels
6     ModalityError                   not CT (MR, US, PT...) without override
7     GeometryError                   2-D/4-D image, bad spacing, tilt, gaps
8     SeriesSelectionError            several CT series, none chosen
9     ArchiveError                    zip unsafe (bomb, path traversal) or bad
10    MaskError                       user mask empty/non-overlapping/implausible
11    ContextError                    clinical context invalid
12    FindingsError                   findings document invalid
13    OutputError                     output folder exists / cannot be written
14    PipelineError                   a stage failed on valid input
15    DependencyError                 optional backend missing (e.g. TotalSegmentator)
16    KnowledgeBaseError              knowledge-base files missing or invalid
====  ==============================  =========================================
"""

from __future__ import annotations

__all__ = [
    "CalcscopeError",
    "UsageError",
    "InputNotFoundError",
    "UnsupportedFormatError",
    "CorruptInputError",
    "ModalityError",
    "GeometryError",
    "SeriesSelectionError",
    "ArchiveError",
    "MaskError",
    "ContextError",
    "FindingsError",
    "OutputError",
    "PipelineError",
    "DependencyError",
    "KnowledgeBaseError",
]


class CalcscopeError(Exception):
    """Base class of all errors caused by user input or environment.

    Parameters
    ----------
    message: str
        What is wrong, in one or two sentences.
    path: str | None
        The file or folder concerned, if any.
    hint: str | None
        What the user can do about it.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.hint = hint
        super().__init__(self.paragraph())

    def paragraph(self) -> str:
        """The message as one readable paragraph (what, which file, what to do)."""
        parts = [_sentence(self.message)]
        if self.path:
            parts.append(f"File: {self.path}.")
        if self.hint:
            parts.append(_sentence(self.hint))
        return " ".join(parts)


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return (text[:1].upper() + text[1:] + ".") if text else ""


class UsageError(CalcscopeError):
    exit_code = 2


class InputNotFoundError(CalcscopeError):
    exit_code = 3


class UnsupportedFormatError(CalcscopeError):
    exit_code = 4


class CorruptInputError(CalcscopeError):
    exit_code = 5


class ModalityError(CalcscopeError):
    exit_code = 6


class GeometryError(CalcscopeError):
    exit_code = 7


class SeriesSelectionError(CalcscopeError):
    exit_code = 8


class ArchiveError(CalcscopeError):
    exit_code = 9


class MaskError(CalcscopeError):
    exit_code = 10


class ContextError(CalcscopeError):
    exit_code = 11


class FindingsError(CalcscopeError):
    exit_code = 12


class OutputError(CalcscopeError):
    exit_code = 13


class PipelineError(CalcscopeError):
    exit_code = 14


class DependencyError(CalcscopeError):
    exit_code = 15


class KnowledgeBaseError(CalcscopeError):
    """The knowledge-base files are missing or invalid (a packaging or editing fault)."""

    exit_code = 16
