"""Finding and opening recordings: EDF, BDF, FIF, BrainVision and EEGLAB through MNE, and BIDS trees.

MNE's ``mne.io.read_raw`` picks the reader from the extension; a BIDS tree is read with
MNE-BIDS, which also applies ``channels.tsv`` (types, bad channels) and
``electrodes.tsv`` (positions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omnissl.errors import DataError

EXTENSIONS: tuple[str, ...] = (".edf", ".bdf", ".fif", ".vhdr", ".set")
# FIF files of other kinds that are not continuous recordings.
_NOT_RAW = ("-epo.fif", "-ave.fif", "-cov.fif", "-fwd.fif", "-inv.fif", "-trans.fif", "-epo.fif.gz")


def find_recordings(root: Path) -> list[Path]:
    """Every recording under ``root`` (recursive, sorted), by extension; ``.fif.gz`` too."""
    found = []
    for path in sorted(root.rglob("*")):
        name = path.name.lower()
        if not path.is_file() or name.startswith("."):
            continue
        if (path.suffix.lower() in EXTENSIONS or name.endswith(".fif.gz")) and not name.endswith(_NOT_RAW):
            found.append(path)
    return found


def is_bids(root: Path) -> bool:
    """A BIDS data set has ``dataset_description.json`` at its root."""
    return (root / "dataset_description.json").is_file()


def find_bids_recordings(root: Path) -> list[Path]:
    """EEG and MEG recordings of a BIDS tree (``sub-*/[ses-*/]{eeg,meg}/*_{eeg,meg}.*``)."""
    found = []
    for path in find_recordings(root):
        if path.parent.name in ("eeg", "meg") and path.stem.endswith(("_eeg", "_meg")):
            found.append(path)
    return found


def read_recording(path: Path, bids_root: Path | None = None) -> Any:
    """Open one recording lazily as an ``mne.io.Raw``.

    Args:
        path: the recording file.
        bids_root: the BIDS root when ``path`` is inside a BIDS tree (its side files are applied).

    Raises:
        DataError: naming the file and MNE's reason when it cannot be read.
    """
    import mne

    try:
        if bids_root is not None:
            import mne_bids

            entities = mne_bids.get_entities_from_fname(path.name)
            bids_path = mne_bids.BIDSPath(root=bids_root, datatype=path.parent.name, suffix=path.parent.name,
                                          extension=path.suffix, **{k: v for k, v in entities.items()
                                                                   if k in ("subject", "session", "task",
                                                                            "acquisition", "run")})
            return mne_bids.read_raw_bids(bids_path, verbose="error")
        return mne.io.read_raw(path, preload=False, verbose="error")
    except Exception as exc:  # MNE raises many types (ValueError, RuntimeError, OSError, struct.error)
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
