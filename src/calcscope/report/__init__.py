"""Report layer: everything calcscope writes for one analysed study.

:func:`write_outputs` is the entry point used by the pipeline; the other functions
produce one output each and can be used on their own. See ``docs/outputs.md``.
"""

from ._atomic import atomic_output_dir
from ._common import content_digest, label_table
from ._dicom import DicomMismatch, SegResult, write_dicom_seg, write_dicom_sr
from ._fhir import FHIR_VERSION, build_fhir_bundle, fhir_json_bytes
from ._html import render_html
from ._json import analysis_json_bytes
from ._nifti import colour_table_text, write_label_map
from ._write import OUTPUT_FILES, write_outputs

__all__ = [
    "write_outputs",
    "render_html",
    "write_label_map",
    "write_dicom_seg",
    "write_dicom_sr",
    "build_fhir_bundle",
    "analysis_json_bytes",
    "fhir_json_bytes",
    "colour_table_text",
    "label_table",
    "content_digest",
    "atomic_output_dir",
    "DicomMismatch",
    "SegResult",
    "FHIR_VERSION",
    "OUTPUT_FILES",
]
