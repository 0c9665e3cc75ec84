"""Shared helpers of the audio plugin's tests: real recordings that Debian and pip packages ship."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

ALSA = Path("/usr/share/sounds/alsa")


@pytest.fixture
def alsa_files() -> list[Path]:
    """alsa-utils' spoken channel names (48 kHz mono PCM, about 1.4 s each)."""
    files = sorted(ALSA.glob("*.wav"))
    assert files, f"no WAVs in {ALSA}: these tests need Debian's alsa-utils (apt-get install alsa-utils)"
    return files


@pytest.fixture
def audio_cache(tmp_path: Path) -> str:
    """A fresh feature-cache root for one test."""
    return str(tmp_path / "cache")


@pytest.fixture
def write_wav() -> Callable[[Path, np.ndarray, int], Path]:
    """A function writing (samples,) floats as a 16-bit WAV at a rate, creating folders."""

    def write(path: Path, samples: np.ndarray, rate: int) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, samples, rate, subtype="PCM_16")
        return path

    return write
