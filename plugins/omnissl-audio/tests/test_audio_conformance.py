"""The core's conformance checks (omnissl.testing) on alsa-utils' real spoken clips."""

import shutil
from pathlib import Path

from omnissl.testing import ModalityConformance
from omnissl_audio.datasets import AudioFolder
from omnissl_audio.modality import AudioModality


class TestAudioConformance(ModalityConformance):
    recipe_overrides = ("modality.num_mel_bins=64",)  # the shipped recipes train on these 64-bin clips

    def make_modality(self):
        return AudioModality(target_frames=64, num_mel_bins=64, patch_size=[16, 16])

    def make_dataset(self, tmp_path):
        root = tmp_path / "clips"
        root.mkdir(exist_ok=True)
        for path in sorted(Path("/usr/share/sounds/alsa").glob("*.wav"))[:4]:
            shutil.copy(path, root / path.name)
        return AudioFolder(str(root), num_mel_bins=64, cache_dir=str(tmp_path / "cache"))
