"""Original vs reconstructed leads, hidden patches shaded: the ECG modality's reconstruction plot."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from omnissl.tokens import TokenBatch
from omnissl_ecg.leads import LEADS


def plot_leads(batch: TokenBatch, hidden: Tensor, predictions: Tensor, path: Path, patch: int, sfreq: float,
               amplitude_scale: float, samples: int = 3, leads: int = 3) -> Path:
    """One panel per sample, up to ``leads`` leads stacked: the original in black, the prediction
    of hidden patches in red over an orange band.

    Args:
        batch: (B, N, patch) values; tokens lead-major (``meta`` gives leads and patches).
        hidden: (B, N) bool.
        predictions: (B, N, patch) predicted values, valid where ``hidden``.
        path: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    shown = min(samples, batch.batch_size)
    fig, axes = plt.subplots(shown, 1, figsize=(11, 2.4 * shown), dpi=110, squeeze=False)
    for b in range(shown):
        ax, meta = axes[b][0], batch.meta[b]
        n_l, n_p = meta["num_leads"], meta["num_patches"]
        values = batch.values[b, : n_l * n_p].float().view(n_l, n_p, patch) * amplitude_scale
        pred = predictions[b, : n_l * n_p].float().view(n_l, n_p, patch) * amplitude_scale
        mask = hidden[b, : n_l * n_p].view(n_l, n_p)
        picked = list(range(min(n_l, leads)))
        spread = float(values[picked].abs().max()) * 2 or 1.0
        time = torch.arange(n_p * patch) / sfreq
        for row, c in enumerate(picked):
            offset = -row * spread
            ax.plot(time, values[c].reshape(-1) + offset, color="black", lw=0.7, label="original" if row == 0 else None)
            for p in torch.nonzero(mask[c]).flatten().tolist():
                span = slice(p * patch, (p + 1) * patch)
                ax.add_patch(Rectangle((float(time[span][0]), offset - spread / 2), patch / sfreq, spread,
                                       color="tab:orange", alpha=0.2, lw=0))
                ax.plot(time[span], pred[c, p] + offset, color="tab:red", lw=0.9)
            name = LEADS[meta["leads"][c]] if meta["leads"][c] < len(LEADS) else "other"
            ax.text(float(time[0]), offset + spread * 0.3, name, fontsize=8)
        ax.set_yticks([])
        ax.set_xlabel("time (s)")
        ax.set_title(f"sample {b}: {n_l} lead(s) x {n_p} patches, {int(mask.sum())} hidden (red: prediction)",
                     fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
