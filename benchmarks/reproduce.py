"""Both papers' claims at their own regime: the full Fashion-MNIST, 2 ranks, every row over 3 seeds.

Codreanu et al. Tables I-III, VIII, IX, XI (Sections IV-C/D, V-B, VI) and Lee
et al. Sections III-VI (their CIFAR-10 ResNet-20 comparison, Fig. 10), on all
60,000 training images for E = 16 epochs (lbsgd.paper.FASHION_EPOCHS), test
top-1 on the 10,000 test images at the end of each run:

  a. the batch ladder (Tables II-III, IX): batches 128 (the reference) to
     8192 with the recipe (linear scaling + warmup + poly + final collapse),
     the same with precise BN (population statistics re-estimated from
     training batches with the final weights), the naive large batch
     (reference LR, no warmup) and the recipe without its final collapse;
  b. Table VIII (weight decay 5e-5 vs 1e-4 vs 5e-5 + collapse) and Table I
     (poly vs 3-step) at the largest batch where the recipe still holds
     (within 1 point of the reference, from part a);
  c. Table XI at the paper's proportions: the collapsed ensemble (6
     collapses, the last 5 snapshots averaged, precise BN per snapshot)
     against its best snapshot and a standard schedule of the same budget;
  d. Lee et al.'s four methods, B_m = 2048 by their rule;
  e. the layer-wise adaptive optimizers on the ladder, at the batches where
     the recipe falls short: LARS (You et al. 2017) with the recipe's LR,
     warmup, poly and collapse, and LAMB (You et al. 2020) at Adam's LR
     square-root scaled, both at their papers' settings (no tuning).

    .venv/bin/python -m benchmarks.reproduce --suite quick            # seed 0 of 4 rows (~20 min)
    .venv/bin/python -m benchmarks.reproduce --suite full --part a    # then b, c, d, e

Every row is a real 2-rank training run through lbsgd's trainer; the runs of
one invocation run one after another inside one `launch/run.sh -np 2` job.
A run whose directory already holds a finished run of the identical config
is reused (`--fresh` reruns), so a part that stopped continues where it
stopped, the parts can run in several sittings, and `full` reuses `quick`'s
runs. `--plan` prints the runs to do without training. Writes
benchmarks/results/reproduce_fashion_mnist.{json,md,png} from every row
finished so far; a row with no finished run under --runs keeps its figures
from the results file already there (marked as carried over).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
NAME = "reproduce_fashion_mnist"
SEEDS = (0, 1, 2)
QUICK_SEEDS = (0,)
PARTS = ("a", "b", "c", "d", "e")
LADDER = (128, 512, 2048, 4096, 8192)   # study a's batches; 128 is the reference
REFERENCE_BATCH = 128
NAIVE_BATCHES = (2048, 8192)
ADAPTIVE_OPTIMIZER_BATCHES = (4096, 8192)   # study e: where the recipe falls short (study a)
LADDER_STUDIES = ("a", "e")             # the studies whose rows are points of the ladder
NO_COLLAPSE_BATCH = 2048
ENSEMBLE_BATCH = 512                    # study c
PRECISE_BN_BATCHES = 16                 # training batches precise BN re-estimates from
HOLD_POINTS = 1.0                       # "holds": mean top-1 within this of the reference
TARGET_TOP1 = 0.90                      # the wall time to this test top-1 is reported
TRAIN_EXAMPLES = 60_000
# The papers' large-batch runs, in optimizer updates (Codreanu et al. Tables II, IX).
PAPER_UPDATES = ((8192, "ImageNet 8K, 90 epochs", 14_000), (32768, "ImageNet 32K, 100 epochs",
                 4_000), (65536, "ImageNet 64K, 107 epochs", 2_100))
PAPER_TRAIN_EXAMPLES = 1_281_167


@dataclasses.dataclass(frozen=True)
class Row:
    """One configuration, trained (or evaluated) once per seed.

    Attributes:
      key: unique id (also the run directory name).
      study: "a" to "e" (also the suite's part that runs it).
      label: the row's name in the tables.
      make: callable(seed) -> TrainConfig; None for an evaluation row.
      suites: suites that run it.
      paper: the paper's figure for the same row ("" if the paper has none).
      method: the ladder's method ("recipe", "recipe + precise BN", "naive",
        "recipe without collapse", "LARS", "LAMB"; "" outside the ladder).
      batch: the global batch (the starting one for an adaptive row).
      precise_of: key of the row whose final weights this row evaluates
        with precise BN (re-estimated BN statistics, same training).
    """

    key: str
    study: str
    label: str
    make: object = None
    suites: tuple = ("full",)
    paper: str = ""
    method: str = ""
    batch: int = 0
    precise_of: str = ""


def rows(hold_batch: int | None = None) -> list[Row]:
    """Every row of both suites; part b's rows need `hold_batch` (from part a's results)."""
    from lbsgd import paper

    fm = paper.fashion_mnist
    both = ("quick", "full")
    out = []
    for b in LADDER:
        quick = both if b in (REFERENCE_BATCH, 2048, 8192) else ("full",)
        ref = b == REFERENCE_BATCH
        out.append(Row(f"a_recipe_b{b}", "a",
                       "reference batch 128 (warmup + poly + collapse)" if ref else
                       f"{b}: linear scaling + warmup + poly + final collapse",
                       lambda s, b=b: fm(f"a_recipe_b{b}", b, collapse_epochs=1, seed=s),
                       quick, "75.3% (ResNet-50 at 256, He et al.)" if ref else
                       {8192: "8K: 76.6% (Table IX, 90 epochs)"}.get(b, ""), "recipe", b))
        out.append(Row(f"a_precise_b{b}", "a", f"{b}: the recipe + precise BN (final weights)",
                       None, quick, "", "recipe + precise BN", b, precise_of=f"a_recipe_b{b}"))
    for b in NAIVE_BATCHES:
        out.append(Row(f"a_naive_b{b}", "a", f"{b}: naive (reference LR 0.1, no warmup)",
                       lambda s, b=b: fm(f"a_naive_b{b}", b, lr_scaling=False, warmup_epochs=0,
                                         seed=s), ("full",), "—", "naive", b))
    out.append(_no_collapse(NO_COLLAPSE_BATCH, "a"))
    if hold_batch is not None:
        h = hold_batch
        if h != NO_COLLAPSE_BATCH:
            out.append(_no_collapse(h, "b"))
        out.append(Row(f"b_wd1e-4_b{h}", "b", f"{h}: weight decay 1e-4, no collapse",
                       lambda s: fm(f"b_wd1e-4_b{h}", h, weight_decay=1e-4, seed=s), ("full",),
                       "4K: 75.8% (Table VIII)", "", h))
        out.append(Row(f"b_steps_b{h}", "b", f"{h}: 3-step decay, no collapse (Table I baseline)",
                       lambda s: fm(f"b_steps_b{h}", h, decay="steps", seed=s), ("full",),
                       "7680: 75.44% vs poly 75.68% (Table I)", "", h))
    c = ENSEMBLE_BATCH
    out.append(Row(f"c_ensemble_b{c}", "c",
                   f"{c}: collapsed ensemble (6 collapses, last 5 snapshots, precise BN)",
                   lambda s: fm(f"c_ensemble_b{c}", c, kind="collapsed_ensemble",
                                precise_bn_batches=PRECISE_BN_BATCHES, seed=s), ("full",),
                   "ensemble 77.5% vs best snapshot 76.83% (Table XI)", "", c))
    for method, label, ref, quick in (
            ("best_small", "best fixed small batch (128)", "91.51 ± 0.3%", ("full",)),
            ("linear_scaling", "fixed large batch 2048, linear scaling + warmup",
             "\"significantly degrade\"", ("full",)),
            ("adaptive_fixed_lr", "adaptive batch 256 → 2048, fixed LR",
             "\"significantly degrade\"", ("full",)),
            ("adaptive", "adaptive batch 256 → 2048 + adaptive LR (proposed)", "90.79 ± 0.2%",
             both)):
        out.append(Row(f"d_{method}", "d", label,
                       lambda s, m=method: _named(paper.lee_method("fashion_mnist", m, seed=s),
                                                  f"d_{m}"), quick, ref))
    for b in ADAPTIVE_OPTIMIZER_BATCHES:
        for opt, label in (("lars", "LARS"), ("lamb", "LAMB")):
            out.append(Row(f"e_{opt}_b{b}", "e", f"{b}: {label} + warmup + poly + final collapse",
                           lambda s, b=b, o=opt: fm(f"e_{o}_b{b}", b, collapse_epochs=1,
                                                    optimizer=o, seed=s),
                           ("full",), "", label, b))
    return out


def _no_collapse(b: int, study: str) -> Row:
    from lbsgd import paper
    return Row(f"a_nocollapse_b{b}", study, f"{b}: linear scaling + warmup + poly, no collapse",
               lambda s: paper.fashion_mnist(f"a_nocollapse_b{b}", b, seed=s), ("full",),
               "8K: 75.81% (Table II)", "recipe without collapse", b)


def _named(cfg, name):
    return dataclasses.replace(cfg, name=name)


def hold_batch(table: dict) -> int | None:
    """The largest ladder batch whose recipe is within HOLD_POINTS of the reference (part a)."""
    ref = (table.get(f"a_recipe_b{REFERENCE_BATCH}") or {}).get("top1")
    if not ref:
        return None
    found = [(table.get(f"a_recipe_b{b}") or {}).get("top1") for b in LADDER]
    if any(st is None or st["n"] < len(SEEDS) for st in found):
        return None                          # part a is not finished
    held = None
    for b, st in zip(LADDER, found):
        if 100 * (ref["mean"] - st["mean"]) > HOLD_POINTS:
            break
        held = b
    return held


# --------------------------------------------------------------------------
# Running rows (the worker runs inside one launch/run.sh -np 2 job).
# --------------------------------------------------------------------------

def _run_dir(runs: str, key: str, seed: int) -> str:
    return os.path.join(runs, key, f"seed{seed}")


def _precise_path(runs: str, key: str, seed: int) -> str:
    return os.path.join(runs, key, f"seed{seed}.json")


def _finished(run_dir: str, cfg) -> bool:
    """A finished run of exactly `cfg` is in `run_dir`."""
    from lbsgd.config import ConfigError, TrainConfig
    try:
        with open(os.path.join(run_dir, "config.json")) as f:   # defaults of newer fields filled in
            same = TrainConfig.from_dict(json.load(f)).to_dict() == cfg.to_dict()
        with open(os.path.join(run_dir, "summary.json")) as f:
            summary = json.load(f)
        done = summary.get("epochs") == cfg.epochs or summary.get("status") == "diverged"
    except (OSError, ValueError, ConfigError):
        return False
    return same and done


def _evaluated(out: str, run_dir: str) -> bool:
    """`out` holds an evaluation of the run now in `run_dir`."""
    try:
        return os.path.getmtime(out) >= os.path.getmtime(os.path.join(run_dir, "summary.json"))
    except OSError:
        return False


def jobs(selected, runs: str, seeds, fresh: bool = False, train: bool = True) -> list[dict]:
    """The runs still to do for `selected` rows, as JSON for the worker.

    The ladder's recipe rows first, seed by seed, then the other rows seed
    by seed (so a part cut short has the ladder on every seed, and every row
    once, as early as it can); an evaluation row's job right after the
    training it evaluates. `train=False`: only the evaluations whose
    training is finished.
    """
    todo = []
    by_key = {r.key: r for r in selected}
    first = [r for r in selected if r.method in ("recipe", "recipe + precise BN")]
    rest = [r for r in selected if r not in first]
    order = [(s, r) for group in (first, rest) for s in seeds for r in group]
    for seed, row in order:
        if row.precise_of:
            if row.precise_of not in by_key:
                raise ValueError(f"row {row.key} evaluates {row.precise_of}, which is not "
                                 f"among the rows selected")
            source = _run_dir(runs, row.precise_of, seed)
            out = _precise_path(runs, row.key, seed)
            pending = any(j["row"] == row.precise_of and j["seed"] == seed for j in todo)
            if (fresh or not _evaluated(out, source) or pending) and (
                    train or _finished(source, by_key[row.precise_of].make(seed))):
                todo.append({"row": row.key, "seed": seed, "precise_of": source,
                             "batches": PRECISE_BN_BATCHES, "output": out})
            continue
        cfg = row.make(seed)
        run_dir = _run_dir(runs, row.key, seed)
        if train and (fresh or not _finished(run_dir, cfg)):
            todo.append({"row": row.key, "seed": seed, "run_dir": run_dir,
                         "config": cfg.to_dict()})
    return todo


def _precise_eval(job: dict, rt) -> dict:
    """Top-1 of a finished run's final weights after precise BN (BN statistics re-estimated)."""
    from lbsgd.run import checkpoint as ckpt
    from lbsgd import data
    from lbsgd.recipe import ensemble
    from lbsgd.model import networks as models
    from lbsgd.model import precise_bn
    from lbsgd.recipe import phases as recipe
    from lbsgd.config import TrainConfig

    run_dir = job["precise_of"]
    with open(os.path.join(run_dir, "config.json")) as f:
        cfg = TrainConfig.from_dict(json.load(f))
    source = data.load_source(cfg.data, cfg.seed)
    model = models.build_model(cfg.model, source.input_shape, source.num_classes)
    ckpt.load_model_variables(os.path.join(run_dir, "checkpoint.npz"), model)
    local = max(1, cfg.batch_size // rt.size)
    val = data.val_dataset(source, local, rt.rank, rt.size)
    before = ensemble.evaluate_model(model, val)["top1"]
    switch = data.AugmentSwitch(cfg.epochs)
    recipe.set_augmentation(switch, recipe.build_plan(cfg))
    batches = precise_bn.training_batches(source, cfg.batch_size, cfg.seed, rt.rank, rt.size,
                                          cfg.epochs - 1, switch)
    used = precise_bn.recompute_bn_statistics(model, batches, job["batches"])
    after = ensemble.evaluate_model(model, val)["top1"]
    return {"top1": after, "top1_moving_average_bn": before, "batches": used,
            "source": run_dir}


def worker(jobs_path: str) -> int:
    """Runs the jobs of `jobs_path` in this process (one rank of the job)."""
    import keras

    from lbsgd.run import checkpoint as ckpt
    from lbsgd import train
    from lbsgd.run import faults
    from lbsgd.parallel import runtime
    from lbsgd.config import TrainConfig

    rt = runtime.init()
    with open(jobs_path) as f:
        todo = json.load(f)
    for i, job in enumerate(todo, 1):
        t0 = time.perf_counter()
        if "precise_of" in job:
            result = _precise_eval(job, rt)
            if rt.is_chief:
                ckpt.atomic_write_json(job["output"], result)
            line = (f"precise BN top-1 {result['top1']:.4f} (moving averages "
                    f"{result['top1_moving_average_bn']:.4f})")
        else:
            cfg = TrainConfig.from_dict(job["config"])
            try:
                summary = train.run(cfg, job["run_dir"], overwrite=True, verbose=0)
                final = summary["final"].get("val_accuracy")
                line = (f"top-1 {final:.4f}, {summary['total_seconds']:.0f} s in epochs"
                        if final is not None and math.isfinite(final) else f"top-1 {final}")
            except faults.TrainingDiverged as err:
                line = f"diverged ({err})"
        t1 = time.perf_counter()
        keras.backend.clear_session()
        if rt.is_chief:
            print(f"reproduce: [{i}/{len(todo)}] {job['row']} seed {job['seed']}: {line} "
                  f"({t1 - t0:.0f} s; cleanup {time.perf_counter() - t1:.1f} s)", flush=True)
    return 0


def _launch(jobs: list[dict], np_: int, runs: str) -> int:
    os.makedirs(runs, exist_ok=True)
    path = os.path.join(runs, "jobs.json")
    with open(path, "w") as f:
        json.dump(jobs, f)
    cmd = [os.path.join(ROOT, "launch", "run.sh"), "-np", str(np_), sys.executable, "-m",
           "benchmarks.reproduce", "--worker", path]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    tail = []
    for line in proc.stdout:
        tail = (tail + [line])[-60:]
        if "reproduce:" in line:
            print(line.split("<stdout>:", 1)[-1].rstrip(), flush=True)
    rc = proc.wait()
    if rc:
        print("".join(tail), file=sys.stderr)
    return rc


# --------------------------------------------------------------------------
# Results.
# --------------------------------------------------------------------------

def _stats(values) -> dict | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    n = len(vals)
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(vals), "max": max(vals), "n": n,
            "values": vals}


