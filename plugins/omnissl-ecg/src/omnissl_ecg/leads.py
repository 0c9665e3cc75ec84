"""The leads of the electrocardiogram: their names, their identities and where each looks from.

Every lead is a projection of the heart's electrical vector onto a direction of the body: the
limb leads on the frontal plane (the hexaxial reference system: I at 0°, II at 60°, III at 120°,
aVR at -150°, aVL at -30°, aVF at 90°, angles clockwise from the patient's left towards the feet),
the precordial leads on the horizontal plane (V6 at 0°, V5 30°, V4 60°, V3 75°, V2 90°, V1 120°,
from the left towards the front), and Frank's orthogonal leads along the body's axes (X left,
Y towards the feet, Z towards the back). That direction, a unit vector in body coordinates
(x left, y front, z head), is a lead's coordinate: leads that look from near directions (II,
aVF, III) are near, so a model trained on 12 leads knows where a single-lead or 3-lead record
looks from. The lead's name is also an identity (``kinds``): the table keeps II and aVF apart
although their directions are close.
"""

from __future__ import annotations

import re

import numpy as np

from omnissl.errors import DataError

STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
FRANK_LEADS: tuple[str, ...] = ("X", "Y", "Z")
LEADS: tuple[str, ...] = STANDARD_LEADS + FRANK_LEADS
OTHER = len(LEADS)  # the identity of a lead outside the layout (data.unknown_leads: other)
KIND_VOCAB = len(LEADS) + 1
UNKNOWN_LEADS = ("drop", "error", "other")

_FRONTAL = {"I": 0.0, "II": 60.0, "III": 120.0, "aVR": -150.0, "aVL": -30.0, "aVF": 90.0}
_HORIZONTAL = {"V1": 120.0, "V2": 90.0, "V3": 75.0, "V4": 60.0, "V5": 30.0, "V6": 0.0}


def _direction(lead: str) -> np.ndarray:
    if lead in _FRONTAL:  # clockwise from the left towards the feet: z (head) goes down
        angle = np.deg2rad(_FRONTAL[lead])
        return np.array([np.cos(angle), 0.0, -np.sin(angle)])
    if lead in _HORIZONTAL:  # from the left towards the front
        angle = np.deg2rad(_HORIZONTAL[lead])
        return np.array([np.cos(angle), np.sin(angle), 0.0])
    return {"X": np.array([1.0, 0.0, 0.0]), "Y": np.array([0.0, 0.0, -1.0]), "Z": np.array([0.0, -1.0, 0.0])}[lead]


# (len(LEADS) + 1, 3): row i is lead i's direction; the last row, an unknown lead's, is zero.
DIRECTIONS: np.ndarray = np.concatenate([np.stack([_direction(lead) for lead in LEADS]), np.zeros((1, 3))]).astype(
    np.float32)

_LOOKUP = {lead.lower(): i for i, lead in enumerate(LEADS)}
# Names other conventions give the same leads: Roman numerals with D (DI: European), MIT-BIH's
# modified limb and chest leads (MLII, MV1), PTB's Frank leads (vx, vy, vz).
_LOOKUP.update({"di": 0, "dii": 1, "diii": 2, "d1": 0, "d2": 1, "d3": 2, "mli": 0, "mlii": 1, "mliii": 2,
                "vx": 12, "vy": 13, "vz": 14, **{f"mv{i}": 5 + i for i in range(1, 7)}})
_NOISE = re.compile(r"\(.*?\)|^(lead|ecg|ekg)[\s_:-]*|[\s_:-]*(lead)$", re.IGNORECASE)


def lead_index(name: str) -> int | None:
    """The identity of a lead by name (``"Lead II"``, ``"MLII"``, ``"avf"``, ``"DIII"``), or None."""
    return _LOOKUP.get(_NOISE.sub("", name.strip()).strip().lower().replace(" ", ""))


def identify(names: list[str], where: str, unknown: str = "drop") -> tuple[list[int], np.ndarray]:
    """The rows to keep of a record's leads and their identities (index into :data:`LEADS`, or
    :data:`OTHER`).

    A name that is no lead of the layout (a wearable's "ECG", a Holter's "CH1", a respiration
    channel) is, by ``unknown``: dropped with a warning (``drop``), an error (``error``), or kept
    as a lead of unknown direction (``other``: coordinate zero, identity OTHER).

    Raises:
        DataError: naming ``where`` and the leads, when ``unknown`` is ``error`` and some lead is
            unknown, or when nothing is left.
    """
    import warnings

    if unknown not in UNKNOWN_LEADS:
        raise DataError(f"data.unknown_leads must be one of {', '.join(UNKNOWN_LEADS)}, got {unknown!r}")
    found = [lead_index(n) for n in names]
    missing = [n for n, i in zip(names, found) if i is None]
    duplicate = sorted({LEADS[i] for i in found if i is not None and found.count(i) > 1})
    if duplicate:
        raise DataError(f"{where}: lead(s) {', '.join(duplicate)} appear more than once ({', '.join(names)})")
    remedy = ("rename them to standard lead names (I, II, III, aVR, aVL, aVF, V1-V6, X, Y, Z), or set "
              "data.unknown_leads: other to keep them as leads of unknown direction")
    if missing and unknown == "error":
        raise DataError(f"{where}: {', '.join(missing)} name no lead of the 12-lead or Frank layout; {remedy}, "
                        f"or data.unknown_leads: drop to drop them")
    keep = [r for r, i in enumerate(found) if i is not None or unknown == "other"]
    if not keep:
        raise DataError(f"{where}: no lead left: {', '.join(missing)} name no lead of the 12-lead or Frank layout; "
                        f"{remedy}")
    if missing and unknown == "drop":
        warnings.warn(f"{where}: dropped {', '.join(missing)} (no lead of the 12-lead or Frank layout)")
    return keep, np.array([OTHER if found[r] is None else found[r] for r in keep], dtype=np.int64)
