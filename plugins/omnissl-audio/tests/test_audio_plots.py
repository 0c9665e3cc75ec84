"""Clip names in the reconstruction plot: drawn in a font that has their characters, or by row number."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen
from matplotlib import font_manager

import omnissl_audio.plots as plots
from omnissl.maskers import RandomMasker
from omnissl.tokens import collate_tokens
from omnissl_audio import AudioModality
from omnissl_audio.modality import STREAM

matplotlib.use("Agg")
NAME = "録音/日本語.wav"  # a Japanese recording in a Japanese folder: the plot shows both parts


def write_font(path: Path, family: str, characters: str) -> Path:
    """A TrueType font (fontTools) with a glyph, a hollow square, for each of ``characters``."""
    glyphs = [".notdef"] + [f"uni{ord(c):04X}" for c in characters]
    builder = FontBuilder(1000, isTTF=True)
    builder.setupGlyphOrder(glyphs)
    builder.setupCharacterMap({ord(c): f"uni{ord(c):04X}" for c in characters})
    outlines = {}
    for glyph in glyphs:
        pen = TTGlyphPen(None)
        for square in (((100, 0), (100, 700), (800, 700), (800, 0)), ((200, 100), (700, 100), (700, 600), (200, 600))):
            pen.moveTo(square[0])
            for point in square[1:]:
                pen.lineTo(point)
            pen.closePath()
        outlines[glyph] = pen.glyph()
    builder.setupGlyf(outlines)
    builder.setupHorizontalMetrics({glyph: (1000, 100) for glyph in glyphs})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": family, "styleName": "Regular"})
    builder.setupOS2(sTypoAscender=800, usWinAscent=800, usWinDescent=200)
    builder.setupPost()
    builder.save(str(path))
    return path


@pytest.fixture
def latin_fonts_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fonts of a machine without CJK fonts: matplotlib's own (DejaVu, STIX, Computer Modern)."""
    fonts = [entry for entry in font_manager.fontManager.ttflist if "mpl-data" in entry.fname]
    monkeypatch.setattr(font_manager.fontManager, "ttflist", fonts)


def draw_reconstruction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[plt.Figure, list[str]]:
    """The audio modality's reconstruction plot of two clips, one of them with a Japanese name.

    Returns the drawn figure and the text of every warning raised while it was drawn and saved.
    """
    modality = AudioModality(target_frames=32, num_mel_bins=16, patch_size=[4, 16])
    rng = np.random.default_rng(0)
    samples = [{"features": rng.standard_normal((32, 16)).astype(np.float32), "path": f"/data/{name}"}
               for name in ("speech/english.wav", NAME)]
    batch = modality.on_device(collate_tokens([modality.tokenize(s, None) for s in samples]))
    hidden = RandomMasker(0.5)(batch, torch.Generator().manual_seed(0)).hidden
    figures: list[plt.Figure] = []
    with monkeypatch.context() as patch, warnings.catch_warnings(record=True) as caught:
        patch.setattr(plt, "close", figures.append)  # keep the figure to read its text
        warnings.simplefilter("always")
        modality.visualize(batch, hidden, {STREAM: batch.values}, tmp_path / "reconstruction.png")
    assert (tmp_path / "reconstruction.png").stat().st_size > 1000
    return figures[0], [str(w.message) for w in caught]


def row_labels(figure: plt.Figure) -> list[matplotlib.text.Text]:
    return [ax.yaxis.label for ax in figure.axes if ax.get_subplotspec().is_first_col()]


def test_a_cjk_name_is_drawn_in_an_installed_font_that_has_its_characters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, latin_fonts_only: None) -> None:
    font = write_font(tmp_path / "TestCJK.ttf", "Omnissl Test CJK", "録音日本語")
    monkeypatch.setattr(font_manager.fontManager, "ttflist", list(font_manager.fontManager.ttflist))
    font_manager.fontManager.addfont(font)  # as if installed: the plot must find it on its own
    figure, messages = draw_reconstruction(tmp_path, monkeypatch)
    english, japanese = row_labels(figure)
    plt.close(figure)
    assert english.get_text() == "speech/english.wav"
    assert japanese.get_text() == NAME and japanese.get_fontfamily() == ["DejaVu Sans", "Omnissl Test CJK"]
    assert {ord(c) for c in "録音日本語"} <= plots._characters(str(font), 0)
    assert not [m for m in messages if "Glyph" in m], messages
    assert figure.get_suptitle() == ""  # every name drawn: no note


def test_a_name_no_installed_font_can_draw_falls_back_to_its_row_number_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, latin_fonts_only: None) -> None:
    assert plots.fonts_for(NAME) is None and plots.fonts_for("Front_Center.wav") == ["DejaVu Sans"]
    figure, messages = draw_reconstruction(tmp_path, monkeypatch)
    english, japanese = row_labels(figure)
    note = figure.get_suptitle()
    plt.close(figure)
    assert english.get_text() == "speech/english.wav" and japanese.get_text() == "clip 1"
    assert "clip 1: shown by row number" in note and "fonts-noto-cjk" in note
    assert not [m for m in messages if "Glyph" in m], messages

