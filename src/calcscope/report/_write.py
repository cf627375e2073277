"""``write_outputs``: every output file of one analysis, written atomically."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..model import Analysis, Masks, Volume
from . import _dicom, _fhir, _html, _json, _nifti
from ._atomic import atomic_output_dir
from ._common import content_digest, label_table

__all__ = ["write_outputs", "OUTPUT_FILES"]

log = logging.getLogger(__name__)

#: files in the order they are written (the DICOM pair only for DICOM input)
OUTPUT_FILES = (
    "segmentation.nii.gz",
    "segmentation.ctbl",
    "segmentation.dcm",
    "measurements.dcm",
    "analysis.json",
    "fhir.json",
    "report.html",
)


def write_outputs(
    out_dir: str | os.PathLike,
    analysis: Analysis,
    volume: Volume,
    masks: Masks,
    *,
    force: bool = False,
) -> list[Path]:
    """Write all outputs of ``analysis`` into ``out_dir``, atomically.

    Files: ``analysis.json``, ``report.html``, ``segmentation.nii.gz`` with
    ``segmentation.ctbl``, ``fhir.json``, and when ``volume.source_files`` is not
    empty (DICOM input) ``segmentation.dcm`` and ``measurements.dcm``. When
    ``analysis.labels`` is empty it is filled with the label table of the written
    label map. When the DICOM pair cannot be written because the analysed grid no
    longer matches the source files, the reason is added to ``analysis.warnings``
    (of the written copy) and the other files are still written.

    Parameters
    ----------
    out_dir:
        Destination folder; must not exist unless ``force``.
    analysis, volume, masks:
        The result, the analysed volume and its masks (same grid).
    force:
        Replace an existing folder (only once the new one is complete).

    Returns
    -------
    list of Path
        The files written, inside ``out_dir``, sorted by name.

    Raises
    ------
    calcscope.errors.OutputError
        ``out_dir`` exists without ``force`` or cannot be created. Any other error
        propagates after the temporary folder is removed, leaving no output.
    """
    out = Path(out_dir)
    with atomic_output_dir(out, force=force) as tmp:
        label_map = masks.label_map() if any(
            m is not None for m in (masks.liver, masks.lesions, masks.calcifications, masks.ducts)
        ) else None
        if label_map is None:
            import numpy as np

            label_map = np.zeros(volume.shape, dtype=np.uint16)
        extra: dict = {}
        if not analysis.labels:
            extra["labels"] = label_table(analysis, label_map)
        report = analysis.model_copy(update=extra) if extra else analysis
        digest = content_digest(report, volume, label_map)
        _nifti.write_label_map(tmp, volume, masks, report, label_map=label_map)
        has_dicom = False
        if volume.source_files:
            try:
                sources = _dicom.read_source_datasets(volume)
                notes = _dicom.complete_sources(sources, digest)
                seg = _dicom.write_dicom_seg(tmp / "segmentation.dcm", report, volume, masks, digest=digest,
                                             label_map=label_map, sources=sources)
                _dicom.write_dicom_sr(tmp / "measurements.dcm", report, volume, seg, digest=digest,
                                      sources=sources)
                has_dicom = True
                if notes:
                    report = report.model_copy(update={"warnings": [*report.warnings, *notes]})
            except _dicom.DicomMismatch as exc:
                for name in ("segmentation.dcm", "measurements.dcm"):
                    (tmp / name).unlink(missing_ok=True)
                msg = f"DICOM SEG/SR not written: {exc}"
                log.warning(msg)
                report = report.model_copy(update={"warnings": [*report.warnings, msg]})
        (tmp / "analysis.json").write_bytes(_json.analysis_json_bytes(report))
        bundle = _fhir.build_fhir_bundle(report, digest=digest)
        (tmp / "fhir.json").write_bytes(_fhir.fhir_json_bytes(bundle))
        html = _html.render_html(report, volume, masks, has_dicom=has_dicom)
        (tmp / "report.html").write_text(html, encoding="utf-8")
        names = sorted(p.name for p in tmp.iterdir())
    return [out / n for n in names]
