"""Config validation: bad values fail early with one line naming the field and value."""

import pytest

from conftest import ROOT, assert_no_rank_started, horovodrun, run_python
from lbsgd import config as C


@pytest.mark.parametrize("make, field, value", [
    (lambda: C.TrainConfig(batch_size=-8), "batch_size", "-8"),
    (lambda: C.TrainConfig(epochs=0), "epochs", "0"),
    (lambda: C.DataConfig(name="imagenett"), "data.name", "'imagenett'"),
    (lambda: C.OptimizerConfig(base_lr=-0.1), "optimizer.base_lr", "-0.1"),
    (lambda: C.OptimizerConfig(exchange="ring"), "optimizer.exchange", "'ring'"),
    (lambda: C.OptimizerConfig(bucket_mb=0.0), "optimizer.bucket_mb", "0.0"),
    (lambda: C.OptimizerConfig(compression="int8"), "optimizer.compression", "'int8'"),
    (lambda: C.ModelConfig(bn_moving_average_fraction=1.5),
     "model.bn_moving_average_fraction", "1.5"),
    (lambda: C.TrainConfig.from_dict({"data": {"name": "imagenett"}}), "data.name",
     "'imagenett'"),
    (lambda: C.AdaptiveConfig(start_batch="largest"), "adaptive.start_batch", "'largest'"),
    (lambda: C.AdaptiveConfig(probe_batches=(64, 32)), "adaptive.probe_batches", "(64, 32)"),
    (lambda: C.AdaptiveConfig(max_ranks=-1), "adaptive.max_ranks", "-1"),
    (lambda: C.TrainConfig(batch_size=16, adaptive=C.AdaptiveConfig(
        enabled=True, max_batch=64, start_batch="probe", probe_batches=(16, 128))),
     "adaptive.probe_batches", "(16, 128)"),
    (lambda: C.TrainConfig(adaptive=C.AdaptiveConfig(max_ranks=2)), "adaptive.max_ranks", "2"),
    (lambda: C.TrainConfig(batch_size=16, adaptive=C.AdaptiveConfig(
        enabled=True, max_batch=64, max_ranks=2)).validate_for(4), "adaptive.max_ranks", "2"),
    (lambda: C.TrainConfig(batch_size=16, adaptive=C.AdaptiveConfig(
        enabled=True, max_batch=64, start_batch="probe", probe_batches=(12, 24))
    ).validate_for(8), "adaptive.probe_batches", "(12, 24)"),
])
def test_invalid_values_name_field_and_value(make, field, value):
    with pytest.raises(C.ConfigError) as err:
        make()
    assert f"`{field}`" in str(err.value)
    assert f"{field}={value}" in str(err.value)


def test_batch_must_divide_over_ranks():
    with pytest.raises(C.ConfigError, match=r"batch_size=30"):
        C.TrainConfig(batch_size=30).validate_for(4)


def test_overrides_parse_types_and_revalidate():
    cfg = C.apply_overrides(C.TrainConfig(), {"optimizer.base_lr": "0.2", "epochs": "3",
                                               "schedule.warmup_epochs": "1",
                                               "model.zero_gamma_last_bn": "false",
                                               "schedule.step_epochs": "3,6"})
    assert cfg.optimizer.base_lr == 0.2 and cfg.epochs == 3
    assert cfg.model.zero_gamma_last_bn is False and cfg.schedule.step_epochs == (3, 6)
    with pytest.raises(C.ConfigError, match=r"Field `optimizer\.base_lr` must be a float"):
        C.apply_overrides(C.TrainConfig(), {"optimizer.base_lr": "fast"})
    with pytest.raises(C.ConfigError, match=r"`optimizer\.lr` is not a config field"):
        C.apply_overrides(C.TrainConfig(), {"optimizer.lr": "0.1"})


def test_json_round_trip():
    cfg = C.load_config(f"{ROOT}/configs/digits_resnet.py")
    again = C.TrainConfig.from_dict(__import__("json").loads(cfg.to_json()))
    assert again == cfg


def _one_error_line(proc, field, value):
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("lbsgd.train: error: ")
    assert f"{field}={value}" in lines[0]


def test_cli_rejects_bad_value_in_one_line(tmp_path):
    proc = run_python("-m", "lbsgd.train", "--config", "configs/digits_resnet.py",
                      "--batch_size=-64", f"--run_dir={tmp_path}/run")
    _one_error_line(proc, "batch_size", "-64")
    assert not (tmp_path / "run").exists()      # nothing written


def test_launcher_rejects_unknown_dataset_before_ranks_start(tmp_path):
    proc = horovodrun(2, "-m", "lbsgd.train", "--config", "configs/digits_resnet.py",
                      "--data.name=mnist", f"--run_dir={tmp_path}/run", check=False,
                      all_ranks=True, timeout=120)
    _one_error_line(proc, "data.name", "'mnist'")
    assert_no_rank_started(proc)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("line, field, value", [
    ("epochs=2.5", "epochs", "2.5"),
    ("seed=-1", "seed", "-1"),
    ("batch_size=4096", "batch_size", "4096"),
    ("schedule=ScheduleConfig(warmup_epochs=20)", "schedule.warmup_epochs", "20.0"),
    ("optimizer=OptimizerConfig(momentum_correction='yes')", "optimizer.momentum_correction",
     "'yes'"),
])
def test_bad_config_file_values_fail_before_ranks_start(tmp_path, line, field, value):
    path = tmp_path / "bad.py"
    path.write_text("from lbsgd.config import *\n"
                    f"def get_config():\n    return TrainConfig(name='bad', {line})\n")
    proc = horovodrun(2, "-m", "lbsgd.train", "--config", str(path), f"--run_dir={tmp_path}/run",
                      check=False, all_ranks=True, timeout=120)
    _one_error_line(proc, field, value)
    assert_no_rank_started(proc)
    assert not (tmp_path / "run").exists()


def test_config_file_with_an_unknown_argument_is_one_line(tmp_path):
    path = tmp_path / "typo.py"
    path.write_text("from lbsgd.config import *\n"
                    "def get_config():\n    return TrainConfig(epoch=3)\n")
    proc = run_python("-m", "lbsgd.train", "--config", str(path))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "epoch" in lines[0] and str(path) in lines[0]


@pytest.mark.parametrize("flags,name", [
    (["--run_dir={tmp}/lr_sweep/b512/"], "b512"),                 # after the run directory
    (["--run_dir={tmp}/b512", "--name=mine"], "mine"),            # --name wins
    ([], "digits_resnet"),                                        # the config's own name
])
def test_run_name_from_name_else_run_directory(tmp_path, flags, name):
    proc = run_python("-m", "lbsgd.train", "--config", "configs/digits_resnet.py",
                      "--validate_only", "--overwrite", *[f.format(tmp=tmp_path) for f in flags])
    assert proc.returncode == 0, proc.stderr
    assert f"config {name!r} is valid" in proc.stdout


def test_config_json_of_an_earlier_version_loads_renamed_fields():
    d = C.TrainConfig().to_dict()
    d["adaptive"]["decay_epochs"] = d["adaptive"].pop("lr_decay_epochs")
    d["adaptive"]["decay_epochs"] = [80, 120]
    assert C.TrainConfig.from_dict(d).adaptive.lr_decay_epochs == (80, 120)
