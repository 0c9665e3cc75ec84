"""Labels and groups of recordings (issue 13, items 3 and 9): class folders, a BIDS events.tsv and
participants.tsv, a CSV manifest with the user's own column names; groups by recording, subject or a
manifest column; and the data-set contract (sample_kind, groups, summary) of every EEG data set."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from omnissl.errors import DataError
from omnissl_eeg import EEGFolder, EEGManifest, EEGRecordings, UEAEEG

SETTINGS = dict(notch=None, l_freq=None, h_freq=None, window_seconds=2.0, reject=None)


def _names(data) -> list[str | None]:
    return [None if np.isnan(v) else data.classes[int(v)] for v in np.asarray(data.labels, dtype=float)]


def test_eeg_class_folders_label_every_window(eeg_raw, write_recording, tmp_path: Path):
    """root/<label>/<file>.edf used to give no labels."""
    write_recording(eeg_raw, tmp_path / "data" / "patient" / "a.edf")
    write_recording(eeg_raw.copy().crop(0, 10), tmp_path / "data" / "control" / "deep" / "b.edf")
    write_recording(eeg_raw, tmp_path / "data" / "loose.edf")
    data = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), labels="folder", **SETTINGS)
    assert [Path(s).name for s in data.sources] == ["b.edf", "loose.edf", "a.edf"]
    assert data.classes == ["control", "patient"]
    assert _names(data) == ["control"] * 5 + [None] * 15 + ["patient"] * 15  # a file at the root: unlabelled
    assert data.group_kind == "recording" and len(set(data.groups)) == 3
    assert data.groups[0] == str(tmp_path / "data" / "control" / "deep" / "b.edf")
    with pytest.raises(DataError, match=r"data.labels must be one of auto, events, folder, participants:<column>, "
                                        r"none, got 'folders'"):
        EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), labels="folders", **SETTINGS)


@pytest.fixture
def bids_root(eeg_raw, tmp_path: Path) -> Path:
    """Three subjects in BIDS (BrainVision), each with rest (0-14 s) and task (14-30 s) in events.tsv,
    and a participants.tsv with a diagnosis and an age."""
    import mne
    import mne_bids

    raw = eeg_raw.copy()
    raw.set_meas_date(1.7e9)
    raw.set_annotations(mne.Annotations([0.0, 14.0], [14.0, 16.0], ["rest", "task"]))
    root = tmp_path / "bids"
    for subject in ("01", "02", "03"):
        path = mne_bids.BIDSPath(subject=subject, task="oddball", datatype="eeg", root=root)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mne_bids.write_raw_bids(raw, path, format="BrainVision", allow_preload=True, verbose="error")
    table = root / "participants.tsv"
    rows = [line.split("\t") for line in table.read_text().splitlines()]
    rows[0].append("diagnosis")
    for row, diagnosis, age in zip(rows[1:], ["ADHD", "control", "n/a"], ["9.5", "31.25", "47"]):
        row[rows[0].index("age")] = age
        row.append(diagnosis)
    table.write_text("\n".join("\t".join(row) for row in rows) + "\n")
    return root


def test_eeg_bids_events_participants_and_subject_groups(bids_root: Path, tmp_path: Path):
    cache = str(tmp_path / "cache")
    events = EEGFolder(str(bids_root), cache_dir=cache, labels="events", **SETTINGS)
    assert events.classes == ["rest", "task"]
    assert _names(events) == (["rest"] * 7 + ["task"] * 8) * 3  # window [14, 16) is centred in task
    assert events.group_kind == "subject"  # BIDS: every recording names its subject
    assert events.groups.tolist() == ["sub-01"] * 15 + ["sub-02"] * 15 + ["sub-03"] * 15
    diagnosis = EEGFolder(str(bids_root), cache_dir=cache, labels="participants:diagnosis", **SETTINGS)
    assert diagnosis.classes == ["ADHD", "control"] and diagnosis.task == "classification"
    assert _names(diagnosis) == ["ADHD"] * 15 + ["control"] * 15 + [None] * 15  # n/a: unlabelled
    age = EEGFolder(str(bids_root), cache_dir=cache, labels="participants:age", group_by="recording", **SETTINGS)
    assert age.task == "regression" and age.classes == []
    np.testing.assert_array_equal(age.labels, [9.5] * 15 + [31.25] * 15 + [47.0] * 15)
    assert age.group_kind == "recording" and len(set(age.groups)) == 3
    with pytest.raises(DataError, match=r"participants.tsv has no column 'dx' \(data.labels: participants:dx\); "
                                        r"its columns are participant_id, age, sex, hand, weight, height, diagnosis"):
        EEGFolder(str(bids_root), cache_dir=cache, labels="participants:dx", **SETTINGS)


def test_eeg_group_by_subject_needs_subjects(eeg_raw, write_recording, tmp_path: Path):
    write_recording(eeg_raw, tmp_path / "data" / "sub-07" / "night1.edf")
    write_recording(eeg_raw, tmp_path / "data" / "other" / "night1.edf")
    data = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **SETTINGS)
    assert data.group_kind == "recording"  # auto: one file names no subject
    with pytest.raises(DataError, match=r"group_by: subject, but .*other/night1.edf names no subject"):
        EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), group_by="subject", **SETTINGS)


def test_eeg_manifest_with_its_own_column_names(eeg_raw, write_recording, tmp_path: Path):
    """A manifest had to have a 'label' column; now the recipe names the path, label and group columns."""
    write_recording(eeg_raw, tmp_path / "recs" / "a.edf")
    write_recording(eeg_raw.copy().crop(0, 10), tmp_path / "recs" / "b.fif")
    write_recording(eeg_raw, tmp_path / "recs" / "c.vhdr")
    manifest = tmp_path / "recs" / "table.csv"
    manifest.write_text("file,diagnosis,patient\na.edf,epilepsy,P1\nb.fif,control,P2\nc.vhdr,,P1\nmissing.edf,"
                        "control,P3\n")
    with pytest.warns(UserWarning, match=r"table.csv, line 5: file 'missing.edf' is not a file"):
        data = EEGManifest(str(manifest), path_column="file", label_column="diagnosis", group_column="patient",
                           cache_dir=str(tmp_path / "cache"), **SETTINGS)
    assert [Path(s).name for s in data.sources] == ["a.edf", "b.fif", "c.vhdr"]
    assert data.classes == ["control", "epilepsy"]
    assert _names(data) == ["epilepsy"] * 15 + ["control"] * 5 + [None] * 15
    assert data.group_kind == "patient" and data.groups.tolist() == ["P1"] * 15 + ["P2"] * 5 + ["P1"] * 15
    assert data.summary()["files"] == 3 and len(data.skipped) == 1
    with pytest.raises(DataError, match=r"table.csv has no column 'dx' \(data.label_column\); its columns are "
                                        r"file, diagnosis, patient"):
        EEGManifest(str(manifest), path_column="file", label_column="dx", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"no column 'path' \(data.path_column\); its columns are file, diagnosis"):
        EEGManifest(str(manifest), cache_dir=str(tmp_path / "cache"))
    unlabelled = EEGManifest(str(manifest), path_column="file", cache_dir=str(tmp_path / "cache"), **SETTINGS)
    assert unlabelled.labels is None and unlabelled.group_kind == "recording"  # no 'label' column: unlabelled


def test_eeg_data_set_contract(eeg_raw):
    """sample_kind, groups and summary() of the in-memory and UEA data sets."""
    import mne

    epochs = mne.make_fixed_length_epochs(eeg_raw, duration=3.0, verbose="error")
    data = EEGRecordings([eeg_raw, epochs], names=["rest", "trials"], **SETTINGS)
    assert data.sample_kind == "window" and data.group_kind == "recording"
    assert data.groups.tolist() == ["rest"] * 15 + ["trials"] * 10  # each 3 s epoch holds one 2 s window
    assert data.summary() == {"files": 0, "recordings": 1, "epochs objects": 1, "windows": 25,
                              "windows rejected (peak-to-peak)": 0, "windows dropped (BAD_ annotations)": 0}
    whole = EEGRecordings([epochs], **{**SETTINGS, "window_seconds": None})
    assert whole.sample_kind == "epoch" and whole.classes == ["1"]  # MNE's fixed-length event
    uea = UEAEEG("EyesOpenShut")
    assert uea.sample_kind == "epoch" and uea.group_kind == "trial"
    assert len(set(uea.groups)) == len(uea) and len(uea.classes) == 2
    assert uea.summary() == {"files": 2, "trials": len(uea), "epochs": len(uea), "epochs rejected (peak-to-peak)": 0}
    windows = UEAEEG("EyesOpenShut", window_seconds=0.5, h_freq=None, sfreq=128.0)
    assert windows.sample_kind == "window" and len(windows) == 2 * windows.trials
    assert windows.groups[0] == windows.groups[1] != windows.groups[2]  # a trial's windows share its group
    assert windows.labels[0] == windows.labels[1]
    # the problem's own TRAIN / TEST files are its held-out split, for windows of a trial too
    from omnissl.train.data import held_out_split

    split = held_out_split(windows, 0.2, 0)
    assert split.info["kind"] == "given" and split.info["groups_on_both_sides"] == 0
    assert set(windows.split.tolist()) == {"train", "test"} and len(split.train) + len(split.held_out) == len(windows)
