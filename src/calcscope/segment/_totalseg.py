"""Optional backend: TotalSegmentator's Python API, only when installed with weights on disk."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DependencyError, PipelineError
from ..model import Volume

__all__ = ["run_totalsegmentator", "totalsegmentator_weights_dir"]

_INSTALL_HINT = (
    "install it with `pip install TotalSegmentator` and fetch its weights once, while online, with "
    "`totalseg_download_weights -t total`; calcscope never downloads anything itself. Without it, "
    "leave --segmenter at auto (classical segmentation, no weights) or give --liver-mask"
)


def totalsegmentator_weights_dir() -> Path:
    """Where TotalSegmentator keeps its nnU-Net weights (TOTALSEG_WEIGHTS_PATH, TOTALSEG_HOME_DIR or ~)."""
    if os.environ.get("TOTALSEG_WEIGHTS_PATH"):
        return Path(os.environ["TOTALSEG_WEIGHTS_PATH"])
    home = Path(os.environ["TOTALSEG_HOME_DIR"]) if os.environ.get("TOTALSEG_HOME_DIR") else Path.home() / ".totalsegmentator"
    return home / "nnunet" / "results"


def _weights_present(d: Path) -> bool:
    return d.is_dir() and any(c.is_dir() and c.name.startswith("Dataset") for c in d.iterdir())


def run_totalsegmentator(volume: Volume, *, fast: bool = False, device: str = "cpu") -> np.ndarray:
    """Liver mask from TotalSegmentator (``roi_subset=["liver"]``) on the volume's grid.

    The CT goes to TotalSegmentator as a temporary NIfTI and its ``liver.nii.gz`` comes back
    through :func:`calcscope.io.load_mask_like`.

    Raises
    ------
    DependencyError
        TotalSegmentator is not importable or its weights are not on disk (nothing is downloaded).
    PipelineError
        TotalSegmentator ran but produced no liver mask.
    """
    try:
        from totalsegmentator.python_api import totalsegmentator
    except ImportError as exc:
        raise DependencyError("TotalSegmentator is not installed", hint=_INSTALL_HINT) from exc
    wdir = totalsegmentator_weights_dir()
    if not _weights_present(wdir):
        raise DependencyError(
            "TotalSegmentator is installed but its model weights are not on disk, and calcscope will not download them",
            path=str(wdir),
            hint=_INSTALL_HINT,
        )
    from ..io import load_mask_like, save_nifti

    with tempfile.TemporaryDirectory(prefix="calcscope-ts-") as td:
        ct_path = Path(td) / "ct.nii.gz"
        out_dir = Path(td) / "seg"
        save_nifti(volume.array, volume, ct_path)
        totalsegmentator(
            str(ct_path),
            str(out_dir),
            roi_subset=["liver"],
            ml=False,
            fast=fast,
            device=device,
            quiet=True,
        )
        liver = out_dir / "liver.nii.gz"
        if not liver.is_file():
            raise PipelineError("TotalSegmentator finished without writing liver.nii.gz")
        return load_mask_like(liver, volume) != 0
