"""Original vs reconstructed traces, hidden patches shaded: the EEG modality's reconstruction plot."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from omnissl.tokens import TokenBatch
from omnissl_eeg.spectrum import patches_from_spectrum


def reconstructed_values(batch: TokenBatch, predictions: dict[str, Tensor], patch: int) -> Tensor:
    """(B, N, patch) predicted patches: the raw stream when trained, else the inverse FFT of the spectrum."""
    if "values" in predictions:
        return predictions["values"].float()
    return patches_from_spectrum(predictions["spectrum"], patch)


def plot_traces(batch: TokenBatch, hidden: Tensor, predictions: dict[str, Tensor], path: Path, patch: int,
                sfreq: float, amplitude_scale: float, samples: int = 3, channels: int = 4) -> Path:
    """One panel per sample, a few channels stacked: original in black, reconstruction of hidden
    patches in red, hidden spans shaded.

    Args:
        batch: (B, N, patch) values in units of ``amplitude_scale``; tokens channel-major.
        hidden: (B, N) bool.
        predictions: per stream, (B, N, dim) predictions, valid where ``hidden``.
        path: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    recon = reconstructed_values(batch, predictions, patch)
    shown = min(samples, batch.batch_size)
    fig, axes = plt.subplots(shown, 1, figsize=(11, 2.6 * shown), dpi=110, squeeze=False)
    for b in range(shown):
        ax = axes[b][0]
        meta = batch.meta[b]
        n_ch, n_p = meta["num_channels"], meta["num_patches"]
        picked = list(range(0, n_ch, max(1, n_ch // channels)))[:channels]
        values = batch.values[b, : n_ch * n_p].float().view(n_ch, n_p, patch) * amplitude_scale
        pred = recon[b, : n_ch * n_p].view(n_ch, n_p, patch) * amplitude_scale
        mask = hidden[b, : n_ch * n_p].view(n_ch, n_p)
        spread = float(values[picked].std()) * 6 or 1.0
        time = torch.arange(n_p * patch) / sfreq
        names = meta.get("channels") or [f"ch{c}" for c in range(n_ch)]
        labelled = False
        for row, c in enumerate(picked):
            offset = -row * spread
            level = offset + float(values[c].mean())  # the trace's baseline: bands centre on it
            ax.plot(time, values[c].reshape(-1) + offset, color="black", lw=0.7,
                    label="original" if row == 0 else None)
            for p in range(n_p):
                if not mask[c, p]:
                    continue
                span = slice(p * patch, (p + 1) * patch)
                ax.add_patch(Rectangle((float(time[span][0]), level - spread / 2), patch / sfreq, spread,
                                       color="tab:orange", alpha=0.2, lw=0))
                ax.plot(time[span], pred[c, p] + offset, color="tab:red", lw=0.9,
                        label=None if labelled else "reconstruction (hidden)")
                labelled = True
            ax.text(float(time[0]), level + spread * 0.3, names[c], fontsize=8)
        ax.set_yticks([])
        ax.set_xlabel("time (s)")
        ax.set_title(f"sample {b}: {n_ch} channels x {n_p} patches, {int(mask.sum())} hidden", fontsize=9)
        ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
