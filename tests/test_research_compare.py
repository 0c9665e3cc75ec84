"""omnissl compare: points gathered from run folders, Spearman's rho overall and per run."""

import json
import math

import pytest

from omnissl.cli import main
from omnissl.errors import OmnisslError
from omnissl.research.compare import compare_runs, spearman


def fake_run(folder, points, final=None, metric="accuracy"):
    """A run folder with val losses in metrics.jsonl, per-checkpoint probes and a probe.json."""
    folder.mkdir()
    (folder / "recipe.yaml").write_text("{}\n")
    steps = [s for s, _, _ in points] + ([final[0]] if final else [])
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "loss": 1.0, **({"val_loss": l} if l is not None else {})}) + "\n"
        for s, l in [(s, l) for s, l, _ in points] + ([final[:2]] if final else [])))
    (folder / "probes.jsonl").write_text("".join(
        json.dumps({"step": s, "val_loss": None, "linear": a, "knn": a / 2, "metric": metric}) + "\n"
        for s, _, a in points))
    if final:
        (folder / "probe.json").write_text(json.dumps({"pretrained": {"linear": final[2], "knn": 0.1},
                                                       "metric": metric}))
    return steps


def test_spearman_on_a_constructed_example():
    # ranks of the scores against the losses: d = [0, 0, 0, 1, 1] -> rho = 1 - 6 * 2 / (5 * 24) = 0.9
    result = spearman([1, 2, 3, 4, 5], [5, 4, 3, 1, 2])
    assert result.rho == pytest.approx(-0.9) and result.points == 5 and result.note is None
    assert spearman([1, 2], [2, 1]).rho is None and "too few points (2" in spearman([1, 2], [2, 1]).note
    assert "validation loss is the same" in spearman([1, 1, 1], [1, 2, 3]).note
    assert "probe score is the same" in spearman([1, 2, 3], [0.5, 0.5, 0.5]).note


def test_compare_runs_overall_and_per_run(tmp_path):
    # run a: loss falls and the probe rises (rho -1); run b: loss falls, probe falls (rho +1)
    fake_run(tmp_path / "a", [(10, 3.0, 0.1), (20, 2.0, 0.2), (30, 1.0, 0.3)], final=(40, 0.5, 0.4))
    fake_run(tmp_path / "b", [(10, 2.5, 0.9), (20, 1.5, 0.8), (30, None, 0.7)])
    result = compare_runs([tmp_path / "a", tmp_path / "b"])
    assert [(p.run, p.step, p.kind) for p in result.points] == [
        ("a", 10, "checkpoint"), ("a", 20, "checkpoint"), ("a", 30, "checkpoint"), ("a", 40, "final"),
        ("b", 10, "checkpoint"), ("b", 20, "checkpoint"), ("b", 30, "checkpoint")]
    assert result.per_run["a"].rho == pytest.approx(-1.0) and result.per_run["a"].points == 4
    assert result.per_run["b"].rho is None and "too few points (2" in result.per_run["b"].note  # step 30: no loss
    # overall: losses 3, 2, 1, 0.5, 2.5, 1.5 with scores .1 .2 .3 .4 .9 .8, by hand:
    loss_rank = [6, 4, 2, 1, 5, 3]
    score_rank = [1, 2, 3, 4, 6, 5]
    d2 = sum((a - b) ** 2 for a, b in zip(loss_rank, score_rank))
    assert result.overall.rho == pytest.approx(1 - 6 * d2 / (6 * 35)) and result.overall.points == 6
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp")]) == 0
    for name in ("compare.md", "compare.csv", "compare.json", "val_loss_vs_probe.png"):
        assert (tmp_path / "cmp" / name).is_file(), name
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| a | 4 | -1.000 |" in table and "1 point(s) have no validation loss" in table
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert math.isclose(saved["overall"]["rho"], result.overall.rho)
    assert (tmp_path / "cmp" / "compare.csv").read_text().splitlines()[1] == "a,10,checkpoint,3.0,0.1,0.05,accuracy"


def test_compare_refuses_mixed_metrics_and_unprobed_runs(tmp_path):
    fake_run(tmp_path / "a", [(10, 3.0, 0.1)])
    fake_run(tmp_path / "r", [(10, 3.0, 0.1)], metric="r2")
    with pytest.raises(OmnisslError, match="different metrics"):
        compare_runs([tmp_path / "a", tmp_path / "r"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "recipe.yaml").write_text("{}\n")
    with pytest.raises(OmnisslError, match="has no probe results: run `omnissl probe"):
        compare_runs([tmp_path / "empty"])
    with pytest.raises(OmnisslError, match="not a run folder"):
        compare_runs([tmp_path / "nothing"])


def test_finals_correlate_each_runs_last_point(tmp_path):
    # three runs, each with kept checkpoints and a last point; finals = one point per run
    fake_run(tmp_path / "s", [(10, 3.0, 0.2), (20, 2.0, 0.5)])           # last: step 20, loss 2.0, 0.5
    fake_run(tmp_path / "m", [(10, 2.9, 0.3)], final=(30, 1.5, 0.4))     # last: the final encoder
    fake_run(tmp_path / "l", [(10, 2.8, 0.1), (20, 1.0, 0.6)])           # last: step 20, loss 1.0, 0.6
    result = compare_runs([tmp_path / d for d in ("s", "m", "l")])
    # losses 2.0, 1.5, 1.0 rank 3, 2, 1; scores 0.5, 0.4, 0.6 rank 2, 1, 3: d^2 = 1 + 1 + 4 -> rho = 1 - 36/24
    assert result.finals.points == 3 and result.finals.rho == pytest.approx(1 - 6 * 6 / (3 * 8))
    assert main(["compare", *(str(tmp_path / d) for d in ("s", "m", "l")), "--out", str(tmp_path / "cmp")]) == 0
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert saved["finals"]["points"] == 3 and math.isclose(saved["finals"]["rho"], -0.5)
    assert "| final encoders (each run's last point) | 3 | -0.500 |" in (tmp_path / "cmp" / "compare.md").read_text()


def test_one_run_probed_in_two_metrics_is_refused_and_rmse_compares_r2(tmp_path):
    fake_run(tmp_path / "a", [(10, 3.0, 0.1), (20, 2.0, 0.2)])
    with open(tmp_path / "a" / "probes.jsonl", "a") as handle:  # step 20 probed again in another metric
        handle.write(json.dumps({"step": 20, "linear": 0.3, "knn": 0.1, "metric": "balanced_accuracy"}) + "\n")
    with pytest.raises(OmnisslError, match=r"a's probes use different metrics: accuracy \(probes.jsonl step 10\), "
                                           r"balanced_accuracy \(probes.jsonl step 20\)"):
        compare_runs([tmp_path / "a"])
    # probe.metric=rmse keeps R^2 in linear/knn (the RMSE is in *_rmse): it compares with an r2 run, as r2
    fake_run(tmp_path / "r", [(10, 3.0, 0.1), (20, 2.0, 0.2)], metric="rmse")
    fake_run(tmp_path / "q", [(10, 3.0, 0.15)], final=(20, 1.0, 0.5), metric="r2")
    result = compare_runs([tmp_path / "r", tmp_path / "q"])
    assert result.metric == "r2" and [p.score for p in result.points] == [0.1, 0.2, 0.15, 0.5]
