"""Spectrogram grids for the reconstruction PNG, with clip names drawn in a font that has their characters."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import numpy as np

#: matplotlib ships this font to draw a box for any character: it "has" every glyph, so it never counts.
PLACEHOLDER_FONT = "Last Resort"


@functools.lru_cache(maxsize=None)
def _characters(path: str, index: int) -> frozenset[int]:
    """The code points a font file has glyphs for (empty when FreeType cannot open it)."""
    from matplotlib.ft2font import FT2Font

    try:  # face_index (a face of a .ttc collection) needs matplotlib 3.10; face 0 is the file's first
        return frozenset((FT2Font(path, face_index=index) if index else FT2Font(path)).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


def fonts_for(text: str) -> list[str] | None:
    """Font families that together draw every character of ``text``, or None if no installed font can.

    matplotlib draws with its default font (DejaVu Sans) and shows a box, with a "Glyph missing"
    warning, for each character that font lacks (every CJK character, say). When the default
    lacks some, the installed fonts are searched (regular sans faces first, Noto Sans CJK among
    them if installed) for one that has all of those; matplotlib then falls back to it glyph by
    glyph, so the Latin part of a name keeps the default font.

    Returns:
        ``[default]`` or ``[default, covering font]`` family names; None when no installed font
        has every missing character.
    """
    from matplotlib import font_manager

    default_path = font_manager.findfont(font_manager.FontProperties())
    default = font_manager.get_font(default_path).family_name
    missing = {ord(c) for c in text if not c.isspace()} - _characters(default_path, 0)
    if not missing:
        return [default]

    def preference(entry: font_manager.FontEntry) -> tuple:
        weight = entry.weight if isinstance(entry.weight, int) else 400
        return entry.style != "normal", abs(weight - 400), "Sans" not in entry.name, entry.name

    for entry in sorted(font_manager.fontManager.ttflist, key=preference):
        if not entry.name.startswith(PLACEHOLDER_FONT) and missing <= _characters(entry.fname, getattr(entry, "index", 0)):
            return [default, entry.name]
    return None


def plot_spectrograms(rows: Sequence[Sequence[np.ndarray]], names: Sequence[str], titles: Sequence[str],
                      patch_frames: int, path: Path) -> Path:
    """Draw a grid of (frames, bins) spectrograms: one row per clip, one column per title.

    Time runs left to right and frequency bottom to top; NaN (masked or absent patches) is
    drawn light grey. All panels of a row share one colour scale, the original's. Each row is
    labelled with its clip's name in a font that has its characters (:func:`fonts_for`); a
    name that no installed font can draw is replaced by ``clip <row>`` and the figure's title
    says so, rather than drawn as boxes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, k = len(rows), len(titles)
    fig, axes = plt.subplots(n, k, figsize=(3.2 * k, 1.7 * n + 0.6), dpi=110, squeeze=False)
    undrawable = []
    for r, (row, name) in enumerate(zip(rows, names)):
        finite = row[0][np.isfinite(row[0])]
        low, high = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
        for c, image in enumerate(row):
            ax = axes[r][c]
            cmap = matplotlib.colormaps["magma"].with_extremes(bad="#d9d9d9")
            ax.imshow(np.ma.masked_invalid(image.T), origin="lower", aspect="auto", cmap=cmap, vmin=low, vmax=high,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
        families = fonts_for(name)
        if families is None:
            undrawable.append(r)
            axes[r][0].set_ylabel(f"clip {r}", fontsize=6)
        else:
            axes[r][0].set_ylabel(name, fontsize=6, fontfamily=families)
    fig.supxlabel(f"time (frames; patches of {patch_frames})", fontsize=8)
    fig.supylabel("mel bin", fontsize=8)
    if undrawable:
        fig.suptitle(f"clip {', '.join(map(str, undrawable))}: shown by row number, as no installed font has the "
                     f"characters of {'its name' if len(undrawable) == 1 else 'their names'} "
                     f"(install one that does, e.g. fonts-noto-cjk)", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
