"""The console a user sees: rank 0's Keras-style lines (ints as ints), no rank tags, no
spurious warnings, clean line ends; other ranks silent unless the job fails."""

import io
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import ROOT, assert_no_rank_started, horovodrun
from lbsgd.run import console
from lbsgd.rankstreams import RankDemux


@pytest.mark.parametrize("key, value, shown", [
    ("batch_size", 64.0, "64"), ("steps", 22.0, "22"), ("K", 0.0, "0"), ("cycle", -1.0, "-1"),
    ("augment", 1.0, "1"), ("collective_calls", np.float32(22), "22"), ("batch_size", 64, "64"),
    ("steps", np.int64(7), "7"), ("flag", True, "1"),
    ("accuracy", 0.9916434288024902, "0.9916"), ("accuracy", 1.0, "1.0000"),
    ("loss", 2.31924, "2.3192"), ("learning_rate", 0.05, "0.0500"), ("learning_rate", 0.0, "0.0000"),
    ("weight_decay", 5e-05, "5e-05"), ("learning_rate", 0.0002, "0.0002"),
    ("loss", 1234567.0, "1.235e+06"), ("theta", float("nan"), "nan"),
    ("images_per_second", 190.3439, "190.3"), ("phase", "collapse", "collapse"),
    ("batch_size", 64.5, "64.5000"),
])
def test_log_values_are_formatted_by_what_they_are(key, value, shown):
    assert console.format_log_value(key, value) == shown


def test_epoch_line_reads_like_keras_verbose_2():
    line = console.format_epoch_line(22, 22, 8.2, 0.363, {
        "accuracy": 0.48221, "loss": 1.80591, "learning_rate": 0.1, "batch_size": 64.0,
        "epoch_seconds": 8.2, "elapsed_seconds": 31.7})
    assert line == ("22/22 - 8s - 363ms/step - accuracy: 0.4822 - loss: 1.8059 - "
                    "learning_rate: 0.1000 - batch_size: 64")


def test_summary_line_is_rounded():
    summary = {"epochs": 15, "num_ranks": 2, "total_seconds": 119.04,
               "final": {"val_accuracy": 0.9916434288024902}, "images_per_second": 486.27}
    assert console.summary_line("digits_resnet", summary, "val_accuracy", "runs/x") == (
        "lbsgd.train: digits_resnet: 15 epochs on 2 ranks in 119.0 s, val_accuracy 0.9916, "
        "486.3 images/s; run directory runs/x")


class _Publish(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        logs.update(batch_size=8, steps=4, cycle=-1.0, learning_rate=0.05)


def test_epoch_progress_in_a_fit():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.random.default_rng(0).random((32, 3)), np.zeros(32, np.int64)
    out = io.StringIO()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0,
              callbacks=[_Publish(), console.EpochProgress(stream=out, live=False)])
    lines = out.getvalue().splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 4
    assert re.fullmatch(r"4/4 - \d+s - \d+(s|ms|us)/step - accuracy: \d\.\d{4} - loss: \d\.\d{4} - "
                        r"batch_size: 8 - steps: 4 - cycle: -1 - learning_rate: 0\.0500",
                        lines[1]), lines[1]
    assert out.getvalue().endswith("\n")


def _demux(chunks):
    demux, shown, others = RankDemux(), b"", b""
    for i, chunk in enumerate(chunks):
        s, o = demux.feed(chunk, final=i == len(chunks) - 1)
        shown, others = shown + s, others + o
    return shown, others


@pytest.mark.parametrize("chunks, shown, others", [
    # mpirun tags every chunk: print() writes its text and its newline separately
    ([b"[1,0]<stdout>:Epoch 1/2\n", b"[1,0]<stdout>:summary", b"[1,0]<stdout>:\n", b""],
     b"Epoch 1/2\nsummary\n", b""),
    # other ranks are kept aside, one tag per line
    ([b"[1,1]<stderr>:warn", b"[1,1]<stderr>:ing\n[1,0]<stderr>:rank 0 warns\n", b""],
     b"rank 0 warns\n", b"[1,1]<stderr>:warning\n"),
    # a tag split across reads, and text of no rank (mpirun's own) after a line end
    ([b"[1,0]<stdout>:a\n[1,", b"0]<stdout>:b\n", b"mpirun: bye\n", b""], b"a\nb\nmpirun: bye\n",
     b""),
    # horovodrun --gloo prefixes lines with [rank]
    ([b"[0]<stdout>:x\n[1]<stdout>:y\n", b""], b"x\n", b"[1]<stdout>:y\n"),
    # redraws with \r stay as rank 0 wrote them
    ([b"[1,0]<stdout>:\r 1/4 - loss: 2", b"[1,0]<stdout>:\r 4/4 - loss: 1\n", b""],
     b"\r 1/4 - loss: 2\r 4/4 - loss: 1\n", b""),
    # text that only looks like the start of a tag is not lost
    ([b"[1,0]<stdout>:progress [", b""], b"progress [", b""),
])
def test_rank_demux(chunks, shown, others):
    assert _demux(chunks) == (shown, others)


def test_two_rank_console_as_the_user_sees_it(short_run):
    run_dir, proc = short_run         # launch/run.sh -np 2 ... --epochs=2 --run_dir=.../run
    print(proc.stdout)
    both = proc.stdout + proc.stderr
    assert "<stdout>" not in both and "<stderr>" not in both
    assert "shuffle=True" not in both and not proc.stderr.strip(), proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 5, lines
    for line in (lines[1], lines[3]):
        assert re.match(r"22/22 - \d+s - \d+(s|ms|us)/step - accuracy: \d\.\d{4} - loss: ", line)
        assert " - batch_size: 64 - steps: 22 - " in line and " - cycle: -1 - " in line
        assert not re.search(r"\b(64|22)\.0000|e[+-]00", line), line
    assert re.fullmatch(r"lbsgd\.train: run: 2 epochs on 2 ranks in \d+\.\d s, "
                        rf"val_accuracy \d\.\d{{4}}, \d+\.\d images/s; run directory "
                        rf"{re.escape(str(run_dir))}", lines[4]), lines[4]
    assert proc.stdout.endswith("\n")


