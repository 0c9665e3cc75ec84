"""The image plugin end to end: a folder with a corrupt file trains; the demo recipe validates."""

import subprocess
import sys

import numpy as np
from PIL import Image


def test_folder_with_corrupt_image_trains(tmp_path):
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    (root / "a" / "truncated.png").write_bytes((root / "a" / "0.png").read_bytes()[:40])
    out = tmp_path / "run"
    command = [sys.executable, "-m", "omnissl", "train", "image/mae-vit-base", f"data.root={root}", "data.num_workers=0",
               "data.val_fraction=0.25", "modality.image_size=16", "modality.patch_size=4", "encoder.size=tiny",
               "encoder.dim=32", "encoder.depth=1", "encoder.heads=2", "objective.decoder_dim=32",
               "objective.decoder_depth=1", "objective.decoder_heads=2", "train.steps=3", "train.batch_size=8",
               "train.micro_batch_size=4", "optim.warmup_steps=1", "probe.knn_k=3", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "skipping unreadable image" in result.stderr and "truncated.png" in result.stderr
    assert (out / "probe.json").is_file() and (out / "reconstruction.png").is_file()


def test_folder_without_images_is_a_clear_error(tmp_path, capsys):
    # The CLI's entry point in this process (``python -m omnissl`` exits with its code): a process of
    # its own would only add seconds of imports.
    from omnissl.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["train", "image/mae-vit-base", f"data.root={tmp_path / 'empty'}", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("omnissl: error: ") and "Traceback" not in err
    assert "no readable image under" in err
