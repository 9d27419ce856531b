"""configs/: every file loads and validates; the paper's runs carry the paper's numbers."""

import glob
import os

import pytest

from conftest import ROOT
from lbsgd import config as C
from lbsgd.recipe import phases as recipe
from lbsgd.recipe.schedules import linear_scaling

IMAGENET_TRAIN = 1_281_167
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_loads_validates_and_is_named_after_its_file(path):
    cfg = C.load_config(path)
    assert cfg.name == os.path.splitext(os.path.basename(path))[0]
    cfg.validate_for(1)
    assert C.TrainConfig.from_dict(cfg.to_dict()) == cfg


# name, global batch, epochs, paper iterations, peak LR, warmup, main wd, collapse epochs
PAPER = [
    ("imagenet_table1_poly_b7680", 7680, 90, None, 3.0, 5, 1e-4, 0),
    ("imagenet_table2_b8192_e90", 8192, 90, 14200, 3.2, 5, 1e-4, 0),
    ("imagenet_table2_b12288_e90", 12288, 90, 9400, 4.8, 5, 1e-4, 0),
    ("imagenet_table3_b4096_e37", 4096, 37, 11560, 1.6, 5, 1e-4, 0),
    ("imagenet_table3_b12288_e54", 12288, 54, 5600, 4.8, 5, 1e-4, 0),
    ("imagenet_table8_wd5e-5", 4096, 90, None, 1.6, 5, 5e-5, 0),
    ("imagenet_table8_collapse", 4096, 90, None, 1.6, 5, 5e-5, 5),
    ("imagenet_table9_b10240_e91", 10240, 91, 11400, 4.0, 5, 5e-5, 5),
    ("imagenet_table9_b16384_e92", 16384, 92, 7200, 6.4, 7, 5e-5, 6),
    ("imagenet_table9_b32768_e100", 32768, 100, 4000, 6.4, 8, 5e-5, 6),
    ("imagenet_table9_b49152_e100", 49152, 100, 2600, 6.4, 10, 5e-5, 6),
    ("imagenet_table9_b65536_e107", 65536, 107, 2100, 6.4, 10, 5e-5, 7),
]


@pytest.mark.parametrize("name, batch, epochs, iterations, peak, warmup, wd, collapse", PAPER)
def test_paper_runs_carry_the_papers_numbers(name, batch, epochs, iterations, peak, warmup,
                                            wd, collapse):
    cfg = C.load_config(os.path.join(ROOT, "configs", f"{name}.py"))
    assert (cfg.batch_size, cfg.epochs) == (batch, epochs)
    o = cfg.optimizer
    assert linear_scaling(o.base_lr, batch, o.reference_batch, o.max_lr) == pytest.approx(peak)
    assert cfg.schedule.warmup_epochs == warmup and o.weight_decay == wd
    assert cfg.schedule.collapse_epochs_for(epochs) == collapse
    if iterations:  # the table gives rounded iteration counts
        assert IMAGENET_TRAIN / batch * epochs == pytest.approx(iterations, rel=0.03)
    assert cfg.model.name == "resnet50" and cfg.model.bn_moving_average_fraction == 0.95
    assert cfg.data.image_size == 224 and cfg.data.augment == "scale_aspect"


def test_collapsed_ensemble_config_snapshots_at_cycle_ends():
    cfg = C.load_config(os.path.join(ROOT, "configs", "imagenet_table11_ensemble_b4096_e120.py"))
    plan = recipe.build_plan(cfg)
    assert [p.epoch + 1 for p in plan if p.snapshot] == [45, 60, 75, 90, 105, 120]
    # each collapse is the last 3 epochs of its decay (wd 5e-5 -> 1e-4, augmentation off)
    collapsed = [p.epoch + 1 for p in plan if p.phase == "collapse"]
    assert collapsed == [e for end in (45, 60, 75, 90, 105, 120) for e in range(end - 2, end + 1)]
    assert {p.weight_decay for p in plan if p.phase == "collapse"} == {1e-4}
    assert {p.weight_decay for p in plan if p.phase != "collapse"} == {5e-5}
    # the ensemble is the paper's five: the cycle snapshots 60..120 (Table XI's 2c..6c)
    assert cfg.schedule.ensemble.num_snapshots == 5


def test_small_recipe_config_has_at_least_three_snapshots():
    cfg = C.load_config(os.path.join(ROOT, "configs", "digits_recipe.py"))
    snaps = [p.epoch + 1 for p in recipe.build_plan(cfg) if p.snapshot]
    assert snaps == [8, 12, 16, 20] and cfg.data.name == "digits"


def test_lee_cifar10_configs_carry_section_vi_c():
    """Lee et al. VI-C: ResNet-20, 140 epochs, B_s = 256, B_m = 2048, K = 5, LR x0.1 after
    epochs 80 and 120; the fixed-LR variant and the large-batch baseline."""
    cfg = {m: C.load_config(os.path.join(ROOT, "configs", f"cifar10_{m}.py"))
           for m in ("best_small", "linear_scaling", "adaptive_fixed_lr", "adaptive")}
    for c in cfg.values():
        assert c.epochs == 140 and c.model.name == "resnet20" and c.data.name == "cifar10"
        assert c.data.data_dir and c.optimizer.base_lr == 0.1 and c.optimizer.reference_batch == 128
    assert cfg["best_small"].batch_size == 128 and not cfg["best_small"].adaptive.enabled
    assert cfg["best_small"].schedule.step_epochs == (80, 120)
    big = cfg["linear_scaling"]
    assert big.batch_size == 2048 and big.schedule.warmup_epochs == 5
    assert linear_scaling(0.1, 2048, 128, big.optimizer.max_lr) == pytest.approx(1.6)
    for m, scaling in (("adaptive", "linear"), ("adaptive_fixed_lr", "none")):
        a = cfg[m].adaptive
        assert cfg[m].batch_size == 256 and a.enabled and a.max_batch == 2048
        assert a.k_epochs == 5 and a.lr_scaling == scaling
        assert a.lr_control == "fixed" and a.lr_decay_epochs == (80, 120)
    assert cfg["adaptive"].adaptive.beta == 0.1
    for c in cfg.values():           # every batch divides over 2 to 128 ranks
        for ranks in (2, 8, 128):
            c.validate_for(ranks)
