"""The reproduction suite's rows: every row of both suites builds a valid config (no training),
at the papers' regime, so a renamed field can never break the benchmark again."""

import os

import pytest

from benchmarks import reproduce as R
from lbsgd import paper
from lbsgd.recipe import phases as recipe
from lbsgd.config import TrainConfig
from lbsgd.data import steps_per_epoch


@pytest.mark.parametrize("hold", [None, *R.LADDER])
def test_every_row_of_both_suites_builds_and_validates(hold):
    rows = R.rows(hold)
    keys = [r.key for r in rows]
    assert len(keys) == len(set(keys))
    for row in rows:
        assert row.study in R.PARTS and set(row.suites) <= {"quick", "full"}
        if row.precise_of:
            assert row.make is None and row.precise_of in keys
            continue
        for seed in R.SEEDS:
            cfg = row.make(seed)
            assert isinstance(cfg, TrainConfig) and cfg.seed == seed
            cfg.validate_for(2)
            assert TrainConfig.from_dict(cfg.to_dict()) == cfg      # what the worker rebuilds
            assert cfg.name == row.key                               # one run directory per row
            assert cfg.data.name == "fashion_mnist" and cfg.data.train_subset == 0
            assert cfg.epochs == paper.FASHION_EPOCHS
            recipe.build_plan(cfg)


def test_part_b_rows_appear_only_with_the_holding_batch():
    assert not [r for r in R.rows() if r.study == "b"]
    b = {r.key for r in R.rows(4096) if r.study == "b"}
    assert b == {"a_nocollapse_b4096", "b_wd1e-4_b4096", "b_steps_b4096"}
    # at 2048 the no-collapse row is part a's own (one run directory)
    assert {r.key for r in R.rows(2048) if r.study == "b"} == {"b_wd1e-4_b2048", "b_steps_b2048"}


def test_the_ladder_at_the_papers_regime():
    by_key = {r.key: r for r in R.rows()}
    assert [by_key[f"a_recipe_b{b}"].batch for b in R.LADDER] == [128, 512, 2048, 4096, 8192]
    # updates per run: full batches of the 60,000 images, E epochs
    assert [steps_per_epoch(60_000, b) * 16 for b in R.LADDER] == [7488, 1872, 464, 224, 112]
    ref = by_key["a_recipe_b128"].make(0)
    assert ref.optimizer.base_lr == 0.1 and ref.optimizer.reference_batch == 128
    big = by_key["a_recipe_b8192"].make(0)
    assert big.optimizer.reference_batch == 128                          # linear scaling: 6.4
    assert big.schedule.warmup_epochs == 2 and big.schedule.collapse_epochs_for(16) == 1
    naive = by_key["a_naive_b8192"].make(0)
    assert naive.optimizer.reference_batch == 8192 and naive.schedule.warmup_epochs == 0
    assert by_key["a_nocollapse_b2048"].make(0).schedule.collapse_epochs == 0
    assert by_key["a_precise_b8192"].precise_of == "a_recipe_b8192"
    quick = {r.key for r in R.rows() if "quick" in r.suites}
    assert quick == {"a_recipe_b128", "a_precise_b128", "a_recipe_b2048", "a_precise_b2048",
                     "a_recipe_b8192", "a_precise_b8192", "d_adaptive"}


def test_table_xi_row_at_the_papers_proportions():
    cfg = {r.key: r for r in R.rows()}["c_ensemble_b512"].make(0)
    plan = recipe.build_plan(cfg)
    # 16 epochs: 2-epoch cycles (15/120 of the run), the first collapse at 6 (~45/120), then 5
    # cycles: 6 collapses of 1 epoch each, the ensemble of the last 5 snapshots
    assert [p.epoch + 1 for p in plan if p.snapshot] == [6, 8, 10, 12, 14, 16]
    assert [p.epoch + 1 for p in plan if p.phase == "collapse"] == [6, 8, 10, 12, 14, 16]
    assert cfg.schedule.ensemble.num_snapshots == 5 and cfg.model.precise_bn_batches == 16


def test_lee_methods_follow_the_cifar_run_scaled_to_e():
    assert paper.lee_max_batch(60_000) == 2048 and paper.lee_max_batch(50_000) == 2048
    assert paper.lee_max_batch(1437) == 64          # digits: 5% is 71.85
    with pytest.raises(ValueError, match="num_train=10"):
        paper.lee_max_batch(10)
    m = {k: paper.lee_method("fashion_mnist", k, seed=1) for k in paper.LEE_METHODS}
    assert m["best_small"].batch_size == 128 and m["linear_scaling"].batch_size == 2048
    assert m["adaptive"].batch_size == 256 and m["adaptive"].adaptive.max_batch == 2048
    # CIFAR's decays at 80 and 120 of 140 epochs -> 9 and 14 of 16, for every method
    assert m["best_small"].schedule.step_epochs == (9, 14)
    assert m["adaptive"].adaptive.lr_decay_epochs == (9, 14)
    assert m["adaptive_fixed_lr"].adaptive.lr_decay_epochs == (9, 14)
    assert m["adaptive"].adaptive.lr_scaling == "linear"
    assert m["adaptive_fixed_lr"].adaptive.lr_scaling == "none"
    assert m["linear_scaling"].schedule.warmup_epochs == pytest.approx(5 * 16 / 140)


