"""A user's install: build the core and image wheels, install them into a fresh virtual
environment, and run a recipe by name from there.

The fresh environment reuses this one's third-party packages (torch, timm, ...) through
a folder of links that leaves out every omnissl distribution, so only the wheels built
here provide omnissl; nothing is downloaded.
"""

import os
import site
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=900)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_wheels_install_and_run_a_recipe_by_name(tmp_path):
    wheels = tmp_path / "wheels"
    for project in (ROOT, ROOT / "plugins" / "omnissl-image"):
        run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
            str(project))
    built = sorted(p.name for p in wheels.glob("*.whl"))
    assert [n.split("-")[0] for n in built] == ["omnissl", "omnissl_image"]

    third_party = tmp_path / "third_party"
    third_party.mkdir()
    for source in map(Path, site.getsitepackages()):
        for entry in source.iterdir():
            name = entry.name.lower()
            if name.startswith(("omnissl", "__editable__", "_omnissl")) or entry.suffix == ".pth":
                continue
            if not (third_party / entry.name).exists():
                (third_party / entry.name).symlink_to(entry)
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    env_site = next((env_dir / "lib").glob("python*/site-packages"))
    (env_site / "third_party.pth").write_text(str(third_party) + "\n")
    python = env_dir / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
        *map(str, sorted(wheels.glob("*.whl"))))

    env = {k: v for k, v in os.environ.items() if k not in ("OMNISSL_PLUGINS", "PYTHONPATH")}
    plugins = run(str(env_dir / "bin" / "omnissl"), "plugins", cwd=tmp_path, env=env).stdout
    assert "image 0.1.0  (entry point of omnissl-image)" in plugins
    assert "eeg" not in plugins  # nothing leaks in from the development environment
    recipes = run(str(env_dir / "bin" / "omnissl"), "recipes", cwd=tmp_path, env=env).stdout
    assert "image/mae-digits" in recipes
    origin = run(str(python), "-c", "import omnissl_image; print(omnissl_image.__file__)", cwd=tmp_path, env=env)
    assert str(env_site) in origin.stdout
    out = tmp_path / "run"
    run(str(env_dir / "bin" / "omnissl"), "train", "image/mae-digits", "train.steps=3", "train.batch_size=32",
        "encoder.depth=1", "objective.decoder_depth=1", "probe.max_samples=300", "--out", str(out),
        cwd=tmp_path, env=env)
    assert (out / "probe.json").is_file() and (out / "checkpoints" / "last.pt").is_file()
