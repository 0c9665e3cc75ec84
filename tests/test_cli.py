import subprocess
import sys

from omnissl.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "omnissl", *args], capture_output=True, text=True, timeout=600)


def test_plugins_lists_versions_and_components(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "omnissl 0.1.0  (builtin)" in out and "image 0.1.0" in out
    assert "maskers" in out and "digits" in out


def test_recipes_ls_show_cp(capsys, tmp_path):
    assert main(["recipes"]) == 0
    assert "image/mae-digits" in capsys.readouterr().out
    assert main(["recipes", "show", "image/mae-digits"]) == 0
    assert capsys.readouterr().out.startswith("# omnissl train image/mae-digits")
    assert main(["recipes", "cp", "image/mae-digits", str(tmp_path / "mine.yaml")]) == 0
    assert (tmp_path / "mine.yaml").read_text().startswith("# omnissl train image/mae-digits")
    assert main(["recipes", "cp", "image/mae-digits", str(tmp_path / "mine.yaml")]) == 2  # no overwrite


def test_user_mistakes_exit_non_zero_without_traceback(tmp_path, capsys):
    # One mistake through a real process: its exit code, and one message with no traceback.
    result = run_cli("train", "image/mae-digits", "train.stpes=1", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "unknown key train.stpes. Did you mean 'steps'?" in result.stderr
    assert not (tmp_path / "run").exists()
    # The others through the same entry point in this process (``python -m omnissl`` exits with main's code).
    for args, message in (
            (["train", "image/mae-digits", "--out", str(tmp_path / "run"), "train.stpes=1"],
             "Did you mean 'steps'?"),  # overrides after --out too
            (["train", "no/such-recipe"], "no recipe named 'no/such-recipe'"),
            (["probe", str(tmp_path)], "not a run folder")):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert message in err and err.startswith("omnissl: error: ") and "Traceback" not in err, err


def test_help_ends_with_examples():
    result = run_cli("--help")
    assert result.returncode == 0
    assert result.stdout.rstrip().splitlines()[-1].strip().startswith("omnissl finetune")
    assert "omnissl train my.yaml --out runs/in1k --resume" in result.stdout