def test_hold_batch_stops_at_the_first_batch_that_falls_short():
    def st(mean):
        return {"top1": {"mean": mean, "std": 0, "min": mean, "max": mean, "n": 3,
                         "values": [mean] * 3}}
    table = {f"a_recipe_b{b}": st(v) for b, v in
             zip(R.LADDER, (0.915, 0.912, 0.9, 0.91, 0.85))}
    assert R.hold_batch(table) == 512          # 2048 is 1.5 points short; 4096 does not count
    del table["a_recipe_b8192"]
    assert R.hold_batch(table) is None         # part a unfinished


def test_plan_lists_the_runs_without_training(tmp_path, capsys):
    runs, out_dir = str(tmp_path / "runs"), str(tmp_path / "results")   # no results file
    assert R.main(["--suite", "quick", "--plan", "--runs", runs, "--out", out_dir]) == 0
    out = capsys.readouterr().out
    assert "4 trainings and 3 evaluations to do" in out
    assert "a_recipe_b8192 seed 0" in out and "d_adaptive seed 0" in out
    assert not os.path.exists(runs) and not os.path.exists(out_dir)
    for part, counts in (("a", "24 trainings and 15 evaluations"), ("c", "3 trainings and 0"),
                         ("d", "12 trainings and 0"), ("e", "4 rows x 3 seeds, 12 trainings")):
        assert R.main(["--suite", "full", "--part", part, "--plan", "--runs", runs,
                       "--out", out_dir]) == 0
        assert counts in capsys.readouterr().out
    with pytest.raises(SystemExit, match="run --part a first"):
        R.main(["--suite", "full", "--part", "b", "--plan", "--runs", runs, "--out", out_dir])
    assert R.main(["--suite", "full", "--part", "d", "--seeds", "0,2", "--plan",
                   "--runs", runs, "--out", out_dir]) == 0
    out = capsys.readouterr().out
    assert "4 rows x 2 seeds, 8 trainings" in out
    assert "d_adaptive seed 2" in out and "seed 1" not in out


def test_adaptive_optimizer_rows_change_only_the_optimizer():
    by_key = {r.key: r for r in R.rows()}
    assert {k for k, r in by_key.items() if r.study == "e"} == {
        "e_lars_b4096", "e_lamb_b4096", "e_lars_b8192", "e_lamb_b8192"}
    for b in R.ADAPTIVE_OPTIMIZER_BATCHES:
        recipe_cfg = by_key[f"a_recipe_b{b}"].make(1)
        lars, lamb = by_key[f"e_lars_b{b}"].make(1), by_key[f"e_lamb_b{b}"].make(1)
        assert lars.schedule == lamb.schedule == recipe_cfg.schedule
        assert lars.data == lamb.data == recipe_cfg.data and lars.model == recipe_cfg.model
        # LARS: You et al.'s eta and the recipe's linearly scaled LR (6.4 at 8192)
        assert (lars.optimizer.name, lars.optimizer.trust_coefficient) == ("lars", 0.001)
        assert (lars.optimizer.base_lr, lars.optimizer.reference_batch) == (0.1, 128)
        assert lars.optimizer.momentum_correction and lars.optimizer.weight_decay == 5e-5
        # LAMB: Adam's 1e-3 at 128, square-root scaled: 0.008 at 8192, no momentum correction
        assert lamb.optimizer.name == "lamb" and not lamb.optimizer.momentum_correction
        assert lamb.optimizer.reference_batch == b
        assert lamb.optimizer.base_lr == pytest.approx({4096: 0.0056569, 8192: 0.008}[b],
                                                       rel=1e-4)


def test_rows_without_runs_are_carried_over_from_the_results_file(tmp_path, capsys):
    """A row with no run directory keeps its figures from the results file (marked); part b's
    holding batch then comes from those figures too."""
    import json

    def st(mean):
        return {"mean": mean, "std": 0.0, "min": mean, "max": mean, "n": 3, "values": [mean] * 3}
    old = {f"a_recipe_b{b}": {"study": "a", "label": f"{b}", "paper": "", "method": "recipe",
                              "batch": b, "seeds": [0, 1, 2], "per_seed": [{}] * 3,
                              "top1": st(v), "diverged_seeds": 0}
           for b, v in zip(R.LADDER, (0.915, 0.912, 0.906, 0.85, 0.6))}
    path = tmp_path / "results" / (R.NAME + ".json")
    path.parent.mkdir()
    path.write_text(json.dumps({"meta": {}, "rows": old}))
    report = R.rows()
    table = R.carry_over({}, report, str(path))
    assert list(table) == [r.key for r in report if r.key in old]
    assert all(r["carried"] for r in table.values())
    assert table["a_recipe_b2048"]["top1"]["mean"] == 0.906
    fresh = {"a_recipe_b128": {**old["a_recipe_b128"], "top1": st(0.92)}}
    assert R.carry_over(fresh, report, str(path))["a_recipe_b128"]["top1"]["mean"] == 0.92
    md = R.markdown(table, [], {"command": "x", "np": 2, "seeds": [0, 1, 2],
                                "finished": "now", "epochs": 16})
    assert R.CARRIED_NOTE in md and "| recipe † |" in md
    assert R.carry_over({}, report, str(tmp_path / "absent.json")) == {}
    assert R.main(["--suite", "full", "--part", "b", "--plan", "--runs", str(tmp_path / "runs"),
                   "--out", str(path.parent)]) == 0
    assert "2 rows x 3 seeds, 6 trainings" in capsys.readouterr().out     # holds at 2048


