"""Annotations of continuous recordings (issue 13, items 2 and 3): windows overlapping BAD_/EDGE
annotations are dropped by default and counted (reject_by_annotation: false keeps them), and with
labels: events each window takes the annotation it falls in, through event_id."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omnissl_eeg import EEGFolder

# No filter, no resampling, no re-reference: windows equal the file's samples, in microvolts.
EXACT = dict(sfreq=128.0, l_freq=None, h_freq=None, notch=None, reference=None, reject=None, window_seconds=2.0)


@pytest.fixture
def annotated(eeg_raw):
    """The 30 s recording with a muscle artefact (3-4 s), a concatenation boundary (9.5 s, no
    duration), an acquisition skip (16-18 s), two states (rest 0-10 s, task 10-20 s) and a
    stimulus marker (21 s)."""
    import mne

    raw = eeg_raw.copy()
    raw.set_meas_date(1.7e9)  # annotations then count from the measurement date, as in real files
    raw.set_annotations(mne.Annotations([3.0, 9.5, 16.0, 0.0, 10.0, 21.0], [1.0, 0.0, 2.0, 10.0, 10.0, 0.0],
                                        ["BAD_muscle", "BAD boundary", "BAD_ACQ_SKIP", "rest", "task", "stim"]))
    return raw


def _starts(data: EEGFolder, source: np.ndarray) -> list[int]:
    """The start second of each window, found by matching its samples in the source (uV)."""
    found = []
    for i in range(len(data)):
        signal = data[i]["signal"]
        found.append(next(k * 2 for k in range(15)
                          if np.allclose(signal, source[:, k * 256: (k + 1) * 256] * 1e6, atol=1e-2)))
    return found


@pytest.mark.parametrize("suffix", [".fif", ".edf"])
def test_eeg_windows_in_bad_annotations_are_dropped_and_counted(annotated, write_recording, tmp_path: Path,
                                                                suffix: str):
    """Windows in BAD_ segments used to become training windows."""
    write_recording(annotated, tmp_path / "data" / f"rec{suffix}")
    data = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **EXACT)
    # [2, 4) holds the artefact, [8, 10) the boundary, [16, 18) the skip; [14, 16) and [18, 20) only touch it
    assert _starts(data, annotated.get_data()) == [0, 4, 6, 10, 12, 14, 18, 20, 22, 24, 26, 28]
    assert data.recordings[0].report["annotated"] == 3
    assert data.summary() == {"files": 1, "recordings": 1, "windows": 12, "windows rejected (peak-to-peak)": 0,
                              "windows dropped (BAD_ annotations)": 3}
    kept = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), reject_by_annotation=False, **EXACT)
    assert len(kept) == 15 and kept.summary()["windows dropped (BAD_ annotations)"] == 0


def test_eeg_recording_inside_one_bad_annotation_is_a_named_skip(eeg_raw, write_recording, tmp_path: Path):
    import mne

    write_recording(eeg_raw, tmp_path / "data" / "a_good.fif")
    bad = eeg_raw.copy()
    bad.set_annotations(mne.Annotations([0.0], [30.0], ["BAD_electrode_pops"]))
    write_recording(bad, tmp_path / "data" / "b_all_bad.fif")
    with pytest.warns(UserWarning, match="skipping .*b_all_bad.fif: every window \\(15\\) overlaps a BAD_"):
        data = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **EXACT)
    assert [Path(s).name for s in data.sources] == ["a_good.fif"]
    assert "data.reject_by_annotation: false" in dict(data.skipped)[str(tmp_path / "data" / "b_all_bad.fif")]


@pytest.mark.parametrize("suffix", [".fif", ".edf"])
def test_eeg_windows_labelled_by_the_annotation_they_fall_in(annotated, write_recording, tmp_path: Path,
                                                            suffix: str):
    """labels: events: an annotation with a duration labels the windows whose centre it holds; a
    marker (no duration) the window it falls inside, before the longer state around it; BAD_
    annotations never label."""
    write_recording(annotated, tmp_path / "data" / f"rec{suffix}")
    data = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), labels="events", **EXACT)
    names = [None if np.isnan(v) else data.classes[int(v)] for v in data.labels]
    assert dict(zip(_starts(data, annotated.get_data()), names)) == {
        0: "rest", 4: "rest", 6: "rest", 10: "task", 12: "task", 14: "task", 18: "task", 20: "stim",
        22: None, 24: None, 26: None, 28: None}
    mapped = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"),  # labels: auto, event_id given
                       event_id={"rest": "baseline", "task": "active"}, **EXACT)
    assert mapped.classes == ["active", "baseline"]  # stim is not in event_id: its window is unlabelled
    assert [None if np.isnan(v) else mapped.classes[int(v)] for v in mapped.labels][:8] == \
        ["baseline"] * 3 + ["active"] * 4 + [None]
    with pytest.warns(UserWarning, match=r"labels from events, but no window falls in an event named in "
                                         r"data.event_id \(Rest\); the recordings' events: rest, stim, task"):
        unmatched = EEGFolder(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), labels="events",
                              event_id={"Rest": "rest"}, **EXACT)
    assert unmatched.labels is None