def _seed_metrics(row: Row, runs: str, seed: int) -> dict | None:
    """One seed's figures, or None while it is not done."""
    if row.precise_of:
        path = _precise_path(runs, row.key, seed)
        if not _evaluated(path, _run_dir(runs, row.precise_of, seed)):
            return None
        r = json.load(open(path))
        return {"seed": seed, "top1": r["top1"],
                "top1_moving_average_bn": r["top1_moving_average_bn"]}
    run_dir = _run_dir(runs, row.key, seed)
    if not _finished(run_dir, row.make(seed)):
        return None
    with open(os.path.join(run_dir, "summary.json")) as f:
        s = json.load(f)
    loss = s["final"].get("loss")
    reached = (s.get("time_to_accuracy") or {}).get(f"{TARGET_TOP1:g}")
    out = {"seed": seed, "top1": s["final"].get("val_accuracy"), "best_top1": s["best"].get("val_accuracy"),
           "train_top1": s["final"].get("accuracy"),
           "optimizer_steps": s["optimizer_steps"], "train_seconds": s["total_seconds"],
           "images_per_second": s.get("images_per_second"),
           "seconds_to_target": reached["seconds"] if reached else None,
           "epochs_to_target": reached["epoch"] if reached else None,
           "diverged": s.get("status") == "diverged" or loss is None or not math.isfinite(loss)}
    if "ensemble" in s:
        snaps = s["ensemble"]["snapshot_top1"]
        members = s["ensemble"].get("members")
        out.update(ensemble_top1=s["ensemble"]["top1"], snapshot_top1=dict(snaps),
                   best_snapshot_top1=max(snaps.values()),
                   last_snapshot_top1=snaps[max(snaps, key=int)], ensemble_members=members)
    if "adaptive" in s:
        out.update(final_batch=s["adaptive"]["final_batch"], K=s["adaptive"]["K"])
    return out


