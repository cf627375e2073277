"""The shared data model: geometry conversions, label map, context validation."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from pydantic import ValidationError

from calcscope.model import (
    CALC_LABEL_BASE,
    LABEL_DUCT,
    LABEL_LIVER,
    LESION_LABEL_BASE,
    Analysis,
    Context,
    Finding,
    Masks,
    Volume,
)


def _oblique_volume() -> Volume:
    rng = np.random.default_rng(0)
    arr = rng.integers(-100, 100, size=(5, 7, 9)).astype(np.int16)
    # a rotation about z by 30 degrees with a flip of the slice axis
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, -1.0)
    return Volume(arr, spacing_zyx=(3.0, 0.8, 0.7), origin_lps=(-10.0, 20.0, 300.0), direction=direction)


def test_voxel_to_mm_matches_simpleitk():
    vol = _oblique_volume()
    img = vol.to_sitk()
    for zyx in [(0, 0, 0), (4, 6, 8), (2, 3, 1)]:
        expected = img.TransformIndexToPhysicalPoint((zyx[2], zyx[1], zyx[0]))
        np.testing.assert_allclose(vol.voxel_to_mm(zyx), expected, atol=1e-9)
    pts = np.array([[1.5, 2.25, 3.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(vol.mm_to_voxel(vol.voxel_to_mm(pts)), pts, atol=1e-9)


def test_sitk_round_trip_keeps_array_and_geometry():
    vol = _oblique_volume()
    back = Volume.from_sitk(vol.to_sitk())
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.spacing_zyx == pytest.approx(vol.spacing_zyx)
    assert back.origin_lps == pytest.approx(vol.origin_lps)
    assert back.direction == pytest.approx(vol.direction)
    assert sitk.GetArrayFromImage(vol.to_sitk()).shape == (5, 7, 9)


def test_orientation_code_and_affine():
    vol = Volume(np.zeros((2, 3, 4), np.int16), spacing_zyx=(2.0, 1.0, 0.5))
    assert vol.orientation_code() == "LPS"
    flipped = Volume(np.zeros((2, 3, 4), np.int16), spacing_zyx=(2, 1, 1), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))
    assert flipped.orientation_code() == "RAS"
    np.testing.assert_allclose(np.diag(vol.affine_lps())[:3], (0.5, 1.0, 2.0))
    assert vol.voxel_volume_mm3 == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs",
    [dict(spacing_zyx=(0, 1, 1)), dict(spacing_zyx=(-1, 1, 1)), dict(spacing_zyx=(1, 1))],
)
def test_volume_rejects_bad_spacing(kwargs):
    with pytest.raises(ValueError, match="spacing"):
        Volume(np.zeros((2, 2, 2)), **kwargs)


def test_volume_rejects_non_3d():
    with pytest.raises(ValueError, match="3-D"):
        Volume(np.zeros((2, 2)), spacing_zyx=(1, 1, 1))


def test_label_map_values_and_precedence():
    shape = (4, 6, 6)
    liver = np.zeros(shape, bool)
    liver[:, 1:5, 1:5] = True
    lesions = np.zeros(shape, np.int32)
    lesions[1:3, 2:4, 2:4] = 1
    calcs = np.zeros(shape, np.int32)
    calcs[2, 2, 2] = 1
    calcs[0, 1, 1] = 2
    ducts = np.zeros(shape, bool)
    ducts[3, 4, 1:5] = True
    lm = Masks(liver=liver, lesions=lesions, calcifications=calcs, ducts=ducts).label_map()
    assert lm.dtype == np.uint16
    assert lm[2, 2, 2] == CALC_LABEL_BASE + 1
    assert lm[0, 1, 1] == CALC_LABEL_BASE + 2
    assert lm[1, 2, 2] == LESION_LABEL_BASE + 1
    assert lm[3, 4, 2] == LABEL_DUCT
    assert lm[0, 4, 4] == LABEL_LIVER
    assert lm[0, 0, 0] == 0


def test_context_refuses_unknown_and_impossible_fields():
    with pytest.raises(ValidationError, match="agee"):
        Context.model_validate({"agee": 40})
    with pytest.raises(ValidationError, match="age"):
        Context.model_validate({"age": 240})
    ctx = Context.model_validate({"age": 54, "sex": "female", "markers": {"cea": {"value": 12, "unit": "ng/mL"}}})
    assert ctx.markers["cea"].value == 12


def test_finding_vocabulary_is_closed():
    Finding(kind="calcification", shape="pin", location=["right_lobe"])
    with pytest.raises(ValidationError):
        Finding(kind="calcification", shape="popcorn-ish")
    with pytest.raises(ValidationError):
        Finding(kind="tumour")


def test_analysis_json_schema_is_exported():
    schema = Analysis.model_json_schema()
    assert "findings" in schema["properties"]
    assert "Finding" in schema["$defs"]
