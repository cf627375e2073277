"""Typical attenuation (HU) of tissues by contrast phase, used by the phantom generator.

Values are typical adult figures at 120 kVp with a standard iodinated contrast
injection (about 1.5-2 mL/kg at 3-4 mL/s); see ``docs/phantoms.md`` for sources and ranges.
"""

from __future__ import annotations

__all__ = ["PHASES", "HU_BY_PHASE", "tissue_hu", "lesion_hu"]

PHASES = ("non_contrast", "arterial", "portal_venous", "delayed")

_COMMON = {
    "air": -1000.0,
    "lung": -850.0,
    "fat": -105.0,
    "visceral_fat": -95.0,
    "bile": 12.0,
    "gallbladder": 8.0,
    "stomach_content": 12.0,
    "csf": 12.0,
    "bone_cortical": 750.0,
    "bone_trabecular": 260.0,
    "disc": 85.0,
}

#: phase -> tissue -> HU
HU_BY_PHASE: dict[str, dict[str, float]] = {
    "non_contrast": {
        **_COMMON,
        "skin": 25.0, "muscle": 50.0, "liver": 58.0, "spleen": 48.0, "kidney": 32.0,
        "aorta": 40.0, "ivc": 40.0, "portal": 40.0, "hepatic_vein": 40.0, "heart": 40.0,
        "hepatic_artery": 40.0, "stomach_wall": 40.0,
    },
    "arterial": {
        **_COMMON,
        "skin": 35.0, "muscle": 55.0, "liver": 70.0, "spleen": 110.0, "kidney": 180.0,
        "aorta": 300.0, "ivc": 85.0, "portal": 130.0, "hepatic_vein": 65.0, "heart": 250.0,
        "hepatic_artery": 280.0, "stomach_wall": 90.0,
    },
    "portal_venous": {
        **_COMMON,
        "skin": 40.0, "muscle": 60.0, "liver": 105.0, "spleen": 115.0, "kidney": 170.0,
        "aorta": 165.0, "ivc": 140.0, "portal": 180.0, "hepatic_vein": 155.0, "heart": 160.0,
        "hepatic_artery": 165.0, "stomach_wall": 80.0,
    },
    "delayed": {
        **_COMMON,
        "skin": 35.0, "muscle": 58.0, "liver": 88.0, "spleen": 90.0, "kidney": 120.0,
        "aorta": 105.0, "ivc": 100.0, "portal": 100.0, "hepatic_vein": 100.0, "heart": 100.0,
        "hepatic_artery": 105.0, "stomach_wall": 65.0,
    },
}

#: phase -> lesion component -> HU
_LESION_HU: dict[str, dict[str, float]] = {
    "non_contrast": {
        "metastasis": 38.0, "target_rim": 45.0, "halo": 35.0, "cyst": 8.0, "abscess_fluid": 18.0,
        "abscess_rim": 45.0, "abscess_oedema": 45.0, "hemangioma": 40.0, "hemangioma_nodule": 40.0,
        "fibrolamellar": 48.0, "scar": 38.0, "hydatid_matrix": 22.0, "daughter_cyst": 6.0,
        "healed_abscess": 42.0,
    },
    "arterial": {
        "metastasis": 48.0, "target_rim": 95.0, "halo": 45.0, "cyst": 8.0, "abscess_fluid": 20.0,
        "abscess_rim": 95.0, "abscess_oedema": 55.0, "hemangioma": 45.0, "hemangioma_nodule": 260.0,
        "fibrolamellar": 115.0, "scar": 40.0, "hydatid_matrix": 22.0, "daughter_cyst": 6.0,
        "healed_abscess": 50.0,
    },
    "portal_venous": {
        "metastasis": 62.0, "target_rim": 115.0, "halo": 60.0, "cyst": 8.0, "abscess_fluid": 20.0,
        "abscess_rim": 120.0, "abscess_oedema": 80.0, "hemangioma": 72.0, "hemangioma_nodule": 165.0,
        "fibrolamellar": 82.0, "scar": 45.0, "hydatid_matrix": 22.0, "daughter_cyst": 6.0,
        "healed_abscess": 70.0,
    },
    "delayed": {
        "metastasis": 66.0, "target_rim": 95.0, "halo": 62.0, "cyst": 8.0, "abscess_fluid": 20.0,
        "abscess_rim": 100.0, "abscess_oedema": 75.0, "hemangioma": 105.0, "hemangioma_nodule": 110.0,
        "fibrolamellar": 85.0, "scar": 70.0, "hydatid_matrix": 22.0, "daughter_cyst": 6.0,
        "healed_abscess": 68.0,
    },
}


def _check_phase(phase: str) -> str:
    if phase not in HU_BY_PHASE:
        raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(PHASES)}")
    return phase


def tissue_hu(phase: str, tissue: str) -> float:
    """Typical HU of a tissue in a contrast phase."""
    return HU_BY_PHASE[_check_phase(phase)][tissue]


def lesion_hu(phase: str, component: str) -> float:
    """Typical HU of a lesion component (metastasis, cyst, target_rim...) in a contrast phase."""
    return _LESION_HU[_check_phase(phase)][component]
