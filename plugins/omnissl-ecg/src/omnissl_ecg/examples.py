"""Real ECG recordings that ship inside pip packages: the demo's data and the tests' recordings.

Nothing downloads: each source is a package installed with ``pip install --no-deps`` (the
repository's ``make install`` does it), and its files are read from the installed package.

* ``ecgprocess`` (1.2.0): three 10 s resting 12-lead ECGs at 500 Hz: a GE CardioSoft XML
  export (5 uV per unit) and two GE MUSE exports as DICOM 12-lead ECG waveforms (from a
  hospital's research system, "for research purposes only", de-identified).
* ``biosignalsnotebooks`` (0.6.14): six single-lead recordings of PLUX biosignalsplux
  amplifiers (OpenSignals HDF5, 16-bit): 5 min and 7 min at rest, 1 min supine, and three of
  10-20 s, at 200, 1000 and 4000 Hz. One is documented as lead II; the others name no lead.
* ``pyhrv`` (0.5.0): 22 s of single-lead ECG from a BITalino board (OpenSignals text, 10-bit,
  1000 Hz), no lead named.

PLUX's transfer functions turn ADC counts into millivolts: ``(adc / 2**bits - 1/2) * vcc / gain``
(biosignalsplux ECG: vcc 3 V, gain 1019; BITalino ECG: vcc 3.3 V, gain 1100).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Callable, Sequence

import numpy as np

from omnissl import skip_or_raise
from omnissl.errors import DataError
from omnissl.recipe import Range
from omnissl_ecg.cache import WindowCache
from omnissl_ecg.datasets import ECGWindows, heart_rate_labels, settings_from
from omnissl_ecg.preprocessing import preprocess
from omnissl_ecg.readers import Record

SOURCES = ("ecgprocess", "biosignalsnotebooks", "pyhrv")
INSTALL = "pip install --no-deps ecgprocess==1.2.0 biosignalsnotebooks==0.6.14 pyhrv==0.5.0"
# The records of the given split's test side: whole records (a 5-minute rest recording, a 12-lead,
# and the shortest single-lead ones), so that no record has windows on both sides, and each side
# holds single-lead and 12-lead windows, long and short records (~70 of 173 windows held out).
HELD_OUT = ("ecg_5_min.h5", "example-DICOM2.dcm", "ecg_4000_Hz.h5", "ecg_sample.h5", "SampleECG.txt")
# biosignalsnotebooks' ECG recordings (file stem -> the lead its description names, else "ECG").
PLUX_ECG = {"ecg_5_min": "ECG", "signal_sample_single_hub_ECG_2018_7_5": "ECG", "supine_1min": "ECG",
            "ecg_20_sec_1000_Hz": "II", "ecg_4000_Hz": "ECG", "ecg_sample": "ECG"}


def package_folder(name: str) -> Path:
    """The installed folder of a data package, or a DataError saying how to install it."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the example ECGs of {name!r} ship in its pip package, which is not installed: {INSTALL}")
    return Path(list(spec.submodule_search_locations)[0])


def plux_millivolts(adc: np.ndarray, bits: int, vcc: float, gain: float) -> np.ndarray:
    return (adc / 2.0 ** bits - 0.5) * vcc / gain * 1e3


def read_opensignals_text(path: Path) -> Record:
    """An OpenSignals text file (BITalino): the JSON header's rate and resolution, the last column the ECG."""
    lines = path.read_text().splitlines()
    header = json.loads(lines[1].lstrip("# "))
    device = next(iter(header.values()))
    data = np.loadtxt(lines[3:], dtype=np.float64, ndmin=2)
    return Record(plux_millivolts(data[:, -1], int(device["resolution"][-1]), 3.3, 1100.0)[None], ["ECG"],
                  float(device["sampling rate"]))


def read_opensignals_h5(path: Path, lead: str) -> Record:
    """An OpenSignals HDF5 file (biosignalsplux): its first device's one analog channel."""
    import h5py

    with h5py.File(path, "r") as handle:
        device = handle[next(iter(handle.keys()))]
        raw = device["raw"]
        channel = next(name for name in raw.keys() if name != "nSeq")
        adc = np.asarray(raw[channel][:, 0], dtype=np.float64)
        bits, rate = int(np.ravel(device.attrs["resolution"])[0]), float(device.attrs["sampling rate"])
    return Record(plux_millivolts(adc, bits, 3.0, 1019.0)[None], [lead], rate)


def read_cardiosoft_xml(path: Path) -> Record:
    """The 10 s 12-lead strip of a GE CardioSoft XML export (``StripData``)."""
    import xml.etree.ElementTree as ET

    strip = ET.parse(path).getroot().find("StripData")
    if strip is None:
        raise DataError(f"{path}: no StripData element (not a CardioSoft resting ECG export)")
    rate = float(strip.findtext("SampleRate"))
    scale = float(strip.findtext("Resolution")) * 1e-3  # uV per unit -> mV
    leads = strip.findall("WaveformData")
    signal = np.array([[float(v) for v in w.text.replace("\n", "").split(",") if v.strip()] for w in leads])
    return Record(signal * scale, [w.get("lead") for w in leads], rate)