def test_a_failing_rank_reaches_the_user(tmp_path):
    program = tmp_path / "fails_on_rank_1.py"
    program.write_text(
        "import os, sys, time\n"
        "rank = int(os.environ['OMPI_COMM_WORLD_RANK'])\n"
        "print(f'hello from rank {rank}', flush=True)\n"
        f"said = {str(tmp_path / 'rank0_said_hello')!r}\n"
        "if rank == 0:\n"
        "    open(said, 'w').close()\n"
        "if rank == 1:\n"
        "    # fail only once rank 0 has printed: mpirun kills it at rank 1's exit\n"
        "    deadline = time.time() + 60\n"
        "    while not os.path.exists(said) and time.time() < deadline:\n"
        "        time.sleep(0.05)\n"
        "    print('rank 1: the data directory vanished', file=sys.stderr, flush=True)\n"
        "    sys.exit(3)\n"
        "time.sleep(60)\n")
    proc = horovodrun(2, str(program), check=False, timeout=300)
    assert proc.returncode == 3
    assert proc.stdout == "hello from rank 0\n"                # rank 1 never on stdout
    assert "the other ranks' last output" in proc.stderr
    assert "[1,1]<stderr>:rank 1: the data directory vanished" in proc.stderr


def test_all_ranks_keeps_every_ranks_tagged_output(tmp_path):
    """LBSGD_ALL_RANKS=1 shows each rank's lines with mpirun's tags: the refusal tests rely on
    it (assert_no_rank_started) to tell that no rank ran."""
    program = tmp_path / "hello.py"
    # one write per line: mpirun tags every piece a rank writes, and this mode shows them raw
    program.write_text("import os\nrank = os.environ['OMPI_COMM_WORLD_RANK']\n"
                       "os.write(1, f'hello from rank {rank}\\n'.encode())\n")
    proc = horovodrun(2, str(program), all_ranks=True, timeout=300)
    assert "[1,0]<stdout>:hello from rank 0" in proc.stdout
    assert "[1,1]<stdout>:hello from rank 1" in proc.stdout
    with pytest.raises(AssertionError, match="a rank started"):
        assert_no_rank_started(proc)


FAKE_TF = (
    "import os\n"
    "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are "
    "written to STDERR\\n')\n"
    "os.write(2, b'I0000 00:00:1796186983.389064   11085 port.cc:153] oneDNN custom "
    "operations are on.\\n')\n"
    "os.write(2, b'W0000 00:00:1796186983.4   11085 x.cc:1] a real warning\\n')\n"
    "__version__ = 'fake'\n")


@pytest.mark.parametrize("level, shown", [
    ("2", ["W0000 00:00:1796186983.4   11085 x.cc:1] a real warning"]),
    ("0", ["WARNING: All log messages before absl::InitializeLog() is called are written "
           "to STDERR", "I0000 00:00:1796186983.389064   11085 port.cc:153] oneDNN custom "
           "operations are on.", "W0000 00:00:1796186983.4   11085 x.cc:1] a real warning"]),
])
def test_tensorflow_start_up_info_lines_follow_the_log_level(tmp_path, level, shown):
    # TF >= 2.19 writes these through absl before it reads TF_CPP_MIN_LOG_LEVEL; the
    # stand-in package writes the same bytes on import, so the filter is what is tested.
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(FAKE_TF)
    code = ("from lbsgd.parallel import runtime; "
            "print(runtime.import_tensorflow().__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=f"{tmp_path}:{ROOT}",
                                  TF_CPP_MIN_LOG_LEVEL=level), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "fake"
    assert out.stderr.splitlines() == shown


PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
INFO = b"I0000 00:00:1796186983.389064   11085 port.cc:153] oneDNN custom operations are on.\n"


@pytest.mark.parametrize("chunks, shown", [
    ([PREAMBLE + INFO + b"horovodrun: real message\n"], b"horovodrun: real message\n"),
    ([PREAMBLE[:10], PREAMBLE[10:] + INFO[:30], INFO[30:] + b"x\n"], b"x\n"),   # split anywhere
    ([b"Epoch 1/2 \r", b"loss 0.5\n"], b"Epoch 1/2 \rloss 0.5\n"),              # redraws pass
    ([b"I1 am a rank's line\n", b"WARNING: kept\n"], b"I1 am a rank's line\nWARNING: kept\n"),
    ([b"Info without an end"], b"Info without an end"),                         # flushed at EOF
])
def test_start_up_filter_drops_only_tensorflows_start_up_info_lines(chunks, shown):
    from lbsgd.rankstreams import StartUpFilter

    f = StartUpFilter()
    out = b"".join(f.feed(c) for c in chunks) + f.feed(b"", final=True)
    assert out == shown


def test_rankstreams_command_filters_a_stream(tmp_path):
    side = tmp_path / "others.txt"
    tagged = b"[1,0]<stdout>:zero\n[1,1]<stdout>:one\nplain\n"
    out = subprocess.run([sys.executable, "-m", "lbsgd.rankstreams", str(side)], input=tagged,
                         capture_output=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"zero\nplain\n"
    assert side.read_bytes() == b"[1,1]<stdout>:one\n"
