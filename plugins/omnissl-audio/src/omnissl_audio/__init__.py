"""Audio for omnissl: cached log-mel front ends, (time, frequency) patch tokens, AudioMAE recipes.

The names below are imported on first access (PEP 562), so that loading the plugin
(``omnissl_audio.plugin``, which imports this package first) does not import torchaudio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnissl.lazyattrs import lazy_attributes

_LAZY = {"AudioClips": "omnissl_audio.datasets", "AudioFolder": "omnissl_audio.datasets",
         "AudioManifest": "omnissl_audio.datasets", "FrontEnd": "omnissl_audio.frontend",
         "TimeFrequencyMasker": "omnissl_audio.masking", "AudioModality": "omnissl_audio.modality",
         "PyannoteSpeakers": "omnissl_audio.speech", "SpokenDigits": "omnissl_audio.speech"}

if TYPE_CHECKING:
    from omnissl_audio.datasets import AudioClips, AudioFolder, AudioManifest
    from omnissl_audio.frontend import FrontEnd
    from omnissl_audio.masking import TimeFrequencyMasker
    from omnissl_audio.modality import AudioModality
    from omnissl_audio.speech import PyannoteSpeakers, SpokenDigits

__version__ = "0.1.0"
__all__ = ["AudioModality", "AudioClips", "AudioFolder", "AudioManifest", "SpokenDigits", "PyannoteSpeakers",
           "FrontEnd", "TimeFrequencyMasker"]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
