"""A user's install: ``make wheels`` builds the distributions, then a fresh virtual environment
gets the core and a single plugin from them and runs that plugin's recipe by name.

The fresh environments reuse this one's third-party packages (torch, timm, MNE, ...) through a
folder of links that leaves out every omnissl distribution (a ``.pth`` file names it), so only
the wheels built here provide omnissl. ``pip install --no-index --find-links`` resolves every
other requirement against those packages: nothing is downloaded, and a requirement they do not
satisfy fails the install.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ("omnissl-image", "omnissl-eeg")  # the wheels the tests below install, one plugin each


def run(*command: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=900)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make wheels`` for the core and the plugins installed below, into a temporary ``dist``."""
    dist = tmp_path_factory.mktemp("dist")
    bin_dir = Path(sys.executable).parent
    run("make", "--no-print-directory", "wheels", f"DIST={dist}", f"BIN={bin_dir}",
        "PLUGINS=" + " ".join(f"plugins/{name}" for name in PLUGINS),
        "-o", f"{bin_dir}/.installed", cwd=ROOT)  # -o: this environment is set up; never pip install here
    built = sorted(p.name.split("-")[0] for p in dist.glob("*.whl"))
    assert built == ["omnissl", "omnissl_eeg", "omnissl_image"]
    return dist


@pytest.fixture(scope="module")
def third_party(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Links to this environment's installed packages, every omnissl distribution left out."""
    folder = tmp_path_factory.mktemp("third_party")
    for source in map(Path, site.getsitepackages()):
        for entry in source.iterdir():
            name = entry.name.lower()
            if name.startswith(("omnissl", "__editable__", "_omnissl")) or entry.suffix == ".pth":
                continue
            if not (folder / entry.name).exists():
                (folder / entry.name).symlink_to(entry)
    return folder


def fresh_env(where: Path, third_party: Path) -> tuple[Path, Path]:
    """A new virtual environment that sees ``third_party``: (its bin folder, its site-packages)."""
    venv.create(where, with_pip=False)
    env_site = next((where / "lib").glob("python*/site-packages"))
    (env_site / "third_party.pth").write_text(str(third_party) + "\n")
    return where / "bin", env_site


def pip_install(bin_dir: Path, wheels: Path, name: str) -> None:
    """What a user types, with ``--no-index``: ``pip install --find-links dist NAME``."""
    run(sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "-q", "--no-index",
        "--find-links", str(wheels), name)


def user_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user's shell: no source checkout on the path, a cache of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMNISSL_PLUGINS", "PYTHONPATH")}
    return {**env, "OMNISSL_CACHE": str(tmp_path / "cache")}


def test_wheels_install_and_run_a_recipe_by_name(tmp_path: Path, wheels: Path, third_party: Path):
    bin_dir, env_site = fresh_env(tmp_path / "env", third_party)
    pip_install(bin_dir, wheels, "omnissl-image")
    env = user_env(tmp_path)
    plugins = run(str(bin_dir / "omnissl"), "plugins", cwd=tmp_path, env=env).stdout
    assert "image 0.1.0  (entry point of omnissl-image)" in plugins
    assert "eeg" not in plugins  # nothing leaks in from the development environment
    recipes = run(str(bin_dir / "omnissl"), "recipes", cwd=tmp_path, env=env).stdout
    assert "image/mae-digits" in recipes
    origin = run(str(bin_dir / "python"), "-c", "import omnissl_image; print(omnissl_image.__file__)",
                 cwd=tmp_path, env=env)
    assert str(env_site) in origin.stdout
    out = tmp_path / "run"
    run(str(bin_dir / "omnissl"), "train", "image/mae-digits", "train.steps=3", "train.batch_size=32",
        "encoder.depth=1", "objective.decoder_depth=1", "probe.max_samples=300", "--out", str(out),
        cwd=tmp_path, env=env)
    assert (out / "probe.json").is_file() and (out / "checkpoints" / "last.pt").is_file()


REQUIREMENTS = """
import json, sys
from importlib import metadata
from packaging.requirements import Requirement

def unmet(name, extras=()):
    for text in metadata.requires(name) or []:
        req = Requirement(text)
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            yield f"{name} needs {req}: not installed"
            continue
        if not req.specifier.contains(version, prereleases=True):
            yield f"{name} needs {req}: {version} is installed"
        yield from unmet(req.name, req.extras) if req.name.startswith("omnissl") else ()

dists = sorted(d.metadata["Name"] for d in metadata.distributions() if d.metadata["Name"].startswith("omnissl"))
print(json.dumps({"omnissl": dists, "unmet": list(unmet(sys.argv[1]))}))
"""


def test_the_core_and_one_plugin_alone_install_from_wheels_and_train(tmp_path: Path, wheels: Path,
                                                                     third_party: Path):
    """README's "Installing one plugin": ``make wheels``, then ``pip install --find-links dist
    omnissl-eeg`` into a new environment, then the plugin's demo, for a few steps."""
    bin_dir, env_site = fresh_env(tmp_path / "env", third_party)
    pip_install(bin_dir, wheels, "omnissl-eeg")
    env = user_env(tmp_path)
    found = json.loads(run(str(bin_dir / "python"), "-c", REQUIREMENTS, "omnissl-eeg", cwd=tmp_path, env=env).stdout)
    assert found == {"omnissl": ["omnissl", "omnissl-eeg"], "unmet": []}  # the image wheel beside it: not taken
    assert sorted(p.name.split("-")[0] for p in env_site.glob("omnissl*.dist-info")) == ["omnissl", "omnissl_eeg"]

    plugins = run(str(bin_dir / "omnissl"), "plugins", cwd=tmp_path, env=env).stdout
    assert "eeg 0.1.0  (entry point of omnissl-eeg)" in plugins and "image" not in plugins
    out = tmp_path / "run"
    run(str(bin_dir / "omnissl"), "train", "eeg/mae-demo", "train.steps=3", "train.batch_size=16",
        "encoder.depth=1", "objective.decoder_depth=1", "--out", str(out), cwd=tmp_path, env=env)
    assert (out / "probe.json").is_file() and (out / "checkpoints" / "last.pt").is_file()