@pytest.mark.parametrize("seeds", ["7", "0,x", ""])
def test_seeds_outside_the_suite_are_refused_naming_the_flag(tmp_path, capsys, seeds):
    with pytest.raises(SystemExit):
        R.main(["--suite", "full", "--seeds", seeds, "--plan", "--runs", str(tmp_path)])
    assert f"--seeds={seeds!r}: the full suite's seeds are 0,1,2" in capsys.readouterr().err


def test_precise_bn_evaluation_job_on_a_finished_run(short_run, tmp_path):
    """The worker's evaluation rows: a finished run's final weights, top-1 with its moving
    averages (the run's own final val_accuracy) and after precise BN, on 2 ranks."""
    import json

    from conftest import horovodrun

    run_dir, _ = short_run
    out = tmp_path / "eval.json"
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"row": "a_precise_b64", "seed": 0, "precise_of": str(run_dir),
                                 "batches": 16, "output": str(out)}]))
    proc = horovodrun(2, "-m", "benchmarks.reproduce", "--worker", str(jobs))
    result = json.loads(out.read_text())
    summary = json.load(open(run_dir / "summary.json"))
    assert result["top1_moving_average_bn"] == pytest.approx(
        summary["final"]["val_accuracy"], abs=1e-6)
    steps = summary["optimizer_steps"] // summary["epochs"]
    assert result["batches"] == min(16, steps)       # capped at one epoch of the shard
    assert 0.0 < result["top1"] <= 1.0 and result["top1"] != result["top1_moving_average_bn"]
    assert "precise BN top-1" in proc.stdout


def test_seeds_a_row_lacks_are_carried_over_seed_by_seed(tmp_path):
    """Seed 2 run here, seeds 0 and 1 in the results file: the row has all three, in seed
    order, its stats over the three, and the carried seeds named (and marked in the table)."""
    import json
    old_row = {"study": "e", "label": "4096: LARS", "paper": "", "method": "LARS", "batch": 4096,
               "seeds": [0, 1], "per_seed": [{"top1": 0.87}, {"top1": 0.86}],
               "top1": {"mean": 0.865}, "diverged_seeds": 0}
    path = tmp_path / (R.NAME + ".json")
    path.write_text(json.dumps({"meta": {}, "rows": {"e_lars_b4096": old_row}}))
    report = [r for r in R.rows() if r.key == "e_lars_b4096"]
    head = {k: old_row[k] for k in ("study", "label", "paper", "method", "batch")}
    new = {"e_lars_b4096": R._with_stats(head, [{"seed": 2, "top1": 0.85, "diverged": False}])}
    row = R.carry_over(new, report, str(path))["e_lars_b4096"]
    assert row["seeds"] == [0, 1, 2] and row["carried_seeds"] == [0, 1]
    assert [m["top1"] for m in row["per_seed"]] == [0.87, 0.86, 0.85]
    assert row["top1"]["n"] == 3 and row["top1"]["mean"] == pytest.approx(0.86)
    assert row["top1"]["std"] == pytest.approx(0.01) and "carried" not in row
    assert R._mark(row) == " (seeds 0, 1 †)"
    # a seed run here replaces the same seed in the file
    again = {"e_lars_b4096": R._with_stats(head, [{"seed": 1, "top1": 0.5, "diverged": False}])}
    row = R.carry_over(again, report, str(path))["e_lars_b4096"]
    assert [m["top1"] for m in row["per_seed"]] == [0.87, 0.5] and row["carried_seeds"] == [0]


def test_rows_flag_selects_rows_and_refuses_unknown_keys(tmp_path, capsys):
    runs = str(tmp_path / "runs")
    assert R.main(["--suite", "full", "--part", "e", "--rows", "e_lars_b4096,e_lars_b8192",
                   "--seeds", "2", "--plan", "--runs", runs, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 rows x 1 seeds, 2 trainings" in out
    assert "e_lars_b4096 seed 2" in out and "e_lamb" not in out
    with pytest.raises(SystemExit):
        R.main(["--suite", "full", "--part", "e", "--rows", "e_lars_b999", "--plan",
                "--runs", runs, "--out", str(tmp_path)])
    assert "--rows='e_lars_b999': not a row of this selection: e_lars_b999" in \
        capsys.readouterr().err
