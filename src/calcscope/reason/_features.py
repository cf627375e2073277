"""Turn a findings document, a clinical context and a calcification pattern into features.

Each feature of ``knowledge/features.yaml`` ends up in one of three states: present,
known absent, or unknown (not in the returned mapping). Unknown features do not enter the
score. Which features become "known absent" when nothing is said about them is a
deliberate, documented choice (``docs/findings-vocabulary.md``):

* always decided: ``calc_present``, ``lesion_present``, ``duct_dilatation`` (a report
  describes every calcification, lesion and dilated duct it sees);
* decided once a calcification is present: ``calc_multiple``, ``calc_in_lesion``,
  ``calc_cyst_wall``, ``calc_along_duct``, ``calc_capsular``; ``calc_in_dilated_duct``
  once a calcification lies along a duct; ``calc_acoustic_shadow`` on ultrasound
  documents; size features once sizes are given; growth once a change is given;
* decided once a lesion is present: ``lesion_multiple``, ``lesion_cystic``,
  ``lesion_large`` (when sizes are given);
* clinical features: decided when the context gives them;
* everything else (shapes, distribution classes, densities, echo, margins, enhancement,
  signs, lobes, age band, sex) counts only when present: its absence stays unknown.

Both document styles are handled: the image pipeline's one-finding-per-object documents
(``count`` = 1, calcifications linked to their lesion or duct through ``parent_id`` and
``relation``) and hand-written documents (``count`` > 1, ``location`` words,
``distribution`` and ``echo`` on a finding).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import CalcificationPattern, Change, Context, Finding, FindingsDocument
from ._context import MARKER_RANGES, marker_status

__all__ = [
    "Observation",
    "GROWTH_THRESHOLD_PERCENT",
    "GROWTH_WINDOW_DAYS",
    "GROWTH_MIN_VOLUME_MM3",
    "GROWTH_MIN_SD_MULTIPLE",
    "LARGE_LESION_MM",
    "SMALL_CALC_IN_LESION_MM",
    "extract_features",
    "imaging_features",
    "clinical_features",
    "is_growing",
    "content_confirms_growth",
    "growth_beyond_noise",
    "growth_rate_percent",
]

#: volume growth (%) within GROWTH_WINDOW_DAYS at or above which a finding counts as growing
GROWTH_THRESHOLD_PERCENT = 20.0
#: window (days) for GROWTH_THRESHOLD_PERCENT; longer intervals are scaled to this window
GROWTH_WINDOW_DAYS = 365.0
#: smallest absolute volume increase (mm³) that counts, so partial-volume jitter of tiny foci does not
GROWTH_MIN_VOLUME_MM3 = 10.0
#: where the change carries a noise SD (``Change.growth_sd_percent``), the increase must also exceed
#: this many times it: seed 003 asks for a *significant* increase, and an increase within two noise
#: SDs of zero is one that the measurement alone makes about one time in forty
GROWTH_MIN_SD_MULTIPLE = 2.0
#: lesion diameter (mm) above which a lesion counts as large (seeds: metastases > 3 cm)
LARGE_LESION_MM = 30.0
#: calcification diameter (mm) below which calcium in a large lesion counts as small (< 2 cm)
SMALL_CALC_IN_LESION_MM = 20.0

_SHAPE_FEATURE = {
    "punctate": "calc_punctate",
    "coarse": "calc_coarse",
    "linear": "calc_linear",
    "ring": "calc_ring",
    "stellate": "calc_stellate",
    "grit": "calc_grit",
    "beaded": "calc_beaded",
    "pin": "calc_pin_equal",
    "equal_sign": "calc_pin_equal",
}
_DISTRIBUTION_FEATURE = {
    "scattered": "calc_scattered",
    "diffuse_even": "calc_diffuse_even",
    "clustered": "calc_clustered",
    "capsular_septal_network": "calc_network",
}
_DENSITY_FEATURE = {
    "hypodense": "lesion_hypodense",
    "isodense": "lesion_isodense",
    "hyperdense": "lesion_hyperdense",
    "mixed": "lesion_mixed",
}
_ECHO_FEATURE = {"hyperechoic": "lesion_hyperechoic", "hypoechoic": "lesion_hypoechoic", "mixed": "lesion_mixed"}
_MARGIN_FEATURE = {"well_defined": "lesion_well_defined", "ill_defined": "lesion_ill_defined", "irregular": "lesion_ill_defined"}
_ENHANCEMENT_FEATURE = {
    "none": "enh_none",
    "rim": "enh_rim",
    "peripheral_nodular_centripetal": "enh_peripheral_nodular",
    "arterial_washout": "enh_arterial_washout",
    "homogeneous": "enh_homogeneous",
}
_SIGN_FEATURE = {
    "bulls_eye": "sign_bulls_eye",
    "target": "sign_bulls_eye",
    "halo": "sign_halo",
    "central_necrosis": "sign_central_necrosis",
    "septa": "sign_septa",
    "daughter_cysts": "sign_daughter_cysts",
}
_BOOL_CONTEXT = (
    "fever",
    "leukocytosis",
    "cirrhosis",
    "collagen_vascular_disease",
    "livestock_exposure",
    "schistosomiasis_endemic",
    "tuberculosis_history",
    "biliary_infection_history",
)


@dataclass(frozen=True)
class Observation:
    """State of one feature and where it came from.

    Attributes
    ----------
    present: bool
        True when the feature is present, False when it is known to be absent.
    basis: str
        The finding(s) or context field the state was read from, in words.
    """

    present: bool
    basis: str


class _Collector:
    """Collect observations; a present state wins over an absent one for the same feature."""

    def __init__(self) -> None:
        self.obs: dict[str, Observation] = {}

    def present(self, feature: str, basis: str) -> None:
        old = self.obs.get(feature)
        if old is None or not old.present:
            self.obs[feature] = Observation(True, basis)

    def absent(self, feature: str, basis: str) -> None:
        if feature not in self.obs:
            self.obs[feature] = Observation(False, basis)


def _name(f: Finding, index: int) -> str:
    return f.id or f"finding {index + 1} ({f.kind})"


def _size(f: Finding) -> float | None:
    return f.size_mm if f.size_mm is not None else f.longest_diameter_mm


def growth_beyond_noise(ch: Change, k: float = GROWTH_MIN_SD_MULTIPLE) -> bool:
    """Whether a volume increase stands out of its own measurement noise.

    True when the change carries no noise SD (nothing to weigh it against) or its
    ``growth_percent`` exceeds ``k`` times ``growth_sd_percent``; False otherwise (and
    when no growth figure is given). The one definition used by the reasoning's growth
    features (:func:`is_growing`) and the follow-up alert
    (:func:`calcscope.track.assess_growth`).
    """
    if ch.growth_percent is None:
        return False
    if ch.growth_sd_percent is None:
        return True
    return ch.growth_percent > k * ch.growth_sd_percent


def _per_window(percent: float, interval_days: float | None, window_days: float) -> float:
    """A change (%) as a rate per ``window_days``: scaled linearly over a longer interval."""
    if interval_days is not None and interval_days > window_days:
        return percent * window_days / interval_days
    return percent


def content_confirms_growth(
    ch: Change,
    k: float = GROWTH_MIN_SD_MULTIPLE,
    window_days: float = GROWTH_WINDOW_DAYS,
    threshold_percent: float = GROWTH_THRESHOLD_PERCENT,
) -> bool:
    """Whether the calcium content grew as the volume did (True when no content change is known).

    A calcification of a few voxels can read 20-30 % larger on one study than on the
    other from where it lies on the voxel grid alone, while its content (summed HU
    excess) stays within a few percent (docs/performance.md); a calcification that
    really grows at a constant density gains content in proportion. So where both
    studies give a content, its rate must reach ``threshold_percent`` too (the volume's
    threshold, GROWTH_THRESHOLD_PERCENT unless the alert's thresholds say otherwise) and exceed
    ``k`` times its own noise SD. The one definition used by :func:`is_growing` and
    :func:`calcscope.track.assess_growth`.
    """
    if ch.content_change_percent is None:
        return True
    if ch.content_change_sd_percent is not None and ch.content_change_percent <= k * ch.content_change_sd_percent:
        return False
    return _per_window(ch.content_change_percent, ch.interval_days, window_days) >= threshold_percent


def growth_rate_percent(ch: Change, window_days: float = GROWTH_WINDOW_DAYS) -> float | None:
    """Volume growth (%) as a rate per ``window_days``: the growth itself over an interval of at
    most the window (or an unknown one), scaled linearly to the window over a longer interval
    (30 % over 24 months counts as 15 % per 12 months). None without a growth figure. The one
    rate the reasoning's growth features (:func:`is_growing`) and the follow-up alert
    (:func:`calcscope.track.assess_growth`) compare with their threshold.
    """
    if ch.growth_percent is None:
        return None
    return _per_window(ch.growth_percent, ch.interval_days, window_days)


def is_growing(f: Finding) -> bool | None:
    """Whether a finding grew by >= GROWTH_THRESHOLD_PERCENT within GROWTH_WINDOW_DAYS.

    Growth over a longer interval is scaled linearly to the window (e.g. 30 % over 24
    months counts as 15 % per 12 months, :func:`growth_rate_percent`). When the absolute volume change is known it must
    also reach GROWTH_MIN_VOLUME_MM3, and when the change carries a noise SD the measured
    increase must exceed GROWTH_MIN_SD_MULTIPLE times it (:func:`growth_beyond_noise`); when it
    carries a calcium-content change, the content must have grown too
    (:func:`content_confirms_growth`). None when no growth figure is given.
    """
    ch = f.change
    if ch is None or ch.growth_percent is None:
        return None
    if ch.volume_change_mm3 is not None and ch.volume_change_mm3 < GROWTH_MIN_VOLUME_MM3:
        return False
    if not growth_beyond_noise(ch) or not content_confirms_growth(ch):
        return False
    return growth_rate_percent(ch) >= GROWTH_THRESHOLD_PERCENT  # type: ignore[operator]


def format_sd(sd: float) -> str:
    """A noise SD for text: whole numbers from 1 up, one decimal below (a small SD is not shown as 0)."""
    if sd >= 1.0:
        return f"{sd:.0f}"
    return f"{sd:.1f}" if sd >= 0.05 else "< 0.1"


def _growth_text(ch: Change) -> str:
    """'35 %' or, when the volumes carry a noise SD, '35 % (noise SD 4 percentage points)'."""
    text = f"{ch.growth_percent:g} %"
    if ch.growth_sd_percent is not None:
        text += f" (noise SD {format_sd(ch.growth_sd_percent)} percentage points)"
    if ch.content_change_percent is not None:
        text += f", calcium content {ch.content_change_percent:+.0f} %"
        if ch.content_change_sd_percent is not None:
            text += f" (noise SD {format_sd(ch.content_change_sd_percent)} percentage points)"
    return text


def _lesion_like(f: Finding | None) -> bool:
    return f is not None and f.kind in ("lesion", "cyst")


def _cystic(f: Finding) -> bool:
    return f.kind == "cyst" or f.density == "cystic" or f.echo == "anechoic"


def imaging_features(doc: FindingsDocument, pattern: CalcificationPattern | None = None) -> dict[str, Observation]:
    """Imaging features of a findings document (and optional calcification pattern)."""
    col = _Collector()
    findings = list(doc.findings)
    by_id = {f.id: f for f in findings if f.id}
    calcs = [(i, f) for i, f in enumerate(findings) if f.kind in ("calcification", "duct_stone")]
    lesions = [(i, f) for i, f in enumerate(findings) if f.kind in ("lesion", "cyst")]
    # a shape written on a lesion describes calcification inside that lesion
    shaped_lesions = [(i, f) for i, f in lesions if f.shape is not None]
    ducts = [(i, f) for i, f in enumerate(findings) if f.kind == "duct_dilatation"]

    # ---------------------------------------------------------------- duct dilatation
    dil_sources = [_name(f, i) for i, f in ducts] + [
        _name(f, i) for i, f in enumerate(findings) if "duct_dilatation_upstream" in f.signs
    ]
    if dil_sources:
        col.present("duct_dilatation", "dilated ducts: " + ", ".join(dil_sources))
    else:
        col.absent("duct_dilatation", "no duct dilatation in the findings")

    # ---------------------------------------------------------------- lesions
    n_lesions = sum(f.count for _, f in lesions)
    if n_lesions:
        names = ", ".join(_name(f, i) for i, f in lesions)
        col.present("lesion_present", f"{n_lesions} lesion(s): {names}")
        if n_lesions >= 2:
            col.present("lesion_multiple", f"{n_lesions} lesions")
        else:
            col.absent("lesion_multiple", "one lesion")
        cystic = [_name(f, i) for i, f in lesions if _cystic(f)]
        if cystic:
            col.present("lesion_cystic", "cystic: " + ", ".join(cystic))
        else:
            col.absent("lesion_cystic", "no lesion described as cystic")
        sizes = [(_size(f), _name(f, i)) for i, f in lesions]
        large = [n for s, n in sizes if s is not None and s > LARGE_LESION_MM]
        if large:
            col.present("lesion_large", f"larger than {LARGE_LESION_MM:g} mm: " + ", ".join(large))
        elif all(s is not None for s, _ in sizes):
            col.absent("lesion_large", f"every lesion {LARGE_LESION_MM:g} mm or smaller")
        for i, f in lesions:
            n = _name(f, i)
            if f.density in _DENSITY_FEATURE:
                col.present(_DENSITY_FEATURE[f.density], f"{n}: density {f.density}")
            if f.echo in _ECHO_FEATURE:
                col.present(_ECHO_FEATURE[f.echo], f"{n}: echo {f.echo}")
            if f.margin in _MARGIN_FEATURE:
                col.present(_MARGIN_FEATURE[f.margin], f"{n}: margin {f.margin}")
            if f.enhancement in _ENHANCEMENT_FEATURE:
                col.present(_ENHANCEMENT_FEATURE[f.enhancement], f"{n}: enhancement {f.enhancement}")
            g = is_growing(f)
            if g is True:
                col.present("lesion_growing", f"{n}: grew {_growth_text(f.change)}")  # type: ignore[arg-type]
            elif g is False:
                col.absent("lesion_growing", f"{n}: growth {_growth_text(f.change)}")  # type: ignore[arg-type]
    else:
        col.absent("lesion_present", "no lesion in the findings")

    for i, f in enumerate(findings):
        for s in f.signs:
            if s in _SIGN_FEATURE:
                col.present(_SIGN_FEATURE[s], f"{_name(f, i)}: sign {s}")

    # ---------------------------------------------------------------- calcifications
    n_calc = sum(f.count for _, f in calcs) + sum(f.count for _, f in shaped_lesions)
    if pattern is not None and pattern.count > n_calc:
        n_calc = pattern.count
    if n_calc == 0:
        col.absent("calc_present", "no calcification in the findings")
        return col.obs
    calc_names = [_name(f, i) for i, f in calcs] + [f"{_name(f, i)} (calcified)" for i, f in shaped_lesions]
    col.present("calc_present", f"{n_calc} calcification(s): " + ", ".join(calc_names[:6]) + (" ..." if len(calc_names) > 6 else ""))
    if n_calc >= 2:
        col.present("calc_multiple", f"{n_calc} calcifications")
    else:
        col.absent("calc_multiple", "a single calcification")

    dilated = col.obs["duct_dilatation"].present
    lobes: set[str] = set()
    lobe_basis: list[str] = []
    sizes_calc: list[float] = []
    in_lesion_small: list[str] = []
    duct_children: dict[str, int] = {}
    any_in_lesion = any_cyst_wall = any_duct = any_capsular = any_septal = False

    for i, f in shaped_lesions:
        n = _name(f, i)
        col.present("calc_in_lesion", f"{n}: calcification shape '{f.shape}' written on the lesion")
        col.present(_SHAPE_FEATURE[f.shape], f"{n}: shape {f.shape}")  # type: ignore[index]
        any_in_lesion = True

    for i, f in calcs:
        n = _name(f, i)
        loc = set(f.location)
        parent = by_id.get(f.parent_id) if f.parent_id else None
        cyst_parent = parent is not None and _lesion_like(parent) and _cystic(parent)
        centre = "in_lesion_centre" in loc or (_lesion_like(parent) and f.relation == "centre" and not cyst_parent)
        # "wall" names a cyst wall only when the parent is cystic (or not given); the wall of
        # a solid lesion is its periphery
        solid_parent = _lesion_like(parent) and not cyst_parent
        rim = "in_lesion_rim" in loc or (solid_parent and f.relation in ("periphery", "wall"))
        wall = (
            ("cyst_wall" in loc and not solid_parent)
            or (f.relation == "wall" and not solid_parent)
            or (cyst_parent and f.relation in ("periphery", "wall"))
        )
        whole = _lesion_like(parent) and f.relation == "whole"
        in_lesion = centre or rim or whole or (_lesion_like(parent) and f.relation is None and not cyst_parent)
        along = (
            f.kind == "duct_stone"
            or "along_duct" in loc
            or f.relation == "in_duct"
            or (parent is not None and parent.kind == "duct_dilatation")
        )
        if centre:
            col.present("calc_lesion_centre", f"{n}: in the centre of {f.parent_id or 'a lesion'}")
        if rim:
            col.present("calc_lesion_rim", f"{n}: at the periphery of {f.parent_id or 'a lesion'}")
        if in_lesion:
            any_in_lesion = True
            col.present("calc_in_lesion", f"{n}: inside {f.parent_id or 'a lesion'}")
        if wall:
            any_cyst_wall = True
            col.present("calc_cyst_wall", f"{n}: in the wall of {f.parent_id or 'a cystic lesion'}")
        if along:
            any_duct = True
            col.present("calc_along_duct", f"{n}: along a bile duct" + (f" ({f.parent_id})" if f.parent_id else ""))
            if dilated:
                col.present("calc_in_dilated_duct", f"{n}: along a duct, with duct dilatation present")
            key = f.parent_id or "(unlinked duct)"
            duct_children[key] = duct_children.get(key, 0) + f.count
        if f.shape is not None:
            col.present(_SHAPE_FEATURE[f.shape], f"{n}: shape {f.shape}")
        if "capsular" in loc or "subcapsular" in loc or f.depth == "capsular":
            any_capsular = True
            col.present("calc_capsular", f"{n}: capsular")
        if "septal" in loc:
            any_septal = True
        if f.distribution in _DISTRIBUTION_FEATURE:
            col.present(_DISTRIBUTION_FEATURE[f.distribution], f"{n}: distribution {f.distribution}")
        if f.lobe in ("right", "left"):
            lobes.add(f.lobe)
            lobe_basis.append(f"{n}: {f.lobe} lobe")
        for word, lobe in (("right_lobe", "right"), ("left_lobe", "left")):
            if word in loc:
                lobes.add(lobe)
                lobe_basis.append(f"{n}: {lobe} lobe")
        if "both_lobes" in loc:
            lobes.update(("right", "left"))
            lobe_basis.append(f"{n}: both lobes")
        s = _size(f)
        if s is not None:
            sizes_calc.extend([s] * f.count)
            if in_lesion and s < SMALL_CALC_IN_LESION_MM:
                in_lesion_small.append(n)
        if "acoustic_shadow" in f.signs:
            col.present("calc_acoustic_shadow", f"{n}: acoustic shadow")
        g = is_growing(f)
        if g is True:
            col.present("calc_growing", f"{n}: grew {_growth_text(f.change)}"  # type: ignore[arg-type]
                        + (f" in {f.change.interval_days:g} days" if f.change.interval_days else ""))  # type: ignore[union-attr]
        elif g is False:
            col.absent("calc_growing", f"{n}: growth {_growth_text(f.change)}")  # type: ignore[arg-type]

    # pattern from the image pipeline
    if pattern is not None:
        if pattern.distribution in _DISTRIBUTION_FEATURE:
            col.present(_DISTRIBUTION_FEATURE[pattern.distribution], f"calcification pattern: {pattern.distribution}")
        if pattern.right_lobe_count:
            lobes.add("right")
            lobe_basis.append(f"pattern: {pattern.right_lobe_count} in the right lobe")
        if pattern.left_lobe_count:
            lobes.add("left")
            lobe_basis.append(f"pattern: {pattern.left_lobe_count} in the left lobe")
        if pattern.capsular_count:
            any_capsular = True
            col.present("calc_capsular", f"pattern: {pattern.capsular_count} capsular")
        if pattern.in_lesion_count and not any_in_lesion:
            any_in_lesion = True
            col.present("calc_in_lesion", f"pattern: {pattern.in_lesion_count} inside lesions")
        if pattern.in_duct_count and not any_duct:
            any_duct = True
            col.present("calc_along_duct", f"pattern: {pattern.in_duct_count} along ducts")
            if dilated:
                col.present("calc_in_dilated_duct", "pattern: calcification along ducts, with duct dilatation")
        if not sizes_calc and pattern.size_mm_max is not None:
            sizes_calc = [pattern.size_mm_max]
            if pattern.size_mm_median is not None:
                sizes_calc.append(pattern.size_mm_median)

    if any_capsular and any_septal:
        col.present("calc_network", "capsular and septal calcifications together")
    for key, k in duct_children.items():
        if k >= 3:
            col.present("calc_beaded", f"{k} calcifications in a row along {key}")
    # closed-world decisions once a calcification is present
    if not any_in_lesion:
        col.absent("calc_in_lesion", "no calcification lies inside a lesion")
    if not any_cyst_wall:
        col.absent("calc_cyst_wall", "no calcification in a cyst wall")
    if not any_duct:
        col.absent("calc_along_duct", "no calcification along a bile duct")
    elif not dilated:
        col.absent("calc_in_dilated_duct", "calcification along a duct without duct dilatation")
    if not any_capsular:
        col.absent("calc_capsular", "no capsular calcification")
    if doc.modality == "US" and "calc_acoustic_shadow" not in col.obs:
        if any("acoustic_shadow" in f.signs for f in findings):
            col.present("calc_acoustic_shadow", "acoustic shadow described on the ultrasound")
        else:
            col.absent("calc_acoustic_shadow", "ultrasound describes no acoustic shadow")
    elif any("acoustic_shadow" in f.signs for f in findings):
        col.present("calc_acoustic_shadow", "acoustic shadow described")

    if lobes:
        basis = "; ".join(lobe_basis[:4])
        if lobes == {"right"}:
            col.present("calc_lobe_right_only", basis)
        elif lobes == {"left"}:
            col.present("calc_lobe_left_only", basis)
        else:
            col.present("calc_lobe_both", basis)

    if sizes_calc:
        largest = max(sizes_calc)
        ordered = sorted(sizes_calc)
        median = ordered[len(ordered) // 2] if len(ordered) % 2 else 0.5 * (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2])
        band = "calc_size_small" if largest < 5.0 else ("calc_size_medium" if largest <= 20.0 else "calc_size_large")
        col.present(band, f"largest calcification {largest:.1f} mm")
        if 8.0 <= median <= 12.0:
            col.present("calc_size_8_to_12mm", f"median calcification size {median:.1f} mm")
        else:
            col.absent("calc_size_8_to_12mm", f"median calcification size {median:.1f} mm")

    _large_lesion_small_calc(col, findings, lesions, in_lesion_small, any_in_lesion)
    return col.obs


def _large_lesion_small_calc(
    col: _Collector,
    findings: list[Finding],
    lesions: list[tuple[int, Finding]],
    in_lesion_small: list[str],
    any_in_lesion: bool,
) -> None:
    """Seeds: metastatic calcification favours lesions > 3 cm with calcium < 2 cm."""
    if not any_in_lesion:
        return
    by_id = {f.id: f for f in findings if f.id}
    large_ids = {f.id for _, f in lesions if f.id and (_size(f) or 0) > LARGE_LESION_MM}
    any_large = any((_size(f) or 0) > LARGE_LESION_MM for _, f in lesions)
    hits: list[str] = []
    for i, f in enumerate(findings):
        if f.kind != "calcification" or (_size(f) is None) or _size(f) >= SMALL_CALC_IN_LESION_MM:  # type: ignore[operator]
            continue
        parent = by_id.get(f.parent_id) if f.parent_id else None
        if parent is not None and parent.id in large_ids:
            hits.append(f"{_name(f, i)} ({_size(f):.0f} mm) in {parent.id} ({_size(parent):.0f} mm)")
        elif parent is None and any_large and {"in_lesion_centre", "in_lesion_rim"} & set(f.location):
            hits.append(f"{_name(f, i)} ({_size(f):.0f} mm) in a lesion larger than {LARGE_LESION_MM:g} mm")
    if hits:
        col.present("lesion_large_with_small_calc", "; ".join(hits[:3]))
    elif in_lesion_small and all(_size(f) is not None for _, f in lesions):
        col.absent("lesion_large_with_small_calc", f"no calcified lesion larger than {LARGE_LESION_MM:g} mm")


def clinical_features(context: Context | None) -> dict[str, Observation]:
    """Clinical features of a (validated) context; unknown fields stay unknown."""
    col = _Collector()
    if context is None:
        return col.obs
    c = context
    if c.known_malignancy is True or (c.known_malignancy is None and c.primary_site not in (None, "unknown")):
        site = f" ({c.primary_site})" if c.primary_site else ""
        col.present("known_malignancy", f"context: known malignancy{site}")
    elif c.known_malignancy is False:
        col.absent("known_malignancy", "context: no known malignancy")
    if c.age is not None:
        band = (
            "age_under_5" if c.age < 5 else "age_5_to_29" if c.age < 30 else "age_30_to_59" if c.age < 60 else "age_60_plus"
        )
        col.present(band, f"context: age {c.age:g} years")
    if c.sex in ("female", "male"):
        col.present(f"sex_{c.sex}", f"context: sex {c.sex}")
    for name in _BOOL_CONTEXT:
        v = getattr(c, name)
        if v is True:
            col.present(name, f"context: {name.replace('_', ' ')}")
        elif v is False:
            col.absent(name, f"context: no {name.replace('_', ' ')}")
    if c.hbv is True or c.hcv is True:
        which = " and ".join(n.upper() for n in ("hbv", "hcv") if getattr(c, n) is True)
        col.present("viral_hepatitis", f"context: {which} positive")
    elif c.hbv is False and c.hcv is False:
        col.absent("viral_hepatitis", "context: HBV and HCV negative")
    for name, marker in sorted(c.markers.items()):
        status = marker_status(name, marker)
        rng = MARKER_RANGES[name]
        shown = f"{marker.value:g} {marker.unit}" if marker.value is not None else status
        basis = f"context: {rng.name} {shown} ({status})"
        feature = f"{name}_elevated"
        if status in ("elevated", "markedly_elevated"):
            col.present(feature, basis)
        else:
            col.absent(feature, basis)
        if name == "afp":
            if status == "markedly_elevated":
                col.present("afp_markedly_elevated", basis)
            else:
                col.absent("afp_markedly_elevated", basis)
    return col.obs


def extract_features(
    doc: FindingsDocument,
    context: Context | None = None,
    *,
    pattern: CalcificationPattern | None = None,
) -> dict[str, Observation]:
    """All features (imaging and clinical) in a stable order (sorted by feature id)."""
    obs = imaging_features(doc, pattern)
    obs.update(clinical_features(context))
    return dict(sorted(obs.items()))
