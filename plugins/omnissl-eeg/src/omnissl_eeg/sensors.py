"""Sensor identity and geometry: the type of each channel and where it sits on the head.

BrainOmni (Xiao et al., 2025) and LaBraM (Jiang et al., ICLR 2024) both make one model
work across montages by describing every channel by what it measures and where, not by
its index in a fixed channel list. Positions come from the recording's own montage
(MEG sensor locations, digitised EEG electrodes) or, for EEG, from MNE's template 10-05
montage looked up by channel name.
"""

from __future__ import annotations

import re
import warnings
from functools import lru_cache

import numpy as np

from omnissl.errors import DataError

SENSOR_TYPES: tuple[str, ...] = ("eeg", "mag", "grad")
# MNE keeps SI units (V, T, T/m); these factors give the field's working units:
# microvolts for EEG, femtotesla for magnetometers, femtotesla per centimetre for gradiometers.
UNIT_SCALE: dict[str, float] = {"eeg": 1e6, "mag": 1e15, "grad": 1e13}
UNIT_NAME: dict[str, str] = {"eeg": "uV", "mag": "fT", "grad": "fT/cm"}

# Reference and device suffixes/prefixes that clinical exports add to 10-20 names (TUH: "EEG FP1-REF").
_PREFIX = re.compile(r"^(eeg|meg)[\s_-]*", re.IGNORECASE)
_SUFFIX = re.compile(r"[-_ ](ref|le|ar|avg|a1|a2|m1|m2|cz)$", re.IGNORECASE)


@lru_cache(maxsize=1)
def template_positions() -> dict[str, np.ndarray]:
    """Lower-cased 10-05 electrode name -> (3,) position in metres, from MNE's bundled montage.

    MNE 1.13 renamed ``standard_1005`` to ``colin27_1005`` (same positions); both are tried.
    """
    import mne

    names = mne.channels.get_builtin_montages()
    montage = mne.channels.make_standard_montage("colin27_1005" if "colin27_1005" in names else "standard_1005")
    return {name.lower(): np.asarray(pos, dtype=np.float32)
            for name, pos in montage.get_positions()["ch_pos"].items()}


def clean_name(name: str) -> str:
    """``"EEG Fp1-REF"`` -> ``"fp1"``: the bare 10-05 name, lower-cased."""
    return _SUFFIX.sub("", _PREFIX.sub("", name.strip())).strip().lower()


def lookup_position(name: str) -> np.ndarray | None:
    """Template position of an EEG electrode by name, or None when the name is not a 10-05 label."""
    return template_positions().get(clean_name(name))


def channel_positions(info, where: str, unknown: str = "drop") -> tuple[list[int], np.ndarray, list[str]]:
    """Indices of the channels to keep, their (C, 3) positions in metres, and the names of the
    channels that have no position (kept or dropped, by ``unknown``).

    A channel's own location (``info["chs"][i]["loc"][:3]``) is used when it is set
    (MEG sensors, digitised EEG); otherwise an EEG channel is looked up by name in the
    10-05 template. Channels with neither are, by ``unknown``:

    * ``"drop"``: dropped with one warning naming them and ``where``; when that leaves no
      channel, a :class:`DataError` naming them and the remedies;
    * ``"error"``: a :class:`DataError` naming them;
    * ``"index"``: kept at position (0, 0, 0); the data set gives each such channel name a
      learned identity (a ``kinds`` column) instead.

    Args:
        info: an ``mne.Info`` whose channels are all EEG or MEG.
        where: the file or object the channels come from, for messages.
        unknown: ``"drop"``, ``"error"`` or ``"index"``.
    """
    types = info.get_channel_types()
    keep: list[int] = []
    positions: list[np.ndarray] = []
    missing: list[str] = []
    for i, ch in enumerate(info["chs"]):
        loc = np.asarray(ch["loc"][:3], dtype=np.float64)
        if np.all(np.isfinite(loc)) and np.linalg.norm(loc) > 1e-6:
            pos = loc.astype(np.float32)
        else:
            pos = lookup_position(ch["ch_name"]) if types[i] == "eeg" else None
        if pos is None:
            missing.append(ch["ch_name"])
            if unknown != "index":
                continue
            pos = np.zeros(3, np.float32)
        keep.append(i)
        positions.append(pos)
    stacked = np.stack(positions) if positions else np.zeros((0, 3), np.float32)
    if not missing or unknown == "index":
        return keep, stacked, missing
    names = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
    message = (f"{where}: no position for channel(s) {names} (not in the recording's montage and not a 10-05 "
               f"electrode name)")
    remedy = ("set a montage on the recording (MNE's set_montage, or a BIDS electrodes.tsv), rename the channels "
              "to 10-05 names, or set data.unknown_channels: index to give each channel a learned identity "
              "instead of a position (weaker than real geometry; see docs/eeg.md)")
    if unknown == "error":
        raise DataError(f"{message}; {remedy}, or data.unknown_channels: drop to drop them")
    if not keep:
        raise DataError(f"{where}: no channel has a position, so data.unknown_channels: drop leaves none: {names}; "
                        f"{remedy}")
    warnings.warn(message + "; dropped them")
    return keep, stacked, missing