def collect(selected, runs: str, seeds=SEEDS) -> dict:
    """{row key: the row, its per-seed figures and their stats}, for rows with a finished seed."""
    table = {}
    for row in selected:
        per_seed = [m for m in (_seed_metrics(row, runs, s) for s in seeds) if m is not None]
        if per_seed:
            table[row.key] = _with_stats({"study": row.study, "label": row.label,
                                          "paper": row.paper, "method": row.method,
                                          "batch": row.batch}, per_seed)
    return table


def _with_stats(head: dict, per_seed: list) -> dict:
    """A table row: `head`, its per-seed figures (each naming its seed), in seed order, and
    the stats of every numeric figure over the seeds."""
    per_seed = sorted(per_seed, key=lambda m: m["seed"])
    keys = {k for m in per_seed for k, v in m.items() if isinstance(v, (int, float))
            and not isinstance(v, bool) and k != "seed"}
    return {**head, "seeds": [m["seed"] for m in per_seed], "per_seed": per_seed,
            **{k: _stats([m.get(k) for m in per_seed]) for k in sorted(keys)},
            "diverged_seeds": sum(bool(m.get("diverged")) for m in per_seed)}


def carry_over(table: dict, report, path: str) -> dict:
    """`table` with the figures it lacks taken from the results file at `path`, in report
    order: a row with no run under --runs whole (marked "carried"), and a row with some
    seeds run the seeds it lacks (their numbers in "carried_seeds"), so seeds of one row
    can be trained on different machines."""
    try:
        with open(path) as f:
            old = json.load(f)["rows"]
    except (OSError, ValueError, KeyError):
        return table
    out = {}
    for row in report:
        if row.key not in old:
            if row.key in table:
                out[row.key] = table[row.key]
            continue
        was = old[row.key]
        kept = [{**m, "seed": m.get("seed", s)} for s, m in zip(was["seeds"], was["per_seed"])]
        if row.key not in table:
            out[row.key] = {**was, "per_seed": kept, "carried": True}
            continue
        new = table[row.key]
        extra = [m for m in kept if m["seed"] not in new["seeds"]]
        out[row.key] = new
        if extra:
            head = {k: new[k] for k in ("study", "label", "paper", "method", "batch")}
            out[row.key] = {**_with_stats(head, new["per_seed"] + extra),
                            "carried_seeds": sorted(m["seed"] for m in extra)}
    return out


