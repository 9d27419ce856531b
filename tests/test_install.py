"""launch/install.sh refuses what it cannot build, in one line, before installing anything."""

import os
import subprocess

import pytest

from conftest import ROOT

INSTALL = os.path.join(ROOT, "launch", "install.sh")


def install(*args, env=None, timeout=300):
    base = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "LBSGD_TF")}
    return subprocess.run(["bash", INSTALL, *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def one_error(proc):
    lines = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert proc.returncode != 0 and len(lines) == 1, (proc.returncode, proc.stderr[-2000:])
    return lines[0]


def test_into_current_env_needs_an_active_virtualenv():
    line = one_error(install("--into-current-env"))
    assert "--into-current-env needs an active virtualenv (VIRTUAL_ENV is unset)" in line


def test_into_current_env_keeps_the_environments_tensorflow(tmp_path):
    env = {"VIRTUAL_ENV": str(tmp_path), "LBSGD_TF": "2.21.0"}
    (tmp_path / "bin").mkdir()
    os.symlink("/usr/bin/python3", tmp_path / "bin" / "python")
    line = one_error(install("--into-current-env", env=env))
    assert "keeps the environment's TensorFlow; LBSGD_TF=2.21.0 does not apply" in line


@pytest.mark.parametrize("version, message", [
    ("2.15.0", "tensorflow 2.15.0 is not supported: horovod 0.28.1 builds here against "
               "2.18, 2.19, 2.20, 2.21"),
    ("latest", "LBSGD_TF must be a TensorFlow release such as 2.21.0. Received: LBSGD_TF=latest"),
])
def test_an_unsupported_tensorflow_is_refused(tmp_path, version, message):
    proc = install(env={"LBSGD_TF": version, "LBSGD_VENV": str(tmp_path / "venv")})
    assert message in one_error(proc)
    assert not (tmp_path / "venv" / "lib").exists() or not list(
        (tmp_path / "venv" / "lib").glob("*/site-packages/tensorflow*"))


def test_into_the_users_own_environment(tmp_path):
    """A user's venv with its TensorFlow installed first, then lbsgd, then the command: Horovod
    is built (or taken from the cache) for that TensorFlow, a 2-rank job runs, and the user's
    TensorFlow, Keras and numpy are unchanged."""
    import json
    import sys

    import tensorflow as tf

    venv = tmp_path / "userenv"
    base_python = os.path.join(sys.base_prefix, "bin", "python3")
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, timeout=120)
    vpy = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items()
           if k not in ("LBSGD_TF", "LBSGD_VENV", "PYTHONPATH")}
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv}/bin:{env['PATH']}", TF_CPP_MIN_LOG_LEVEL="2")

    def pip(*args, timeout=900, quiet=True):
        proc = subprocess.run([vpy, "-m", "pip", *args, *(["-q"] if quiet else []),
                               "--disable-pip-version-check"],
                              env=env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    def versions():
        listed = json.loads(pip("list", "--format=json", quiet=False))
        names = {p["name"].lower().replace("_", "-"): p["version"] for p in listed}
        return {k: v for k, v in names.items() if k in ("tensorflow-cpu", "keras", "numpy")}

    pip("install", f"tensorflow-cpu=={tf.__version__}")        # the user's own stack first
    before = versions()
    assert before["tensorflow-cpu"] == tf.__version__
    pip("install", "-e", ROOT)
    proc = install("--into-current-env", env=env, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"building for the environment's tensorflow {tf.__version__}" in proc.stderr
    run_dir = tmp_path / "run"
    job = subprocess.run(
        [os.path.join(ROOT, "launch", "run.sh"), "-np", "2", "python", "-m", "lbsgd.train",
         "--config", os.path.join(ROOT, "configs", "digits_resnet.py"), "--epochs=1",
         "--schedule.warmup_epochs=0",
         f"--run_dir={run_dir}", "--tensorboard=false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["num_ranks"] == 2 and summary["epochs"] == 1
    assert versions() == before
