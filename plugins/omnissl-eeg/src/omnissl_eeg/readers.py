"""Finding and opening recordings: EDF, BDF, FIF, BrainVision and EEGLAB through MNE, MNE epochs
files, and BIDS trees.

MNE's ``mne.io.read_raw`` picks the reader from the extension; a BIDS tree is read with
MNE-BIDS, which also applies ``channels.tsv`` (types, bad channels), ``electrodes.tsv``
(positions) and ``events.tsv`` (as annotations). A FIF file may hold epochs instead of a
continuous recording: named so (``*-epo.fif``, MNE's convention) or not, it is read with
``mne.read_epochs``. FIF files of other kinds (evoked averages, covariances, solutions) are
recognised by name and reported, never read.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from omnissl.errors import DataError

EXTENSIONS: tuple[str, ...] = (".edf", ".bdf", ".fif", ".vhdr", ".set")
# MNE's names for epochs files (mne.Epochs.save warns on any other name).
_EPOCHS = ("-epo.fif", "_epo.fif", "-epo.fif.gz", "_epo.fif.gz")
# FIF files MNE writes that hold no recording, by MNE's name suffix: what each holds.
OTHER_KINDS: dict[str, str] = {
    "ave": "evoked responses: averaged epochs", "cov": "a noise covariance", "fwd": "a forward solution",
    "inv": "an inverse operator", "trans": "a head<->MRI transform", "sol": "a BEM solution",
    "bem": "a BEM model", "src": "a source space", "proj": "SSP projectors", "ica": "an ICA decomposition",
}
_OTHER = re.compile(r"[-_](" + "|".join(OTHER_KINDS) + r")(-sol)?\.fif(\.gz)?$", re.IGNORECASE)


def is_epochs_name(path: Path) -> bool:
    """Whether ``path`` is named as an MNE epochs file (``*-epo.fif``, ``*_epo.fif``, ``.gz`` too)."""
    return path.name.lower().endswith(_EPOCHS)


def other_kind(path: Path) -> str | None:
    """What a FIF file named as an MNE non-recording file holds (``x-ave.fif``: evoked responses), else None."""
    found = _OTHER.search(path.name)
    return OTHER_KINDS[found.group(1).lower()] if found else None


def find_files(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Every recording and epochs file under ``root`` (recursive, sorted), by extension
    (``.fif.gz`` too), and the FIF files of other kinds, each with what it holds."""
    found, others = [], []
    for path in sorted(root.rglob("*")):
        name = path.name.lower()
        if not path.is_file() or name.startswith("."):
            continue
        if not (path.suffix.lower() in EXTENSIONS or name.endswith(".fif.gz")):
            continue
        kind = other_kind(path)
        if kind is None:
            found.append(path)
        else:
            others.append((path, kind))
    return found, others


def is_bids(root: Path) -> bool:
    """A BIDS data set has ``dataset_description.json`` at its root."""
    return (root / "dataset_description.json").is_file()


def is_bids_recording(path: Path) -> bool:
    """An EEG or MEG recording of a BIDS tree (``sub-*/[ses-*/]{eeg,meg}/*_{eeg,meg}.*``)."""
    return path.parent.name in ("eeg", "meg") and path.stem.endswith(("_eeg", "_meg"))


def subject_of(path: Path) -> str | None:
    """The BIDS subject of a file (``sub-01`` from ``sub-01/eeg/sub-01_task-rest_eeg.vhdr``), or None."""
    found = re.search(r"(?:^|[/\\_])(sub-[A-Za-z0-9]+)", str(path))
    return found.group(1) if found else None


# MNE's warnings that mean the file is damaged, not merely unusual: it then goes on to read what
# it can (an EDF whose data ends early, a FIF cut before its tag directory) or fails later, while
# loading the samples. Every other warning of MNE's readers stays silent, as before.
_DAMAGED = ("Number of records from the header does not match", "FIF tag directory missing",
            "Invalid tag with only")