def compare(a: dict | None, b: dict | None) -> tuple[float, str]:
    """(mean difference a - b, verdict): a difference counts only when the seeds'
    ranges do not overlap (3 vs 3 seeds: a one-sided rank test at p = 0.05)."""
    if not a or not b:
        return float("nan"), "missing"
    diff = a["mean"] - b["mean"]
    if a["n"] < 3 or b["n"] < 3:
        return diff, "too few seeds"
    if a["min"] > b["max"]:
        return diff, "higher"
    if a["max"] < b["min"]:
        return diff, "lower"
    return diff, "inconclusive"


def claims(table: dict) -> tuple:
    """Each claim: (study, text, row A, metric A, row B, metric B, the papers' direction of A - B)."""
    ref = f"a_recipe_b{REFERENCE_BATCH}"
    out = []
    for b in LADDER[1:]:
        out.append(("a", f"the recipe holds the reference's accuracy at {b}",
                    f"a_recipe_b{b}", "top1", ref, "top1", "within1"))
    for b in LADDER:
        out.append(("a", f"precise BN raises the recipe's top-1 at {b}",
                    f"a_precise_b{b}", "top1", f"a_recipe_b{b}", "top1", "higher"))
    for b in NAIVE_BATCHES:
        out.append(("a", f"the recipe beats the naive large batch at {b}",
                    f"a_recipe_b{b}", "top1", f"a_naive_b{b}", "top1", "higher"))
    b = NO_COLLAPSE_BATCH
    out.append(("a", f"the final collapse adds accuracy at {b}",
                f"a_recipe_b{b}", "top1", f"a_nocollapse_b{b}", "top1", "higher"))
    h = hold_batch(table)
    if h is not None:
        out += [("b", f"Table VIII: weight decay 5e-5 beats 1e-4 at {h} (no collapse)",
                 f"a_nocollapse_b{h}", "top1", f"b_wd1e-4_b{h}", "top1", "higher"),
                ("b", f"Table VIII: 5e-5 then the collapse to 1e-4 beats constant 5e-5 at {h}",
                 f"a_recipe_b{h}", "top1", f"a_nocollapse_b{h}", "top1", "higher"),
                ("b", f"Table I: polynomial decay beats the 3-step decay at {h}",
                 f"a_nocollapse_b{h}", "top1", f"b_steps_b{h}", "top1", "higher")]
    c = ENSEMBLE_BATCH
    out += [("c", "Table XI: the collapsed ensemble beats its best snapshot",
             f"c_ensemble_b{c}", "ensemble_top1", f"c_ensemble_b{c}", "best_snapshot_top1",
             "higher"),
            ("c", "the collapsed ensemble beats a standard schedule of the same budget "
                  "(poly + collapse, precise BN)",
             f"c_ensemble_b{c}", "ensemble_top1", f"a_precise_b{c}", "top1", "higher"),
            ("d", "the proposed method is within 1 point of the best small batch",
             "d_adaptive", "top1", "d_best_small", "top1", "within1"),
            ("d", "the fixed large batch falls short of the best small batch",
             "d_linear_scaling", "top1", "d_best_small", "top1", "lower"),
            ("d", "adaptive batch with a fixed LR falls short of the best small batch",
             "d_adaptive_fixed_lr", "top1", "d_best_small", "top1", "lower"),
            ("d", "the proposed method beats the fixed large batch",
             "d_adaptive", "top1", "d_linear_scaling", "top1", "higher")]
    for b in ADAPTIVE_OPTIMIZER_BATCHES:
        for opt, label in (("lars", "LARS"), ("lamb", "LAMB")):
            out += [("e", f"{label} holds the reference's accuracy at {b}",
                     f"e_{opt}_b{b}", "top1", ref, "top1", "within1"),
                    ("e", f"{label} beats the recipe at {b}",
                     f"e_{opt}_b{b}", "top1", f"a_recipe_b{b}", "top1", "higher")]
    return tuple(out)


