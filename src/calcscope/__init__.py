"""calcscope: find, measure, reason about and follow liver calcifications and lesions on CT.

Decision support only: not a diagnostic device.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("calcscope")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"

from .errors import CalcscopeError
from .model import Analysis, Context, Finding, Volume

__all__ = ["__version__", "CalcscopeError", "Analysis", "Context", "Finding", "Volume", "analyze"]


def analyze(*args, **kwargs):
    """Run the whole pipeline on one CT; see :func:`calcscope.pipeline.analyze`."""
    from .pipeline import analyze as _analyze

    return _analyze(*args, **kwargs)