def read_dicom_ecg(path: Path) -> Record:
    """The first waveform (the full-length rhythm, not the median beat) of a DICOM 12-lead ECG, in mV."""
    import pydicom

    from omnissl_ecg.readers import to_millivolts

    dataset = pydicom.dcmread(path)
    waveform = dataset.WaveformSequence[0]
    channels = waveform.ChannelDefinitionSequence
    signal = np.asarray(dataset.waveform_array(0), dtype=np.float64).T  # [C, T] in each channel's unit
    units = [c.ChannelSensitivityUnitsSequence[0].CodeValue for c in channels]
    scale = np.array([to_millivolts(u, str(path)) for u in units])[:, None]
    return Record(signal * scale, [c.ChannelSourceSequence[0].CodeMeaning for c in channels],
                  float(waveform.SamplingFrequency))


def example_files(sources: Sequence[str]) -> list[tuple[Path, Callable[[], Record]]]:
    """(file, reader) of every example recording of ``sources``."""
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown or not sources:
        raise DataError(f"data.sources must list some of {', '.join(SOURCES)}, got {list(sources)}")
    found: list[tuple[Path, Callable[[], Record]]] = []
    if "ecgprocess" in sources:
        folder = package_folder("ecgprocess") / "example_data" / "example_datasets"
        xml = folder / "example-XML1.xml"
        found.append((xml, lambda p=xml: read_cardiosoft_xml(p)))
        found += [(p, lambda p=p: read_dicom_ecg(p)) for p in sorted(folder.glob("example-DICOM*.dcm"))]
    if "biosignalsnotebooks" in sources:
        folder = package_folder("biosignalsnotebooks") / "notebook_files" / "osf_files" / "signal_samples"
        found += [(folder / f"{stem}.h5", lambda p=folder / f"{stem}.h5", lead=lead: read_opensignals_h5(p, lead))
                  for stem, lead in PLUX_ECG.items()]
    if "pyhrv" in sources:
        path = package_folder("pyhrv") / "files" / "SampleECG.txt"
        found.append((path, lambda p=path: read_opensignals_text(p)))
    return found


class ECGExamples(ECGWindows):
    """The real ECG recordings that ship in pip packages (:mod:`omnissl_ecg.examples`): 3 resting
    12-lead ECGs (10 s, 500 Hz) and 7 single-lead recordings (10 s to 7 min, 200-4000 Hz), about
    14 minutes from 10 records, each its own group.

    Labels: each window's heart rate in beats per minute (``heart_rate``, a regression target
    measured by the XQRS detector) or none. ``split`` holds out whole records (:data:`HELD_OUT`),
    so ``data.split: auto`` evaluates on records never seen in training; with ten records a
    random grouped split can hold out three 10 s records (six windows). Preprocessed and cached
    as ``ecg_folder``.

    Args:
        sources: the packages to read: ecgprocess (12-lead), biosignalsnotebooks, pyhrv (single-lead).
        labels: heart_rate (bpm per window, regression) or none.
        l_freq: high-pass edge in Hz (baseline wander); null: none.
        h_freq: low-pass edge in Hz (skipped at or above a record's Nyquist rate); null: none.
        notch: mains frequency in Hz, harmonics too; null: none.
        sfreq: rate in Hz every record is resampled to (must equal modality.sfreq).
        window_seconds: window length; null keeps each record whole.
        stride_seconds: step between window starts; null: window_seconds (no overlap).
        unknown_leads: the single-lead recordings that name no lead: other (kept, direction unknown), drop, or error.
        reject: peak-to-peak limit in mV per lead and window; a window beyond it is dropped; null keeps all.
        cache_dir: window cache folder; null: $OMNISSL_CACHE/ecg or the platform cache.
    """

    def __init__(self, sources: list[str] = list(SOURCES), labels: str = "heart_rate",
                 l_freq: Annotated[float | None, Range(gt=0)] = 0.5,
                 h_freq: Annotated[float | None, Range(gt=0)] = 40.0,
                 notch: Annotated[float | None, Range(gt=0)] = 50.0, sfreq: Annotated[float, Range(gt=0)] = 100.0,
                 window_seconds: Annotated[float | None, Range(gt=0)] = 5.0,
                 stride_seconds: Annotated[float | None, Range(gt=0)] = None, unknown_leads: str = "other",
                 reject: Annotated[float | None, Range(gt=0)] = 20.0, cache_dir: str | None = None):
        if labels not in ("heart_rate", "none"):
            raise DataError(f"data.labels must be heart_rate or none for ecg_examples, got {labels!r}")
        settings = settings_from(l_freq, h_freq, notch, sfreq, window_seconds, stride_seconds, unknown_leads, reject,
                                 labels)
        cache = WindowCache(cache_dir, settings)
        recordings, used, skipped = [], [], []
        for path, read in example_files(sources):
            try:
                key = cache.key(path)
                windows = cache.load(key, str(path))
                if windows is None:
                    windows = cache.store(key, preprocess(read(), settings, path.name), str(path))
            except DataError as exc:
                skip_or_raise(skipped, str(path), str(exc), False, cause=exc)
                continue
            if len(windows.data):
                recordings.append(windows)
                used.append(path.name)
        cache.save_index()
        super().__init__(recordings, used, heart_rate_labels(recordings) if labels == "heart_rate" else None,
                         skipped=skipped, files=len(used))
        self.split = np.repeat(["test" if name in HELD_OUT else "train" for name in used],
                               [len(w.data) for w in recordings])
