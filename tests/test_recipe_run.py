"""The recipe end to end under `horovodrun -np 2`: phases, snapshots, ensemble, and a run
SIGKILLed mid-collapse that resumes LR, weight decay, augmentation and snapshots exactly."""

import csv
import json
import os
import shutil

import numpy as np
import pytest

from conftest import horovodrun, kill_after_checkpoint, run_python
from lbsgd.run import checkpoint as ckpt

# configs/digits_recipe.py shrunk: ResNet-8 on 16x16 digits; the first power-2 decay over
# epochs 3-4 collapses in epoch 4 (snapshot 4), cycles of 1 rewarmup + 2 decay epochs, the
# last collapsing, ending at 7 and 10.
RECIPE = ("-m", "lbsgd.train", "--config", "configs/digits_recipe.py", "--epochs=10",
          "--model.name=resnet8", "--data.image_size=16",
          "--schedule.ensemble.linear_end_epoch=2", "--schedule.ensemble.linear_horizon_epochs=6",
          "--schedule.ensemble.power2_end_epoch=4", "--schedule.ensemble.rewarmup_epochs=1",
          "--schedule.ensemble.decay_epochs=2", "--schedule.ensemble.num_cycles=2")
PHASES = ["warmup", "main", "decay", "collapse", "rewarmup", "decay", "collapse",
          "rewarmup", "decay", "collapse"]


