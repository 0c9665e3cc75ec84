"""`omnissl new-plugin`: the generated plugin installs with pip, is listed, and passes its own tests.

The plugin is installed (not editable) into a fresh virtual environment that sees this
environment's packages through a ``.pth`` file, so nothing is downloaded and this
environment is left as it was.
"""

import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

from omnissl.cli import main
from omnissl.errors import OmnisslError
from omnissl.scaffold import new_plugin, plugin_names, template_files

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert result.returncode == 0, f"{command}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def test_generated_plugin_installs_lists_and_passes_its_tests(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("OMNISSL_PLUGINS", "PYTHONPATH")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OMNISSL_CACHE=str(tmp_path / "cache"))
    created = run(sys.executable, "-m", "omnissl", "new-plugin", "demo_x", "--dir", str(tmp_path), cwd=tmp_path,
                  env=env)
    plugin = tmp_path / "omnissl-demo-x"
    assert f"created {plugin}" in created and "omnissl train demo_x/mae-demo" in created
    recipe = plugin / "src" / "omnissl_demo_x" / "recipes" / "demo_x" / "mae-demo.yaml"
    assert recipe.read_text().splitlines()[0] == "# omnissl train demo_x/mae-demo --out runs/demo_x-demo"
    assert not list(tmp_path.glob(".omnissl-demo-x*")), "the staging folder was left behind"

    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    env_site = next((env_dir / "lib").glob("python*/site-packages"))
    # addsitedir, not a bare path: it also runs this environment's .pth files (its editable installs)
    sites = [p for p in sys.path if p.endswith("site-packages")]
    (env_site / "current_env.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in sites))
    python = str(env_dir / "bin" / "python")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-build-isolation", "-q",
        str(plugin), cwd=tmp_path, env=env)
    installed = env_site / "omnissl_demo_x" / "recipes" / "demo_x" / "mae-demo.yaml"
    assert installed.is_file(), "the recipe is not package data of the wheel"

    plugins = run(python, "-m", "omnissl", "plugins", cwd=tmp_path, env=env)
    assert "demo_x 0.1.0  (entry point of omnissl-demo-x)" in plugins
    assert "demo_x_folder, demo_x_synthetic" in plugins and f"recipes     1 in {installed.parents[1]}" in plugins
    recipes = run(python, "-m", "omnissl", "recipes", "ls", "demo_x/*", cwd=tmp_path, env=env)
    assert "demo_x/mae-demo" in recipes and "omnissl train demo_x/mae-demo" in recipes

    report = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "pytest"),
                 "tests", cwd=plugin, env=env)
    last = report.strip().splitlines()[-1]
    assert " passed" in last and "failed" not in last and "skipped" not in last and "error" not in last, report


@pytest.mark.parametrize("name", ["Demo", "demo-x", "1demo", "demo__x", "demo_", "_demo", "dé", ""])
def test_bad_names_are_refused(name, tmp_path):
    with pytest.raises(OmnisslError, match="is not a valid plugin name: use lowercase letters"):
        new_plugin(name, tmp_path)
    assert not list(tmp_path.iterdir())


def test_bad_name_on_the_command_line_suggests_one(tmp_path, capsys):
    assert main(["new-plugin", "My-Sensor", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'My-Sensor' is not a valid plugin name" in err and "such as 'my_sensor'" in err
    assert not list(tmp_path.iterdir())


def test_existing_folder_is_never_overwritten(tmp_path, capsys):
    folder = tmp_path / "omnissl-demo-x"
    folder.mkdir()
    (folder / "mine.py").write_text("kept")
    assert main(["new-plugin", "demo_x", "--dir", str(tmp_path)]) == 2
    assert f"{folder} already exists: new-plugin never overwrites" in capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == ["mine.py"] and (folder / "mine.py").read_text() == "kept"
    with pytest.raises(OmnisslError, match="is not a folder"):
        new_plugin("demo_x", tmp_path / "missing")


def test_name_an_installed_plugin_registers_is_refused(tmp_path):
    with pytest.raises(OmnisslError, match="plugin 'image' \\(installed\\) already registers a modality named 'image'"):
        new_plugin("image", tmp_path)
    assert not list(tmp_path.iterdir())


def test_names_and_templates():
    names = plugin_names("my_sensor")
    assert (names.package, names.dist, names.class_stem) == ("omnissl_my_sensor", "omnissl-my-sensor", "MySensor")
    templates = template_files()
    assert {"pyproject.toml", "README.md", "src/{{package}}/plugin.py", "src/{{package}}/modality.py",
            "src/{{package}}/datasets.py", "src/{{package}}/recipes/{{name}}/mae-demo.yaml"} <= set(templates)
    # The core's package data must carry every template, or a non-editable install of omnissl cannot scaffold.
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["omnissl"]
    shipped = {p for pattern in patterns for p in (ROOT / "omnissl").glob(pattern)}
    on_disk = {p for p in (ROOT / "omnissl" / "templates").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert on_disk == shipped
