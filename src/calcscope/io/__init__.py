"""Loading and saving images: CT volumes (NIfTI, NRRD, MHA, DICOM series, zip) and masks."""

from ._load import load_ct, load_mask_like, save_nifti

__all__ = ["load_ct", "load_mask_like", "save_nifti"]