def edf_truncation(path: Path) -> str | None:
    """Why an EDF/BDF file's data disagree with its header, or None when they agree.

    The header declares the number of data records and each record's size; MNE compares that
    with the file size, warns, and reads what is there "inferring from the file size" (a cut
    copy then reads as a shorter, complete-looking recording). A header that cannot be parsed
    gives None here: MNE's reader then names what is wrong.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
            header_bytes, n_records = int(head[184:192].decode("latin-1")), int(head[236:244].decode("latin-1"))
            duration, signals = float(head[244:252].decode("latin-1")), int(head[252:256].decode("latin-1"))
            handle.seek(256 + 216 * signals)  # label, transducer, unit, 4 ranges, prefiltering: 216 bytes each
            field = handle.read(8 * signals)
            samples = [int(field[8 * i: 8 * i + 8].decode("latin-1")) for i in range(signals)]
        size = path.stat().st_size
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    record = sum(samples) * (3 if path.suffix.lower() == ".bdf" else 2)  # BDF: 24-bit samples, EDF: 16-bit
    if record <= 0 or header_bytes < 256 or len(samples) != signals:
        return None
    held = max(size - header_bytes, 0) // record
    if n_records == -1:
        return (f"its header leaves the number of data records unset (-1, a recording that was never closed), "
                f"so it cannot tell whether the file is complete; the file holds {held} records "
                f"({held * duration:g} s): write the record count into the header if that is all of it")
    if held < n_records:
        return (f"truncated: its header declares {n_records} data records ({n_records * duration:g} s) but the file "
                f"holds {held} ({held * duration:g} s; {size} of {header_bytes + n_records * record} bytes); "
                f"copy or export it again")
    if held > n_records:
        return (f"its header declares {n_records} data records ({n_records * duration:g} s) but the file holds "
                f"{held}: header and data disagree")
    return None


def read_recording(path: Path, bids_root: Path | None = None) -> Any:
    """Open one recording lazily as an ``mne.io.Raw``, or an epochs file as ``mne.Epochs``.

    A damaged file is refused rather than half-read: an EDF/BDF whose data disagree with its
    header (:func:`edf_truncation`), or any file MNE warns is damaged while opening it (a FIF
    cut short). A demanding reader wants a cut file named, not read as a shorter recording that
    looks complete: its windows would enter training as if whole, its annotations or BIDS
    events would point past its end, and a file cut in transfer usually means a broken copy that
    copying again repairs. Skipped by name (``skipped``, and fatal under ``data.strict``), the
    user decides; one who wants the part that is there can fix the header's record count.

    A FIF file is read as epochs when it is named so (``*-epo.fif``) or when it holds no raw
    data but epochs (an epochs file under another name).

    Args:
        path: the recording file.
        bids_root: the BIDS root when ``path`` is inside a BIDS tree (its side files are applied).

    Raises:
        DataError: naming the file and the reason (MNE's, or the truncation) when it cannot be read.
    """
    import mne

    if path.suffix.lower() in (".edf", ".bdf"):
        reason = edf_truncation(path)
        if reason is not None:
            raise DataError(f"{path} is damaged: {reason}")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # MNE's warnings are collected here, and only damage reported
            if bids_root is not None:
                import mne_bids

                entities = mne_bids.get_entities_from_fname(path.name)
                bids_path = mne_bids.BIDSPath(root=bids_root, datatype=path.parent.name, suffix=path.parent.name,
                                              extension=path.suffix, **{k: v for k, v in entities.items()
                                                                       if k in ("subject", "session", "task",
                                                                                "acquisition", "run")})
                inst = mne_bids.read_raw_bids(bids_path, verbose="warning")
            elif is_epochs_name(path):
                inst = _read_epochs(path)
            else:
                try:
                    inst = mne.io.read_raw(path, preload=False, verbose="warning")
                except ValueError as exc:
                    if not str(exc).startswith("No raw data in"):
                        raise
                    inst = _read_epochs(path)  # a FIF holding epochs under another name
    except DataError:
        raise
    except Exception as exc:  # MNE raises many types (ValueError, RuntimeError, OSError, struct.error)
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    damage = [str(w.message) for w in caught if any(text in str(w.message) for text in _DAMAGED)]
    if damage:
        raise DataError(f"{path} is damaged (truncated or corrupted): MNE: {damage[0]}")
    return inst


def _read_epochs(path: Path) -> Any:
    import mne

    try:
        return mne.read_epochs(path, preload=False, verbose="warning")
    except ValueError as exc:
        if "Could not find event data" in str(exc):  # an evoked, covariance, ... file
            raise DataError(f"{path} holds neither a continuous recording nor epochs (an MNE file of another "
                            f"kind: evoked responses, a covariance, a solution?); move it out of data.root") from exc
        raise
