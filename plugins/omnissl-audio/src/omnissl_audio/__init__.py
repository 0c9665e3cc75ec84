"""Audio for omnissl: cached log-mel front ends, (time, frequency) patch tokens, AudioMAE recipes."""

from omnissl_audio.datasets import AudioClips, AudioFolder, AudioManifest
from omnissl_audio.frontend import FrontEnd
from omnissl_audio.masking import TimeFrequencyMasker
from omnissl_audio.modality import AudioModality
from omnissl_audio.speech import PyannoteSpeakers, SpokenDigits

__version__ = "0.1.0"
__all__ = ["AudioModality", "AudioClips", "AudioFolder", "AudioManifest", "SpokenDigits", "PyannoteSpeakers",
           "FrontEnd", "TimeFrequencyMasker"]