def verdicts(table: dict) -> list[dict]:
    out = []
    for study, text, ka, ma, kb, mb, expect in claims(table):
        if ka not in table or kb not in table:
            continue
        a, b = table[ka].get(ma), table[kb].get(mb)
        diff, seen = compare(a, b)
        if seen in ("missing", "too few seeds"):
            verdict = seen
        elif expect == "within1":   # "< 1% lower" (Lee et al.); the ladder's holding rule
            verdict = ("reproduced" if diff >= -HOLD_POINTS / 100 else
                       "not reproduced" if seen == "lower" else "inconclusive")
        else:
            verdict = ("reproduced" if seen == expect else
                       "inconclusive" if seen == "inconclusive" else "not reproduced")
        out.append({"study": study, "claim": text, "a": [ka, ma], "b": [kb, mb],
                    "difference": diff, "ranges": seen, "verdict": verdict})
    return out


def largest_within(table: dict) -> dict:
    """{ladder method: the largest batch whose mean top-1 is within HOLD_POINTS of the reference}."""
    ref = (table.get(f"a_recipe_b{REFERENCE_BATCH}") or {}).get("top1")
    out = {}
    if not ref:
        return out
    for method in LADDER_METHODS:
        held, seen = None, []
        for key, r in table.items():
            if r["study"] in LADDER_STUDIES and r["method"] == method and r.get("top1"):
                seen.append((r["batch"], r["top1"]["mean"]))
        for b, m in sorted(seen):
            if 100 * (ref["mean"] - m) > HOLD_POINTS:
                break
            held = b
        if seen:
            out[method] = {"largest_within": held, "batches": [b for b, _ in sorted(seen)]}
    return out


LADDER_METHODS = ("recipe", "recipe + precise BN", "naive", "recipe without collapse", "LARS",
                  "LAMB")


def _mark(r: dict) -> str:
    if r.get("carried_seeds"):
        return f" (seed{'s' * (len(r['carried_seeds']) > 1)} " \
               f"{', '.join(map(str, r['carried_seeds']))} †)"
    return " †" if r.get("carried") else ""


def _pct(st: dict | None, key: str = "mean") -> str:
    return "—" if not st else f"{100 * st[key]:.2f}"


def _cell(st: dict | None) -> str:
    if not st:
        return "—"
    if st["n"] == 1:
        return f"{100 * st['mean']:.2f} (1 seed)"
    return (f"{100 * st['mean']:.2f} ± {100 * st['std']:.2f} "
            f"[{100 * st['min']:.2f}–{100 * st['max']:.2f}]")


def _num(st: dict | None, fmt: str = "{:.0f}") -> str:
    return "—" if not st else fmt.format(st["mean"])