def rows(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


# Run in a fresh interpreter that imports neither lbsgd nor Horovod: top-1 of a .keras file
# on validation shards saved by `val_shards`, batch by batch as the run evaluated them.
LOAD_AND_SCORE = """
import json, sys
import numpy as np, keras
model = keras.saving.load_model(sys.argv[1])
z = np.load(sys.argv[2])
hits = n = 0
for r in range(int(z["shards"])):
    x, y, b = z[f"x{r}"], z[f"y{r}"], int(z["batch"])
    p = np.concatenate([np.asarray(model.predict_on_batch(x[i:i + b]), np.float64)
                        for i in range(0, len(x), b)])
    p_true = p[np.arange(len(y)), y]
    hits += int(((p > p_true[:, None]).sum(axis=1) == 0).sum()); n += len(y)
print(json.dumps({"hits": hits, "n": n, "compiled": model.compiled,
                  "imported": sorted(m for m in sys.modules if m.split(".")[0] in
                                     ("lbsgd", "horovod"))}))
"""


def val_shards(run_dir, path, ranks=2):
    """Each rank's validation batches of the run (its config), saved to `path`."""
    from lbsgd import config as config_lib
    from lbsgd import data
    cfg = config_lib.load_config(os.path.join(run_dir, "config.json"))
    source = data.load_source(cfg.data, cfg.seed)
    arrays = {"shards": ranks, "batch": cfg.batch_size // ranks}
    for r in range(ranks):
        xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in
                       data.val_dataset(source, cfg.batch_size // ranks, r, ranks)])
        arrays[f"x{r}"], arrays[f"y{r}"] = np.concatenate(xs), np.concatenate(ys)
    np.savez(path, **arrays)
    return path


def load_and_score(keras_file, shards):
    proc = run_python("-c", LOAD_AND_SCORE, keras_file, shards, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def tensorboard_scalars(directory):
    """{tag: [steps, in the order written]} of the event files in `directory`."""
    import glob

    import tensorflow as tf
    found = {}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                found.setdefault(v.tag, []).append(int(event.step))
    return found


def snapshot_index(run_dir):
    with open(os.path.join(run_dir, "snapshots", "index.json")) as f:
        return json.load(f)["snapshots"]


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("recipe"))
    proc = horovodrun(2, *RECIPE, f"--run_dir={run_dir}")
    return run_dir, proc.stdout


def test_phases_logged_every_epoch(recipe_run):
    run_dir, _ = recipe_run
    h = rows(run_dir)
    assert [r["phase"] for r in h] == PHASES
    assert [int(r["cycle"]) for r in h] == [-1, -1, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [float(r["weight_decay"]) for r in h] == pytest.approx(
        [1e-4 if p == "collapse" else 5e-5 for p in PHASES], rel=1e-6)  # float32 variable
    assert [int(float(r["augment"])) for r in h] == [int(p != "collapse") for p in PHASES]
    lrs = [float(r["learning_rate"]) for r in h]   # LR after each epoch
    assert lrs[4] == pytest.approx(3 * lrs[3], rel=1e-4)     # x3 re-warmup
    assert lrs[6] == pytest.approx(lrs[4] / 4, rel=1e-4)     # collapse divides the top by 4


def test_three_snapshots_and_ensemble_reported(recipe_run):
    run_dir, stdout = recipe_run
    index = snapshot_index(run_dir)
    assert [s["epoch"] for s in index] == [4, 7, 10]
    assert sorted(os.listdir(os.path.join(run_dir, "snapshots"))) == [
        "epoch_0004.npz", "epoch_0007.npz", "epoch_0010.npz", "index.json"]
    h = rows(run_dir)
    result = json.load(open(os.path.join(run_dir, "ensemble.json")))
    for snap, row in zip(result["snapshots"], index):
        # the evaluator reproduces the val accuracy logged when the snapshot was taken
        assert snap["top1"] == pytest.approx(row["val_accuracy"], abs=1e-6)
        assert snap["top1"] == pytest.approx(float(h[row["epoch"] - 1]["val_accuracy"]),
                                             abs=1e-6)
        assert snap["examples"] == 359
    assert 0.0 < result["ensemble"]["top1"] <= 1.0
    assert len(result["ensemble"]["members"]) == 3
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["snapshots"] == [4, 7, 10]
    assert summary["ensemble"]["top1"] == pytest.approx(result["ensemble"]["top1"])
    assert "Collapsed ensemble" in stdout


def test_model_keras_loads_without_lbsgd_and_scores_the_final_val_accuracy(recipe_run,
                                                                          tmp_path):
    run_dir, _ = recipe_run
    got = load_and_score(os.path.join(run_dir, "model.keras"),
                         val_shards(run_dir, str(tmp_path / "val.npz")))
    assert got["imported"] == [] and got["compiled"] is False    # the optimizer is left out
    assert got["n"] == 359
    assert got["hits"] / got["n"] == pytest.approx(float(rows(run_dir)[-1]["val_accuracy"]),
                                                   abs=1e-6)


def test_ensemble_keras_scores_what_ensemble_json_reports(recipe_run, tmp_path):
    run_dir, _ = recipe_run
    got = load_and_score(os.path.join(run_dir, "ensemble.keras"),
                         val_shards(run_dir, str(tmp_path / "val.npz")))
    result = json.load(open(os.path.join(run_dir, "ensemble.json")))
    assert got["imported"] == [] and got["n"] == result["ensemble"]["examples"] == 359
    assert got["hits"] / got["n"] == pytest.approx(result["ensemble"]["top1"], abs=1e-9)
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert set(summary["export_seconds"]) == {"model", "ensemble"}


def test_tensorboard_holds_each_epoch_once_and_the_lr_of_every_step(recipe_run):
    run_dir, _ = recipe_run
    train = tensorboard_scalars(os.path.join(run_dir, "tensorboard", "train"))
    val = tensorboard_scalars(os.path.join(run_dir, "tensorboard", "validation"))
    for tag in ("epoch_loss", "epoch_accuracy", "epoch_learning_rate", "epoch_weight_decay",
                "epoch_batch_size", "epoch_images_per_second", "epoch_cycle", "phase"):
        assert train[tag] == list(range(10)), tag
    assert val["epoch_accuracy"] == val["epoch_loss"] == list(range(10))
    h = rows(run_dir)
    steps = int(h[0]["steps"])
    assert train["step_learning_rate"] == list(range(10 * steps))


def test_ensemble_cli_selects_snapshots(recipe_run, tmp_path):
    run_dir, _ = recipe_run
    out = str(tmp_path / "two.json")
    proc = horovodrun(2, "-m", "lbsgd.ensemble", f"--run_dir={run_dir}", "--snapshots=7,10",
                      f"--output={out}")
    result = json.load(open(out))
    assert [r["epoch"] for r in result["snapshots"]] == [7, 10]
    full = json.load(open(os.path.join(run_dir, "ensemble.json")))
    assert result["snapshots"][0]["top1"] == pytest.approx(full["snapshots"][1]["top1"])
    assert "ensemble" in proc.stdout
    bad = horovodrun(1, "-m", "lbsgd.ensemble", f"--run_dir={run_dir}", "--snapshots=5",
                     check=False)
    assert bad.returncode == 2 and "snapshots='5'" in bad.stderr


def test_ensemble_cli_writes_only_when_asked(recipe_run, tmp_path):
    run_dir = str(tmp_path / "copy")
    shutil.copytree(recipe_run[0], run_dir)
    own = os.path.join(run_dir, "ensemble.json")
    before, mtime = open(own).read(), os.stat(own).st_mtime_ns

    def ensemble_cli(*args):
        proc = run_python("-m", "lbsgd.ensemble", f"--run_dir={run_dir}", "--snapshots=7,10",
                          *args, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    out = ensemble_cli()
    assert "epoch_0010.npz" in out and "not saved" in out
    assert open(own).read() == before and os.stat(own).st_mtime_ns == mtime
    out = ensemble_cli("--overwrite")
    assert f"wrote {own}" in out
    assert [r["epoch"] for r in json.load(open(own))["snapshots"]] == [7, 10]


def test_killed_mid_collapse_resumes_exactly(recipe_run, tmp_path):
    run_dir, _ = recipe_run
    killed = str(tmp_path / "killed")
    done = kill_after_checkpoint((*RECIPE, f"--run_dir={killed}"), killed, 6)
    assert 6 <= done < 10, f"killed after {done} epochs"     # inside cycle 1's collapse or later
    # the logs of the last epochs lost with the job (as when it dies between the checkpoint
    # and the logs' flush): the resume writes them from the history
    board = os.path.join(killed, "tensorboard")
    for sub in ("train", "validation"):
        files = sorted(os.listdir(os.path.join(board, sub)))
        os.unlink(os.path.join(board, sub, files[-1]))
    horovodrun(2, "-m", "lbsgd.train", f"--run_dir={killed}", "--resume")
    train = tensorboard_scalars(os.path.join(board, "train"))
    assert sorted(train["epoch_loss"]) == sorted(train["phase"]) == list(range(10))
    assert sorted(tensorboard_scalars(os.path.join(board, "validation"))["epoch_accuracy"]) == (
        list(range(10)))
    steps = int(rows(killed)[0]["steps"])
    assert sorted(train["step_learning_rate"]) == list(range(10 * steps))
    a, b = rows(run_dir), rows(killed)
    assert [r["epoch"] for r in b] == [str(e) for e in range(1, 11)]
    for ra, rb in zip(a, b):
        assert (rb["phase"], rb["cycle"], rb["augment"]) == (ra["phase"], ra["cycle"],
                                                             ra["augment"])
        for column in ("learning_rate", "weight_decay", "loss", "val_accuracy"):
            assert float(rb[column]) == pytest.approx(float(ra[column]), rel=1e-4, abs=1e-6)
    ia, ib = snapshot_index(run_dir), snapshot_index(killed)
    assert [s["epoch"] for s in ib] == [4, 7, 10]
    for sa, sb in zip(ia, ib):
        assert sb["learning_rate"] == pytest.approx(sa["learning_rate"], rel=1e-5)
        assert sb["val_accuracy"] == pytest.approx(sa["val_accuracy"], abs=1e-6)
    with np.load(os.path.join(run_dir, ckpt.CHECKPOINT_NAME)) as za, \
            np.load(os.path.join(killed, ckpt.CHECKPOINT_NAME)) as zb:
        for key in za.files:
            if key != "state":
                np.testing.assert_allclose(zb[key], za[key], rtol=1e-5, atol=1e-6, err_msg=key)
