"""The recipe's phases (Codreanu et al. V-B, V-C, VI): plans, weight decay, momentum
correction, augmentation switch, snapshots and the ensemble evaluator - in one process."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from lbsgd.run import checkpoint as ckpt
from lbsgd import data
from lbsgd import parallel
from lbsgd.recipe import ensemble
from lbsgd.recipe import phases as recipe
from lbsgd.recipe import schedules as S
from lbsgd.config import (ConfigError, EnsembleConfig, DataConfig, OptimizerConfig,
                          ScheduleConfig, TrainConfig)


def lr(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


# --- plans: phase, weight decay, augmentation, snapshots per epoch ---------------------

def test_final_collapse_plan_table_viii():
    # Table VIII row 3: wd 5e-5, then the last ~6% (5 of 90 epochs) collapsed with 1e-4.
    cfg = TrainConfig(epochs=90, optimizer=OptimizerConfig(weight_decay=5e-5),
                      schedule=ScheduleConfig(warmup_epochs=5, collapse_epochs=0.06))
    plan = recipe.build_plan(cfg)
    assert [p.phase for p in plan] == ["warmup"] * 5 + ["main"] * 80 + ["collapse"] * 5
    assert {p.weight_decay for p in plan[:85]} == {5e-5}
    assert {p.weight_decay for p in plan[85:]} == {1e-4}          # doubled
    assert [p.augment for p in plan].count(False) == 5 and not plan[85].augment
    assert [p.epoch + 1 for p in plan if p.snapshot] == [90]


def test_multi_step_weight_decay_plan_figure_3():
    cfg = TrainConfig(epochs=107, optimizer=OptimizerConfig(weight_decay=5e-5),
                      schedule=ScheduleConfig(collapse_epochs=7, weight_decay_epochs=(40, 80),
                                              weight_decay_values=(7.5e-5, 1e-4),
                                              collapse_weight_decay=2e-4))
    wd = [p.weight_decay for p in recipe.build_plan(cfg)]
    assert wd[39] == 5e-5 and wd[40] == 7.5e-5 and wd[79] == 7.5e-5 and wd[80] == 1e-4
    assert wd[99] == 1e-4 and set(wd[100:]) == {2e-4}


def test_collapsed_ensemble_plan_paper_defaults():
    cfg = TrainConfig(epochs=120, schedule=ScheduleConfig(kind="collapsed_ensemble"))
    plan = recipe.build_plan(cfg)
    assert [p.epoch + 1 for p in plan if p.snapshot] == [45, 60, 75, 90, 105, 120]
    # the first power-2 decay (epochs 30-45) and each cycle's 12-epoch decay end with a
    # 3-epoch collapse (Section VI: "between 3-10 epochs"); 18 of 120 epochs collapse
    assert plan[29].phase == "main" and plan[30].phase == "decay" and plan[30].cycle == 0
    assert [p.phase for p in plan[39:45]] == ["decay"] * 3 + ["collapse"] * 3
    assert [p.phase for p in plan[45:60]] == ["rewarmup"] * 3 + ["decay"] * 9 + ["collapse"] * 3
    assert {p.cycle for p in plan[45:60]} == {1} and plan[119].cycle == 5
    assert [p.epoch + 1 for p in plan if p.phase == "collapse"] == [
        e for end in (45, 60, 75, 90, 105, 120) for e in (end - 2, end - 1, end)]
    assert plan[46].augment and plan[46].weight_decay == 5e-5
    assert plan[50].augment and plan[50].weight_decay == 5e-5          # decay, not collapse
    assert not plan[57].augment and plan[57].weight_decay == 1e-4


@pytest.mark.parametrize("collapse,epochs,collapsed", [
    (None, 120, 18), (None, 16, 6), (1, 120, 6), (10, 120, 60), (12, 120, 72)])
def test_ensemble_collapse_epochs_per_decay(collapse, epochs, collapsed):
    cfg = TrainConfig(epochs=epochs, schedule=ScheduleConfig(
        kind="collapsed_ensemble", warmup_epochs=1,
        ensemble=EnsembleConfig(collapse_epochs=collapse)))
    plan = recipe.build_plan(cfg)
    assert sum(p.phase == "collapse" for p in plan) == collapsed
    assert all(not p.augment for p in plan if p.phase == "collapse")
    assert all(p.augment for p in plan if p.phase != "collapse")


def test_ensemble_collapse_and_snapshot_settings_are_checked():
    with pytest.raises(ConfigError, match=r"schedule.ensemble.collapse_epochs=1.5"):
        EnsembleConfig(collapse_epochs=1.5)
    with pytest.raises(ConfigError, match=r"schedule.ensemble.num_snapshots=-1"):
        EnsembleConfig(num_snapshots=-1)
    with pytest.raises(ConfigError, match=r"fit in each power-2 decay.*collapse_epochs=13"):
        TrainConfig(epochs=120, schedule=ScheduleConfig(
            kind="collapsed_ensemble", ensemble=EnsembleConfig(collapse_epochs=13)))


def test_plan_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"schedule.collapse_epochs=12"):
        TrainConfig(epochs=10, schedule=ScheduleConfig(collapse_epochs=12))
    with pytest.raises(ConfigError, match=r"schedule.weight_decay_values=\(\)"):
        ScheduleConfig(weight_decay_epochs=(10,))
    with pytest.raises(ConfigError, match=r"stop mid-cycle.*epochs=30"):
        TrainConfig(epochs=30, schedule=ScheduleConfig(kind="collapsed_ensemble",
                                                       ensemble=EnsembleConfig.paper()))


# --- ensemble epochs that follow `epochs` (paper proportions), and the refusals -------------

@pytest.mark.parametrize("epochs,ends,rewarmup,linear_end", [
    (120, [45, 60, 75, 90, 105, 120], 3.0, 30.0),     # the paper's own run
    (10, [4, 6, 8, 10], 0.4, 4 * 2 / 3),
    (16, [6, 8, 10, 12, 14, 16], 0.4, 4.0),
    (40, [15, 20, 25, 30, 35, 40], 1.0, 10.0),
])
def test_ensemble_epochs_follow_epochs_in_the_papers_proportions(epochs, ends, rewarmup,
                                                                 linear_end):
    t = EnsembleConfig().timing(epochs)
    assert t.collapse_ends() == ends
    assert (t.rewarmup_epochs, t.linear_end_epoch) == pytest.approx((rewarmup, linear_end))
    assert t.linear_horizon_epochs == pytest.approx(3 * linear_end)
    cfg = TrainConfig(epochs=epochs, schedule=ScheduleConfig(kind="collapsed_ensemble",
                                                             warmup_epochs=1))
    assert [p.epoch + 1 for p in recipe.build_plan(cfg) if p.snapshot] == ends


def test_explicit_ensemble_fields_override_the_derived_ones():
    t = EnsembleConfig(num_cycles=2).timing(20)       # cycle 2 (20/8 -> 2), 2 cycles at the end
    assert t.collapse_ends() == [16, 18, 20]
    # re-warmup 1 (3:12), cycle 5; the first collapse near 3/8 x 30 = 11.25 leaves room
    # for 3 whole cycles, so it ends at 30 - 3 x 5 = 15
    t = EnsembleConfig(decay_epochs=4.0).timing(30)
    assert (t.rewarmup_epochs, t.collapse_ends()) == (1.0, [15, 20, 25, 30])


@pytest.mark.parametrize("ensemble,epochs,message", [
    (dict(power2_end_epoch=8, rewarmup_epochs=1, decay_epochs=3, num_cycles=3), 10,
     r"must equal the last cycle's end, epoch 20 \(the run would stop mid-cycle"),
    (dict(power2_end_epoch=8, rewarmup_epochs=1, decay_epochs=3, num_cycles=3), 24,
     r"epoch 20 \(epochs after it would have no schedule"),
    (dict(num_cycles=0), 10, r"gives 1 snapshot\(s\); a collapsed ensemble needs >= 2"),
    (dict(rewarmup_epochs=0.5, decay_epochs=1.0, num_cycles=2, power2_end_epoch=7), 10,
     r"rewarmup_epochs \+ decay_epochs a whole number of epochs \(now 1.5\)"),
])
def test_unusable_ensemble_timing_is_refused_with_one_line(ensemble, epochs, message):
    with pytest.raises(ConfigError, match=message) as err:
        TrainConfig(epochs=epochs, schedule=ScheduleConfig(
            kind="collapsed_ensemble", warmup_epochs=1, ensemble=EnsembleConfig(**ensemble)))
    assert "\n" not in str(err.value)


# --- the config's LR schedule: collapse and ensemble wired through build_schedule -------

def test_build_schedule_final_collapse_from_where_poly_left_off():
    spe, epochs = 100, 90
    sched = S.build_schedule(OptimizerConfig(base_lr=0.1), ScheduleConfig(
        warmup_epochs=5, collapse_epochs=6), 4096, spe, epochs)
    peak, warm, total, begin = 1.6, 500, 9000, 8400
    left_off = peak * (1 - (begin - warm) / (total - warm))
    assert lr(sched, warm) == pytest.approx(peak, rel=1e-5)
    assert lr(sched, begin) == pytest.approx(left_off, rel=1e-5)
    assert lr(sched, (begin + total) // 2) == pytest.approx(left_off / 4, rel=1e-4)
    assert lr(sched, total) == pytest.approx(0.0, abs=1e-7)


def test_build_schedule_collapsed_ensemble_batch_4096():
    spe = 10
    sched = S.build_schedule(OptimizerConfig(base_lr=0.1), ScheduleConfig(
        kind="collapsed_ensemble", warmup_epochs=5), 4096, spe, 120)
    peak = 1.6
    assert lr(sched, 5 * spe) == pytest.approx(peak * (1 - 5 / 90), rel=1e-5)
    assert lr(sched, 45 * spe) == pytest.approx(0.22 * peak, rel=1e-5)
    for start in (45, 60, 75, 90, 105):
        top = lr(sched, (start + 3) * spe)
        assert lr(sched, (start + 15) * spe) == pytest.approx(top / 4, rel=1e-5)


# --- weight decay in a variable: changes without recompiling ------------------------------

def test_weight_decay_change_takes_effect_without_recompiling():
    # Zero inputs give zero loss gradients: each SGD step is w <- w - lr * wd * w.
    model = keras.Sequential([keras.Input((3,)),
                              keras.layers.Dense(2, use_bias=False, kernel_initializer="ones")])
    opt = parallel.DistributedOptimizer(keras.optimizers.SGD(0.1), weight_decay=0.0)
    model.compile(optimizer=opt, loss="mse", jit_compile=False)
    x, y = np.zeros((8, 3), np.float32), np.zeros((8, 2), np.float32)
    plan = [recipe.EpochPlan(0, "main", -1, 0.0, True, False),
            recipe.EpochPlan(1, "collapse", 0, 0.5, False, True),
            recipe.EpochPlan(2, "collapse", 0, 0.25, False, True)]
    kernels, traces = [], []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: kernels.append(model.layers[0].kernel.numpy().copy()))
    train_step = model.train_step
    model.train_step = lambda batch: (traces.append(1), train_step(batch))[1]  # Python runs
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0, shuffle=False,
                        callbacks=[recipe.RecipePhases(plan), record])
    np.testing.assert_allclose(kernels[0], 1.0)                         # wd 0: no change
    np.testing.assert_allclose(kernels[1], (1 - 0.1 * 0.5) ** 2, rtol=1e-6)  # 2 steps
    np.testing.assert_allclose(kernels[2], (1 - 0.05) ** 2 * (1 - 0.025) ** 2, rtol=1e-6)
    assert len(traces) == 1               # the train step was traced once: no recompiling
    assert history.history["weight_decay"] == [0.0, 0.5, 0.25]


def test_momentum_correction_matches_lr_outside_the_velocity():
    # Goyal et al.: with the correction, Keras' v <- m v - lr g behaves as
    # u <- m u + g; w <- w - lr u while the LR warms up and decays.
    sched = S.GradualWarmup(S.PolynomialDecay(1.0, 20, begin_step=5), 5, 0.1)
    w = keras.Variable(np.array([[1.0, -2.0]], np.float32))
    opt = parallel.DistributedOptimizer(keras.optimizers.SGD(sched, momentum=0.9),
                                           momentum_correction=True)
    opt.build([w])
    rng = np.random.default_rng(0)
    ref, u = np.array([[1.0, -2.0]]), np.zeros((1, 2))
    for t in range(14):
        g = rng.normal(size=(1, 2)).astype(np.float32)
        opt.apply([tf.constant(g)], [w])
        u = 0.9 * u + g
        ref = ref - lr(sched, t) * u
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-5)
    # Without it the two forms differ once the LR changes.
    w2 = keras.Variable(np.array([[1.0, -2.0]], np.float32))
    plain = parallel.DistributedOptimizer(keras.optimizers.SGD(sched, momentum=0.9),
                                             momentum_correction=False)
    plain.build([w2])
    rng = np.random.default_rng(0)
    for t in range(14):
        plain.apply([tf.constant(rng.normal(size=(1, 2)).astype(np.float32))], [w2])
    assert np.abs(w2.numpy() - ref).max() > 0.1


@pytest.mark.parametrize("correction,weight_decay", [(True, 0.0), (True, 1e-2), (False, 1e-2)])
def test_fused_sgd_update_is_keras_sgd_maths(correction, weight_decay):
    # One ResourceApplyKerasMomentum per variable, the correction folded into the
    # momentum, against Keras' own ops and the correction's pass over the velocities.
    sched = S.GradualWarmup(S.PolynomialDecay(1.0, 20, begin_step=5), 5, 0.1)
    init = [np.array([[1.0, -2.0], [0.5, 3.0]], np.float32), np.array([0.2, -0.1], np.float32)]
    runs = {}
    for fused in (True, False):
        ws = [keras.Variable(a) for a in init]
        opt = parallel.DistributedOptimizer(keras.optimizers.SGD(sched, momentum=0.9),
                                            weight_decay=weight_decay,
                                            momentum_correction=correction, fused_update=fused)
        assert opt.fused_update is fused
        opt.build(ws)
        step = tf.function(lambda gs: opt.apply(gs, ws))
        rng = np.random.default_rng(0)
        for _ in range(14):
            step([tf.constant(rng.normal(size=a.shape).astype(np.float32)) for a in init])
        runs[fused] = [w.numpy() for w in ws] + [m.numpy() for m in opt.momentums]
        assert int(opt.iterations.numpy()) == 14
    for fused, plain in zip(runs[True], runs[False]):   # one kernel rounds as it likes (FMA)
        np.testing.assert_allclose(fused, plain, rtol=1e-5, atol=1e-6)
    assert np.abs(runs[True][0] - init[0]).max() > 0.5        # the weights did move


def test_fused_update_corrects_the_velocity_of_a_variable_left_without_gradient():
    # The bias gets no gradient every other step while the LR warms up: its velocity still
    # takes lr_t / lr_{t-1} each step, as on the unfused path.
    sched = S.GradualWarmup(S.PolynomialDecay(1.0, 20, begin_step=8), 8, 0.1)
    runs = {}
    for fused in (True, False):
        ws = [keras.Variable(np.ones((2, 2), np.float32)), keras.Variable(np.zeros(2, np.float32))]
        opt = parallel.DistributedOptimizer(keras.optimizers.SGD(sched, momentum=0.9),
                                            fused_update=fused)
        opt.build(ws)
        rng = np.random.default_rng(1)
        for t in range(10):
            g = [tf.constant(rng.normal(size=(2, 2)).astype(np.float32)),
                 tf.constant(rng.normal(size=2).astype(np.float32))]
            opt.apply([g[0], g[1] if t % 2 == 0 else None], ws)
        runs[fused] = [w.numpy() for w in ws] + [m.numpy() for m in opt.momentums]
    for fused, plain in zip(runs[True], runs[False]):
        np.testing.assert_allclose(fused, plain, rtol=1e-5, atol=1e-6)


def test_fused_update_outside_apply_is_refused():
    w = keras.Variable(np.ones(2, np.float32))
    opt = parallel.DistributedOptimizer(keras.optimizers.SGD(0.1, momentum=0.9))
    opt.build([w])
    with pytest.raises(RuntimeError, match="inside the optimizer's apply"):
        opt.update_step(tf.ones(2), w.value, 0.1)


@pytest.mark.parametrize("optimizer,kwargs,fused", [
    (lambda: keras.optimizers.SGD(0.1, momentum=0.9), {}, True),
    (lambda: keras.optimizers.SGD(0.1, momentum=0.9), {"fused_update": False}, False),
    (lambda: keras.optimizers.SGD(0.1, momentum=0.9), {"momentum_correction": False}, True),
    (lambda: keras.optimizers.SGD(0.1), {}, False),                       # no velocity
    (lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True), {}, False),
    (lambda: keras.optimizers.SGD(0.1, momentum=0.9, gradient_accumulation_steps=2), {}, False),
    (lambda: keras.optimizers.Adam(0.1), {}, False),
])
def test_fused_update_only_where_the_maths_is_keras_sgd_with_momentum(optimizer, kwargs, fused):
    opt = parallel.DistributedOptimizer(optimizer(), **kwargs)
    assert opt.fused_update is fused
    again = type(opt).from_config(opt.get_config())            # model.save / load_model
    assert again.fused_update is fused


# --- the ImageNet-style pipeline on generated images --------------------------------------

@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2)):
        for c in ("cat", "dog"):
            os.makedirs(root / split / c)
            for i in range(n):
                img = (rng.random((36 + 5 * i, 44, 3)) * 255).astype(np.uint8)
                tf.io.write_file(str(root / split / c / f"{i}.png"), tf.io.encode_png(img))
    return str(root)


def _windows(image, size):
    h, w = image.shape[:2]
    return [image[t:t + size, l:l + size] for t in range(h - size + 1)
            for l in range(w - size + 1)]


def _is_window(out, image, size):
    return any(np.allclose(out, win, atol=1e-5) for win in _windows(image, size))


def test_folder_source_reads_classes_and_sizes(image_folder):
    src = data.load_source(DataConfig(name="folder", data_dir=image_folder, image_size=16))
    assert (src.num_train, src.num_val, src.num_classes) == (6, 4, 2)
    assert list(src.train_labels) == [0, 0, 0, 1, 1, 1]
    val = next(iter(data.val_dataset(src, 4, 0, 1)))[0].numpy()
    assert val.shape == (4, 16, 16, 3)
    # evaluation: the centre crop of the image resized to 256/224 of the crop size
    image = tf.io.decode_png(tf.io.read_file(
        os.path.join(image_folder, "val", "cat", "0.png"))).numpy() / 255.0
    resized = data.resize_shorter_side(tf.constant(image, tf.float32), 18).numpy()
    top, left = (resized.shape[0] - 16) // 2, (resized.shape[1] - 16) // 2
    np.testing.assert_allclose(val[0], resized[top:top + 16, left:left + 16], atol=1e-6)


def test_switch_on_scale_aspect_off_only_crop(image_folder):
    cfg = DataConfig(name="folder", data_dir=image_folder, image_size=16,
                     augment="scale_aspect", flip=True, min_area=0.08)
    src = data.load_source(cfg)
    item = tf.constant(src.train_items[0])
    image = tf.io.decode_png(item).numpy() / 255.0
    resized = data.resize_shorter_side(tf.constant(image, tf.float32), 18).numpy()
    seeds = [tf.constant([s, 7], tf.int32) for s in range(12)]
    off = [src.decode(item, True, s, tf.constant(False)).numpy() for s in seeds]
    on = [src.decode(item, True, s, tf.constant(True)).numpy() for s in seeds]
    assert all(o.shape == (16, 16, 3) for o in on + off)
    assert all(_is_window(o, resized, 16) for o in off)       # random crop only
    assert len({o.tobytes() for o in off}) > 1                # ... and it is random
    assert sum(_is_window(o, resized, 16) for o in on) <= 1   # rescaled / reshaped crops


def test_pipeline_reads_the_switch_at_run_time(image_folder):
    cfg = DataConfig(name="folder", data_dir=image_folder, image_size=16,
                     augment="scale_aspect", min_area=0.08)
    src = data.load_source(cfg)
    resized = [data.resize_shorter_side(tf.io.decode_png(tf.constant(b)) / 255, 18).numpy()
               for b in src.train_items]
    switch = data.AugmentSwitch(2)
    ds = data.train_dataset(src, 6, 0, 0, 1, 0, 2, augment_switch=switch)
    switch.set(1, False)                      # after the pipeline is built: epoch 2 off
    batches = [b[0].numpy() for b in ds]
    assert len(batches) == 2
    assert switch.values() == [True, False]
    windows = [[any(_is_window(img, r, 16) for r in resized) for img in b] for b in batches]
    assert not all(windows[0]) and all(windows[1])


@pytest.mark.parametrize("cores, threads", [(1, 1), (2, 1), (4, 1), (5, 2), (8, 2), (16, 4),
                                            (56, 14), (112, 28)])
def test_pipeline_threads_one_per_4_cores_of_the_rank(monkeypatch, cores, threads):
    monkeypatch.delenv("LBSGD_PIPELINE_THREADS", raising=False)
    assert data.pipeline_threads(cores) == threads


def test_pipeline_threads_env_and_the_datasets_pool(monkeypatch):
    monkeypatch.setenv("LBSGD_PIPELINE_THREADS", "3")
    assert data.pipeline_threads(64) == 3
    src = data.load_source(DataConfig(name="synthetic", image_size=8, num_train=64))
    for ds in (data.train_dataset(src, 8, 0, 0, 1, 0, 1), data.val_dataset(src, 8, 0, 1)):
        assert ds.options().threading.private_threadpool_size == 3
        assert ds.options().autotune.enabled is False
    for bad in ("0", "two"):
        monkeypatch.setenv("LBSGD_PIPELINE_THREADS", bad)
        with pytest.raises(ValueError, match=f"LBSGD_PIPELINE_THREADS={bad!r}"):
            data.pipeline_threads(4)


@pytest.mark.parametrize("name", ["imagenet2012", "cifar10"])
def test_unprepared_tfds_data_names_data_dir(tmp_path, name):
    with pytest.raises(ConfigError, match=r"data.data_dir="):
        data.load_source(DataConfig(name=name, data_dir=str(tmp_path)))


# --- snapshots and the collapsed-ensemble evaluator ----------------------------------------

def _softmax_model(num_classes=3):
    model = keras.Sequential([keras.Input((num_classes,)),
                              keras.layers.Dense(num_classes, use_bias=False,
                                                 activation="softmax")])
    return model


def test_ensemble_averages_softmax_outputs(tmp_path):
    # One-hot input i picks row i of the kernel: softmax(log P[i]) = P[i].
    pa = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]])
    pb = np.array([[0.2, 0.7, 0.1], [0.1, 0.6, 0.3], [0.5, 0.1, 0.4]])
    model = _softmax_model()
    paths = []
    for name, p in (("a", pa), ("b", pb)):
        model.layers[0].kernel.assign(np.log(p).astype(np.float32))
        path = str(tmp_path / f"{name}.npz")
        ckpt.save_weights(path, model, {"epoch": len(paths) + 1})
        paths.append(path)
    labels = np.array([0, 1, 2])
    ds = tf.data.Dataset.from_tensor_slices((np.eye(3, dtype=np.float32), labels)).batch(2)
    result = ensemble.evaluate_snapshots(model, paths, ds, top_k=2)
    a, b, ens = result["snapshots"][0], result["snapshots"][1], result["ensemble"]
    assert (a["top1"], b["top1"]) == pytest.approx((1.0, 1 / 3))
    assert b["top5"] == pytest.approx(1.0)                     # top-2 here: all second best
    assert a["loss"] == pytest.approx(-np.log([0.6, 0.5, 0.7]).mean(), rel=1e-5)
    pe = (pa + pb) / 2                                         # [.4 .5 .1] [.15 .55 .3] [.3 .15 .55]
    assert ens["top1"] == pytest.approx(2 / 3)
    assert ens["loss"] == pytest.approx(-np.log([pe[0, 0], pe[1, 1], pe[2, 2]]).mean(), rel=1e-5)
    assert [r["epoch"] for r in result["snapshots"]] == [1, 2]
    assert "ensemble" in ensemble.format_table(result)
    with pytest.raises(ValueError, match=r"members=\[5\]"):
        ensemble.evaluate_snapshots(model, paths, ds, members=[5])


def test_snapshots_callback_saves_at_collapse_ends_and_restores_state(tmp_path):
    model = _softmax_model()
    opt = parallel.DistributedOptimizer(keras.optimizers.SGD(0.1), weight_decay=1e-4)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=False)
    x, y = np.eye(3, dtype=np.float32), np.arange(3)
    snaps = recipe.Snapshots(str(tmp_path / "snapshots"), epochs=[2, 4])
    kernels = {}
    keep = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: kernels.__setitem__(e + 1, model.get_weights()[0]))
    model.fit(x, y, epochs=4, verbose=0, validation_data=(x, y), callbacks=[snaps, keep])
    assert [s["epoch"] for s in snaps.snapshots] == [2, 4]
    assert sorted(os.listdir(tmp_path / "snapshots")) == [
        "epoch_0002.npz", "epoch_0004.npz", "index.json"]
    meta = ckpt.load_weights(snaps.paths[0], model)
    np.testing.assert_array_equal(model.get_weights()[0], kernels[2])
    assert meta["learning_rate"] == pytest.approx(0.1) and "val_accuracy" in meta
    again = recipe.Snapshots(str(tmp_path / "snapshots"), epochs=[2, 4])
    again.set_state(snaps.get_state())
    assert again.paths == snaps.paths
