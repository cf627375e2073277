"""Feature extraction from both document styles (pipeline: one finding per object; hand-written: counts)."""

from __future__ import annotations

from calcscope.model import CalcificationPattern, Change, Context, Finding, FindingsDocument, Marker
from calcscope.reason import extract_features, load_knowledge
from calcscope.reason._features import GROWTH_MIN_SD_MULTIPLE, GROWTH_THRESHOLD_PERCENT, is_growing

KB = load_knowledge()


def states(doc, ctx=None, pattern=None) -> dict[str, bool]:
    obs = extract_features(doc, ctx, pattern=pattern)
    assert set(obs) <= set(KB.features), set(obs) - set(KB.features)
    return {k: v.present for k, v in obs.items()}


def test_empty_document_closed_world_features():
    s = states(FindingsDocument())
    assert s == {"calc_present": False, "lesion_present": False, "duct_dilatation": False}


def test_handwritten_counts_and_lobes():
    doc = FindingsDocument(findings=[
        Finding(kind="lesion", count=3, density="hypodense", size_mm=40),
        Finding(kind="calcification", count=3, shape="grit", size_mm=8, location=["in_lesion_centre", "both_lobes"]),
    ])
    s = states(doc)
    assert s["calc_multiple"] and s["lesion_multiple"] and s["calc_in_lesion"] and s["calc_lesion_centre"]
    assert s["calc_grit"] and s["calc_lobe_both"] and s["lesion_large"] and s["lesion_hypodense"]
    assert s["lesion_large_with_small_calc"]
    assert s["calc_size_8_to_12mm"] and s["calc_size_medium"]
    assert s["calc_along_duct"] is False and s["calc_cyst_wall"] is False and s["duct_dilatation"] is False


def test_pipeline_links_and_pattern():
    doc = FindingsDocument(findings=[
        Finding(id="lesion-001", kind="cyst", size_mm=50, density="cystic"),
        Finding(id="calc-001", kind="calcification", size_mm=50, parent_id="lesion-001", relation="periphery", lobe="right"),
        Finding(id="duct-001", kind="duct_dilatation"),
        Finding(id="calc-002", kind="calcification", size_mm=5, parent_id="duct-001", relation="in_duct", lobe="left"),
        Finding(id="calc-003", kind="calcification", size_mm=5, parent_id="duct-001", relation="in_duct", lobe="left"),
        Finding(id="calc-004", kind="calcification", size_mm=5, parent_id="duct-001", relation="in_duct", lobe="left"),
    ])
    pat = CalcificationPattern(count=4, distribution="clustered", capsular_count=0)
    s = states(doc, pattern=pat)
    assert s["calc_cyst_wall"] and "calc_in_lesion" in s and s["calc_in_lesion"] is False  # a cyst wall is not "in lesion"
    assert s["calc_along_duct"] and s["calc_in_dilated_duct"] and s["calc_beaded"]  # 3 in a row along one duct
    assert s["calc_clustered"] and s["calc_lobe_both"] and s["lesion_cystic"]
    assert s["calc_size_large"]


def test_isolated_focus_absent_states_and_us_shadow():
    doc = FindingsDocument(modality="US", findings=[Finding(kind="calcification", shape="equal_sign", location=["right_lobe"], size_mm=3)])
    s = states(doc)
    assert s["calc_pin_equal"] and s["calc_lobe_right_only"] and s["calc_size_small"]
    assert s["calc_multiple"] is False and s["calc_in_lesion"] is False and s["calc_along_duct"] is False
    assert s["calc_acoustic_shadow"] is False  # US: absence of a described shadow counts
    ct = FindingsDocument(modality="CT", findings=[Finding(kind="calcification")])
    assert "calc_acoustic_shadow" not in states(ct)


def test_network_from_capsular_plus_septal_and_shape_on_lesion():
    doc = FindingsDocument(findings=[
        Finding(kind="calcification", count=3, location=["capsular"]),
        Finding(kind="calcification", count=5, location=["septal"]),
    ])
    s = states(doc)
    assert s["calc_network"] and s["calc_capsular"]
    lesion_shape = FindingsDocument(findings=[Finding(id="m", kind="lesion", shape="stellate", size_mm=100)])
    s2 = states(lesion_shape)
    assert s2["calc_present"] and s2["calc_in_lesion"] and s2["calc_stellate"]


def test_growth_threshold_and_scaling():
    f = Finding(kind="calcification", change=Change(growth_percent=GROWTH_THRESHOLD_PERCENT, interval_days=365))
    assert is_growing(f) is True
    assert is_growing(Finding(kind="calcification", change=Change(growth_percent=19.9, interval_days=100))) is False
    assert is_growing(Finding(kind="calcification", change=Change(growth_percent=39, interval_days=730))) is False
    assert is_growing(Finding(kind="calcification", change=Change(growth_percent=41, interval_days=730))) is True
    assert is_growing(Finding(kind="calcification", change=Change(interval_days=100))) is None
    assert is_growing(Finding(kind="calcification")) is None


def test_growth_must_exceed_its_noise_when_known():
    def grown(pct, sd):
        return is_growing(Finding(kind="calcification", change=Change(growth_percent=pct, growth_sd_percent=sd,
                                                                     volume_change_mm3=50.0, interval_days=120)))

    assert grown(40.0, None) is True  # no SD: the volume rule alone
    assert grown(40.0, 19.0) is True
    assert grown(40.0, 20.0) is False  # within GROWTH_MIN_SD_MULTIPLE (2) SDs of no change
    assert GROWTH_MIN_SD_MULTIPLE == 2.0
    # the evidence text keeps a small SD visible (not "0")
    doc = FindingsDocument(findings=[Finding(id="c", kind="calcification", size_mm=6.0, change=Change(
        growth_percent=40.0, growth_sd_percent=0.4, volume_change_mm3=50.0, interval_days=120))])
    obs = extract_features(doc)["calc_growing"]
    assert obs.present and "noise SD 0.4 percentage points" in obs.basis


def test_clinical_features():
    ctx = Context(age=4, sex="male", hbv=True, hcv=None, cirrhosis=False, fever=True,
                  markers={"afp": Marker(value=1000, unit="ng/mL"), "cea": Marker(status="normal")})
    s = states(FindingsDocument(), ctx)
    assert s["age_under_5"] and s["sex_male"] and s["viral_hepatitis"] and s["fever"]
    assert s["cirrhosis"] is False and s["afp_elevated"] and s["afp_markedly_elevated"] and s["cea_elevated"] is False
    assert "known_malignancy" not in s and "leukocytosis" not in s
    s2 = states(FindingsDocument(), Context(primary_site="breast"))
    assert s2["known_malignancy"] is True
    s3 = states(FindingsDocument(), Context(hbv=False, hcv=False))
    assert s3["viral_hepatitis"] is False
