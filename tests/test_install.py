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