def _updates(batch: int, epochs: int) -> int:
    return (TRAIN_EXAMPLES // batch) * epochs


STUDY_TITLES = {
    "a": "a. The batch ladder (Codreanu et al. Tables II–III, IX)",
    "b": "b. Weight decay and collapse (Table VIII), poly vs 3-step (Table I)",
    "c": "c. Collapsed ensemble at the paper's proportions (Table XI, Figure 4)",
    "d": "d. Lee et al.'s four methods (Section VI-C: CIFAR-10 ResNet-20, Fig. 10)",
    "e": "e. LARS and LAMB where the recipe falls short (You et al. 2017, 2020)",
}
OPTIMIZER_SETTING = (
    "Rows LARS and LAMB (study e, in the ladder table of a) change only the optimizer of the "
    "recipe row at the same batch: the same epochs, warmup, poly decay, final collapse, "
    "augmentation and L2 5e-5 (doubled in the collapse). **LARS** "
    "(`lbsgd.optim.lars.LARS`): You et al. 2017's trust coefficient η = 0.001, momentum 0.9 "
    "with momentum correction, the recipe's linearly scaled LR (0.1 per 128: 3.2 at 4096, "
    "6.4 at 8192), weight decay inside the trust ratio, biases and BN γ/β excluded from the "
    "trust ratio and the decay. **LAMB** (`keras.optimizers.Lamb`): Adam's default LR 1e-3 at "
    "batch 128, square-root scaled with the batch (the LAMB paper's rule: 0.0057 at 4096, 0.008 "
    "at 8192), its trust ratio on every variable, lbsgd's L2 on the gradient of the rank-2+ "
    "variables. One setting each, taken from the papers; none was tried and discarded.")
CARRIED_NOTE = (
    "Rows marked † have no run directory under this invocation's --runs: their figures are "
    "carried over unchanged from the results file this one replaces (the same configs, "
    "measured when that file was written); a row marked (seeds … †) has those seeds carried "
    "over that way and its other seeds run under --runs.")


def setting_lines(epochs: int) -> list[str]:
    ups = ", ".join(f"{b}: {_updates(b, epochs):,} ({100 * b / TRAIN_EXAMPLES:.2g}% of the data)"
                    for b in LADDER)
    papers = ", ".join(f"{name}: {u:,} updates ({100 * b / PAPER_TRAIN_EXAMPLES:.2g}% of the data)"
                       for b, name, u in PAPER_UPDATES)
    return [
        "**Setting.** All 60,000 Fashion-MNIST training images, test top-1 on the 10,000 test "
        f"images at the end of the run (no epoch or setting is chosen on the test set). E = "
        f"{epochs} epochs for every row. ResNet-8 (3 stages of one basic block, 16/32/64 "
        "filters, stride-2 stem, zero-gamma last BN, BN moving average 0.95), momentum SGD 0.9 "
        "with momentum correction, Caffe-style L2 weight decay 5e-5, scale/aspect augmentation "
        "(random resized crop of ≥ 80% of the image, flips) that a collapse turns off leaving "
        "the pad-and-crop. Reference LR 0.1 per 128 images (He et al.'s CIFAR value), scaled "
        "linearly with the batch; 2 epochs of gradual warmup; linear (poly) decay; a final "
        "collapse of 1 epoch (6% of the run; the paper: 5–7%).", "",
        f"**Updates per run** (batch: optimizer updates in {epochs} epochs, batch as a share "
        f"of the training set): {ups}. The papers' large-batch runs: {papers}. At 8192 this "
        "run makes 1/125 of the paper's 8K updates with a batch that is 21× larger a share of "
        "the data: the ladder's top is harsher than any run of the paper.", "",
        "**Precise BN** (rows \"+ precise BN\"): the final weights of the same run, with the "
        f"BN population statistics re-estimated from {PRECISE_BN_BATCHES} training batches "
        "(augmentation as in the final epoch, the population mean and variance over both "
        "ranks' samples; `lbsgd.model.precise_bn`). Training uses batch statistics, so the weights "
        "are those of the recipe row: the pair differs only in the BN statistics.", "",
        "**Tuning budget.** None for any method: the linear scaling rule and the papers' "
        "schedules are the prescription; no value was tried and discarded.", "",
        "**Reading the tables.** Test top-1 % as mean ± standard deviation [min–max] over "
        "3 seeds (the seed sets initialisation and data order). A difference counts only when "
        "the seeds' ranges do not overlap — for 3 against 3 seeds a one-sided rank test at "
        "p = 0.05; otherwise it is **inconclusive**. \"Holds\": mean top-1 within "
        f"{HOLD_POINTS:g} point of the reference batch's.", ""]


def markdown(table: dict, found: list[dict], meta: dict) -> str:
    epochs = meta.get("epochs")
    lines = ["# Both papers at their own regime: the full Fashion-MNIST, measured here", "",
             f"Command: `{meta['command']}` — {meta['np']} ranks on this 2-core machine; "
             f"seeds {', '.join(map(str, meta['seeds']))}; written {meta['finished']}."
             + (f" {meta['note']}" if meta.get("note") else ""), ""]
    parts = meta.get("parts") or {}
    if parts:
        lines += ["| part | runs done | wall time of its runs (s) | measured |",
                  "| --- | --- | --- | --- |"]
        for part, p in sorted(parts.items()):
            lines.append(f"| {part} | {p['runs']} | {p['seconds']:.0f} | {p.get('when', '')} |")
        lines.append("")
    lines += setting_lines(epochs)
    if any(r.get("carried") or r.get("carried_seeds") for r in table.values()):
        lines += [CARRIED_NOTE, ""]
    lines += ["## Verdicts", "", "| study | claim | difference (points) | verdict |",
              "| --- | --- | --- | --- |"]
    for c in found:
        lines.append(f"| {c['study']} | {c['claim']} | {100 * c['difference']:+.2f} | "
                     f"**{c['verdict']}** |")
    lines.append("")
    held = largest_within(table)
    if held:
        lines += ["Largest batch within 1 point of the reference, per method: " + "; ".join(
            f"{m}: {v['largest_within'] or 'none'} (measured at {', '.join(map(str, v['batches']))})"
            for m, v in held.items()) + ".", ""]
    for study in PARTS:
        keys = [k for k, r in table.items() if r["study"] == study
                or (study == "a" and r["study"] in LADDER_STUDIES)]
        if not keys:
            continue
        lines += [f"## {STUDY_TITLES[study]}", ""]
        if study == "e":
            lines += [OPTIMIZER_SETTING + " Their figures are in the ladder table of a; the "
                      "verdicts above.", ""]
            continue
        if study == "a":
            lines += ["| batch (% of data) | updates (paper) | method | test top-1 % | "
                      "train top-1 % (last epoch) | s to 90% test (epoch) | run s |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for k in sorted(keys, key=lambda k: (table[k]["batch"], table[k]["method"])):
                r = table[k]
                b = r["batch"]
                paper = next((f"{u:,}" for pb, _, u in PAPER_UPDATES if pb == b), "—")
                to90 = r.get("seconds_to_target")
                reached = (f"{to90['mean']:.0f} ({r['epochs_to_target']['mean']:.1f}; "
                           f"{to90['n']}/{len(r['per_seed'])} seeds)" if to90 else
                           "not reached" if r.get("optimizer_steps") else "—")
                lines.append(f"| {b} ({100 * b / TRAIN_EXAMPLES:.2g}%) | "
                             f"{_updates(b, epochs):,} ({paper}) | {r['method']}{_mark(r)} | "
                             f"{_cell(r.get('top1'))} | {_pct(r.get('train_top1'))} | {reached} | "
                             f"{_num(r.get('train_seconds'))} |")
        elif study == "c":
            lines += ["| row | paper | ensemble top-1 % | best snapshot % | last snapshot % | "
                      "optimizer steps | train s |", "| --- | --- | --- | --- | --- | --- | --- |"]
            for k in keys:
                r = table[k]
                lines.append(f"| {r['label']}{_mark(r)} | {r['paper']} | "
                             f"{_cell(r.get('ensemble_top1'))} "
                             f"| {_cell(r.get('best_snapshot_top1'))} | "
                             f"{_cell(r.get('last_snapshot_top1'))} | "
                             f"{_num(r.get('optimizer_steps'))} | {_num(r.get('train_seconds'))} |")
                lines += ["", "Snapshot top-1 % per seed (epoch: top-1; the ensemble averages "
                          "the last 5): " + "; ".join(
                              f"seed {s}: " + ", ".join(
                                  f"{e}: {100 * v:.2f}" for e, v in sorted(
                                      m.get("snapshot_top1", {}).items(), key=lambda kv:
                                      int(kv[0])))
                              for s, m in zip(r["seeds"], r["per_seed"]))]
        elif study == "d":
            lines += ["| method | paper (CIFAR-10) | test top-1 % | final batch | K | "
                      "optimizer steps | train s |", "| --- | --- | --- | --- | --- | --- | --- |"]
            for k in keys:
                r = table[k]
                lines.append(f"| {r['label']}{_mark(r)} | {r['paper']} | {_cell(r.get('top1'))} | "
                             f"{_num(r.get('final_batch'))} | {_num(r.get('K'), '{:.1f}')} | "
                             f"{_num(r.get('optimizer_steps'))} | {_num(r.get('train_seconds'))} |")
        else:
            lines += ["| row | paper | test top-1 % | optimizer steps | train s | diverged seeds |",
                      "| --- | --- | --- | --- | --- | --- |"]
            for k in keys:
                r = table[k]
                lines.append(f"| {r['label']}{_mark(r)} | {r['paper'] or '—'} | {_cell(r.get('top1'))} | "
                             f"{_num(r.get('optimizer_steps'))} | {_num(r.get('train_seconds'))} "
                             f"| {r['diverged_seeds']} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _short(st: dict | None) -> str:
    if not st:
        return "—"
    return (f"{100 * st['mean']:.2f}" if st["n"] == 1 else
            f"{100 * st['mean']:.2f} ± {100 * st['std']:.2f}") + f" ({st['n']})"


def readme_block(table: dict, found: list[dict]) -> str:
    """The ladder (one line per batch, one column per method) and the verdicts, for the README."""
    from lbsgd.paper import FASHION_EPOCHS
    methods = LADDER_METHODS
    cell = {(r["batch"], r["method"]): r for r in table.values()
            if r["study"] in LADDER_STUDIES}
    lines = ["| batch (% of data) | updates | " + " | ".join(methods) +
             " | s to 90%, recipe (epoch) |", "| --- " * (len(methods) + 3) + "|"]
    for b in LADDER:
        recipe = cell.get((b, "recipe")) or {}
        to90, ep = recipe.get("seconds_to_target"), recipe.get("epochs_to_target")
        reached = (f"{to90['mean']:.0f} ({ep['mean']:.1f})" if to90 else
                   "not reached" if recipe else "—")
        lines.append(f"| {b} ({100 * b / TRAIN_EXAMPLES:.2g}%) | {_updates(b, FASHION_EPOCHS):,} | "
                     + " | ".join(_short((cell.get((b, m)) or {}).get("top1")) for m in methods)
                     + f" | {reached} |")
    lines += ["", "| study | claim | ours: A − B (points) | verdict |", "| --- | --- | --- | --- |"]
    for c in found:
        lines.append(f"| {c['study']} | {c['claim']} | {100 * c['difference']:+.2f} | "
                     f"{c['verdict']} |")
    return "\n".join(lines) + "\n"


METHOD_STYLE = {"recipe": ("#4a7ab5", "o"), "recipe + precise BN": ("#2e8b57", "s"),
                "naive": ("#c0392b", "v"), "recipe without collapse": ("#8e44ad", "D"),
                "LARS": ("#d35400", "^"), "LAMB": ("#7f8c8d", "P")}


def plot(table: dict, path: str) -> None:
    """The ladder: test error against batch size per method, each seed and the mean."""
    from lbsgd.report.plots import _plt
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for method, (color, marker) in METHOD_STYLE.items():
        pts = sorted((r["batch"], r["top1"]) for r in table.values()
                     if r["study"] in LADDER_STUDIES and r["method"] == method and r.get("top1"))
        if not pts:
            continue
        xs = [b for b, _ in pts]
        shift = {"recipe + precise BN": 1.06, "naive": 0.94, "LARS": 1.12,
                 "LAMB": 0.88}.get(method, 1.0)
        ax.plot([x * shift for x in xs], [100 * (1 - st["mean"]) for _, st in pts], "-",
                color=color, marker=marker, label=method, lw=1.5, ms=6)
        for b, st in pts:
            ax.plot([b * shift] * len(st["values"]), [100 * (1 - v) for v in st["values"]], ".",
                    color=color, alpha=0.5, ms=5)
            ax.plot([b * shift] * 2, [100 * (1 - st["max"]), 100 * (1 - st["min"])], "-",
                    color=color, alpha=0.5, lw=1)
    ref = (table.get(f"a_recipe_b{REFERENCE_BATCH}") or {}).get("top1")
    if ref:
        ax.axhline(100 * (1 - ref["mean"]) + HOLD_POINTS, color="grey", ls=":", lw=1,
                   label=f"reference + {HOLD_POINTS:g} point")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter, NullFormatter
    ax.set_yticks([t for t in (5, 7, 8, 9, 10, 12, 15, 20, 30, 40, 50, 70, 90)
                   if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]])
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(list(LADDER), [str(b) for b in LADDER])
    ax.set_xlabel("global batch (2 ranks; full 60,000-image training set)")
    ax.set_ylabel("test error % (log scale)")
    ax.set_title("Fashion-MNIST, ResNet-8, the same epochs at every batch: test error vs batch "
                 "size\n(line: mean of the seeds; dots: each seed; bar: min–max)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def selected_rows(suite: str, part: str | None, runs: str, results: str = ""):
    """(rows to run, rows to report, seeds) for a suite and part; part b needs part a's
    results (from `runs`, else carried over from the results file `results`)."""
    seeds = SEEDS if suite == "full" else QUICK_SEEDS
    everything = rows()
    ladder = [r for r in everything if r.study == "a"]
    h = hold_batch(carry_over(collect(ladder, runs, SEEDS), ladder, results))
    if h is not None:
        everything = rows(h)
    if part == "b" and h is None:
        raise SystemExit("reproduce: part b runs at the largest batch where the recipe holds, "
                         "found from part a: run --part a first")
    chosen = [r for r in everything if suite in r.suites and (part is None or r.study == part)]
    needed = {r.precise_of for r in chosen if r.precise_of}
    chosen += [r for r in everything if r.key in needed and r not in chosen]
    return chosen, [r for r in everything if suite in r.suites], seeds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reproduce",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=("quick", "full"), default="quick")
    parser.add_argument("--part", choices=PARTS, default=None,
                        help="run only this study's rows (default: every part)")
    parser.add_argument("--np", type=int, default=2, dest="np_", help="ranks")
    parser.add_argument("--runs", default=os.path.join(ROOT, "runs", "reproduce"),
                        help="parent of the run directories (reused across invocations)")
    parser.add_argument("--out", default=RESULTS, help="where the result files go")
    parser.add_argument("--seeds", default=None,
                        help="train only these of the suite's seeds, comma-separated (e.g. 0: "
                             "one seed of every row first); the results use every seed finished")
    parser.add_argument("--rows", default=None,
                        help="train only these of the part's rows, comma-separated row keys "
                             "(e.g. e_lars_b4096,e_lars_b8192; --plan lists them)")
    parser.add_argument("--fresh", action="store_true", help="rerun rows already finished")
    parser.add_argument("--plan", action="store_true", help="print the runs to do, run nothing")
    parser.add_argument("--evaluations_only", action="store_true",
                        help="only the precise-BN evaluations of finished runs; train nothing")
    parser.add_argument("--note", default="", help="a sentence added to the results' header")
    parser.add_argument("--readme", action="store_true",
                        help="print the README's verdict table from the finished rows, run nothing")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    sys.path.insert(0, ROOT)
    from lbsgd import paper
    base = os.path.join(args.out, NAME if args.suite == "full" else f"{NAME}_quick")
    chosen, report, seeds = selected_rows(args.suite, args.part, args.runs, base + ".json")
    if args.readme:
        table = carry_over(collect(report, args.runs, seeds), report, base + ".json")
        print(readme_block(table, verdicts(table)))
        return 0
    if args.rows is not None:
        wanted = [k for k in args.rows.split(",") if k]
        known = {r.key for r in chosen}
        unknown = [k for k in wanted if k not in known]
        if not wanted or unknown:
            parser.error(f"--rows={args.rows!r}: not a row of this selection: "
                         f"{', '.join(unknown) or '(none given)'}; its rows are "
                         f"{', '.join(sorted(known))}")
        sources = {r.precise_of for r in chosen if r.key in wanted and r.precise_of}
        chosen = [r for r in chosen if r.key in wanted or r.key in sources]
    run_seeds = seeds
    if args.seeds is not None:
        try:
            run_seeds = tuple(int(s) for s in args.seeds.split(","))
        except ValueError:
            run_seeds = ()
        if not run_seeds or not set(run_seeds) <= set(seeds):
            parser.error(f"--seeds={args.seeds!r}: the {args.suite} suite's seeds are "
                         f"{','.join(map(str, seeds))}")
    todo = jobs(chosen, args.runs, run_seeds, args.fresh, train=not args.evaluations_only)
    print(f"reproduce: {args.suite} suite{f', part {args.part}' if args.part else ''}: "
          f"{len(chosen)} rows x {len(run_seeds)} seeds, {sum('config' in j for j in todo)} "
          f"trainings and {sum('precise_of' in j for j in todo)} evaluations to do", flush=True)
    if args.plan:
        for j in todo:
            print(f"  {j['row']} seed {j['seed']}")
        return 0
    t0 = time.time()
    if todo and _launch(todo, args.np_, args.runs):
        print("reproduce: the job failed; rerun the same command to continue", file=sys.stderr)
        return 1
    wall = time.time() - t0
    from lbsgd.run import checkpoint as ckpt
    os.makedirs(args.out, exist_ok=True)
    try:
        parts = json.load(open(base + ".json"))["meta"].get("parts", {})
    except (OSError, ValueError, KeyError):
        parts = {}
    table = collect(report, args.runs, seeds)
    table = carry_over(table, report, base + ".json")
    for part in PARTS:
        done = [m for k, r in table.items() if r["study"] == part for m in r["per_seed"]]
        if done:
            secs = sum(m.get("train_seconds") or 0 for m in done)
            was = parts.get(part, {})
            parts[part] = {"runs": sum("train_seconds" in m for m in done), "seconds": secs,
                           "when": was.get("when") if was.get("seconds") == secs else
                           time.strftime("%Y-%m-%d", time.gmtime())}
    found = verdicts(table)
    meta = {"command": f".venv/bin/python -m benchmarks.reproduce --suite {args.suite} "
                       + (f"--part {'|'.join(PARTS)}" if args.suite == "full" else ""),
            "suite": args.suite, "np": args.np_, "seeds": list(seeds),
            "epochs": paper.FASHION_EPOCHS,
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "this_invocation_seconds": wall, "note": args.note, "parts": parts,
            "hold_batch": hold_batch(table), "largest_within": largest_within(table)}
    ckpt.atomic_write_json(base + ".json", {"meta": meta, "row_order": list(table),
                                            "rows": table, "claims": found})
    ckpt.atomic_write_text(base + ".md", markdown(table, found, meta))
    plot(table, base + ".png")
    print(f"reproduce: wrote {base}.{{json,md,png}} ({wall / 60:.1f} min)")
    for c in found:
        print(f"  [{c['study']}] {c['claim']}: {100 * c['difference']:+.2f} points, "
              f"{c['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
