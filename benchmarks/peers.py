"""The peers side by side: what a Keras 3 user without lbsgd can run for data-parallel CPU training, against lbsgd (Codreanu et al. V-A).

    .venv/bin/python -m benchmarks.peers --setup    # the peers' environments (~3 min, PyPI)
    .venv/bin/python -m benchmarks.peers            # 3 alternating rounds, ResNet-20
    .venv/bin/python -m benchmarks.peers --plan     # what would run
    .venv/bin/python -m benchmarks.peers --smoke    # a few steps each: checks, measures nothing

Every peer trains lbsgd's own network (lbsgd.model.networks) on the same
synthetic data, input shape, local batch and optimizer (SGD 0.01, momentum
0.9), 2 processes with one thread each and no core binding (as horovodrun
runs lbsgd: -bind-to none); benchmarks/peer_worker.py is the one training
loop they share:

  lbsgd             lbsgd.parallel.DistributedOptimizer under launch/run.sh
  horovod_tf_keras  Horovod's own Keras layer through tf_keras (its only
                    working path: it is Keras-2 only) under launch/run.sh;
                    environment .venv-peers/tf_keras = lbsgd's .venv + tf_keras
  jax_dataparallel  Keras 3's keras.distribution.DataParallel on the JAX
                    backend, gloo CPU collectives; environment .venv-peers/jax
                    (jax[cpu] and lbsgd's Keras version)
  mwms              tf.distribute.MultiWorkerMirroredStrategy with Keras 3's
                    `fit`, on every TensorFlow stack present (.venv,
                    .venv-tf*); a failure is recorded as "fails: <error>"

The peers' environments are never part of lbsgd's install: --setup (or the
first measurement) creates them under .venv-peers/. In each round the peers
run one after the other in rotating order; each peer's ratio to lbsgd is
taken within a round (images/s peer / lbsgd), its spread over the rounds.
After the timing, the weights after the same few steps are compared with
lbsgd's where a peer runs the same math (averaged gradients of per-process
BN statistics: Horovod's layer; Keras-on-JAX's DataParallel normalises over
the global batch, so its difference is printed but not expected to be small).

Writes benchmarks/results/peers.{json,md}. Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.overlap import rotated  # noqa: E402
from benchmarks.run import _env, _json_line  # noqa: E402

PY = os.path.join(ROOT, ".venv", "bin", "python")
PEERS_DIR = os.path.join(ROOT, ".venv-peers")
PEERS = ("lbsgd", "horovod_tf_keras", "jax_dataparallel", "mwms")
MODELS = {"resnet20": dict(image_size=32, num_classes=10, local_batch=64, steps=20, warmup=3),
          "resnet50": dict(image_size=224, num_classes=1000, local_batch=8, steps=6, warmup=2)}
SMOKE = dict(image_size=32, num_classes=10, local_batch=16, steps=3, warmup=2)
WEIGHTS = dict(image_size=32, num_classes=10, local_batch=16, steps=3, warmup=1)
TIMEOUT = 1800
COMPLETE = ".lbsgd-peer-complete"   # written last: an interrupted --setup is redone


def _version(python: str, module: str) -> str:
    out = subprocess.run([python, "-c", f"import {module}; print({module}.__version__)"],
                         capture_output=True, text=True, env=_quiet(python))
    return out.stdout.strip()


def _quiet(python: str = PY) -> dict:
    # the JAX environment has no TensorFlow: its Keras must not look for its default backend
    jax = python == venv_python("jax_dataparallel")
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
            "KERAS_BACKEND": "jax" if jax else "tensorflow"}


def venv_python(peer: str) -> str:
    """The python a peer runs in (its own environment where it has one)."""
    own = {"horovod_tf_keras": "tf_keras", "jax_dataparallel": "jax"}.get(peer)
    return os.path.join(PEERS_DIR, own, "bin", "python") if own else PY


def tf_stacks() -> list[str]:
    """lbsgd's .venv and every .venv-tf* beside it: the stacks MWMS is tried on."""
    return [PY] + sorted(p for p in glob.glob(os.path.join(ROOT, ".venv-tf*", "bin", "python")))


def missing(peer: str) -> str:
    """Why a peer cannot run here ('' when it can)."""
    python = venv_python(peer)
    if python != PY and not os.path.exists(os.path.join(os.path.dirname(os.path.dirname(python)),
                                                        COMPLETE)):
        return f"no environment {os.path.relpath(os.path.dirname(os.path.dirname(python)), ROOT)}" \
               " (python -m benchmarks.peers --setup)"
    return ""


def setup(log) -> None:
    """Creates the peers' environments that are missing (downloads from PyPI)."""
    keras_version = _version(PY, "keras")
    tf_version = _version(PY, "tensorflow")
    jax_env = os.path.join(PEERS_DIR, "jax")
    if missing("jax_dataparallel"):
        log(f"creating {os.path.relpath(jax_env, ROOT)}: jax[cpu], keras=={keras_version}")
        _make_venv(jax_env, ["jax[cpu]", f"keras=={keras_version}", "numpy", "absl-py"])
        open(os.path.join(jax_env, COMPLETE), "w").close()
    tfk_env = os.path.join(PEERS_DIR, "tf_keras")
    if missing("horovod_tf_keras"):
        log(f"creating {os.path.relpath(tfk_env, ROOT)}: lbsgd's .venv + tf_keras=={tf_version}")
        _make_venv(tfk_env, [])
        site = subprocess.run([PY, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        own = subprocess.run([venv_python("horovod_tf_keras"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
        with open(os.path.join(own, "lbsgd_venv.pth"), "w") as f:
            f.write(site + "\n")
        # tf_keras asks for the `tensorflow` package; lbsgd's venv has `tensorflow-cpu`.
        _pip(tfk_env, ["--no-deps", f"tf_keras=={tf_version}"])
        open(os.path.join(tfk_env, COMPLETE), "w").close()


def _make_venv(path: str, packages: list[str]) -> None:
    """A venv at `path` with `packages`; complete once its marker file exists."""
    subprocess.run(["rm", "-rf", path], check=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    subprocess.run([PY, "-m", "venv", path], check=True)
    if packages:
        _pip(path, packages)


def _pip(env: str, packages: list[str]) -> None:
    proc = subprocess.run([os.path.join(env, "bin", "python"), "-m", "pip", "install", "-q",
                           "--disable-pip-version-check", *packages],
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"pip install {' '.join(packages)} into {env} failed:\n"
                           f"{proc.stderr[-2000:]}")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker_args(peer: str, model: str, spec: dict, weights_out: str = "") -> list[str]:
    args = [os.path.join(ROOT, "benchmarks", "peer_worker.py"), f"--peer={peer}",
            f"--model={model}", f"--local_batch={spec['local_batch']}",
            f"--image_size={spec['image_size']}", f"--num_classes={spec['num_classes']}",
            f"--steps={spec['steps']}", f"--warmup_steps={spec['warmup']}"]
    return args + ([f"--weights_out={weights_out}"] if weights_out else [])


def _error(text: str) -> str:
    """The line that names a failure: the last exception line of a traceback."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ("Error" in ln or "Exception" in ln) and not ln.startswith("File "):
            return ln[:300]
    return (lines[-1] if lines else "no output")[:300]


def job(peer: str, model: str, spec: dict, python: str = "", processes: int = 2,
        weights_out: str = "") -> dict:
    """One peer's 2-process job: its record, or {"fails": <error line>}."""
    python = python or venv_python(peer)
    args = _worker_args(peer, model, spec, weights_out)
    env = _env(**{"PYTHONPATH": ROOT})
    if peer in ("lbsgd", "horovod_tf_keras"):
        cmds = [[os.path.join(ROOT, "launch", "run.sh"), "-np", str(processes), python, *args]]
        envs = [env]
    else:
        ports = [_port() for _ in range(processes)]
        cmds, envs = [], []
        for i in range(processes):
            e = dict(env)
            if peer == "jax_dataparallel":
                e.update(PEER_PROCESS_ID=str(i), PEER_NUM_PROCESSES=str(processes),
                         PEER_COORDINATOR=f"127.0.0.1:{ports[0]}")
            else:
                e["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}"
                                                                    for p in ports]},
                                             "task": {"type": "worker", "index": i}})
                e.update(PEER_PROCESS_ID=str(i), PEER_NUM_PROCESSES=str(processes))
            cmds.append([python, *args])
            envs.append(e)
    with tempfile.TemporaryDirectory() as tmp:
        logs = [tuple(open(os.path.join(tmp, f"{i}.{kind}"), "w+") for kind in ("out", "err"))
                for i in range(len(cmds))]
        procs = [subprocess.Popen(c, cwd=ROOT, env=e, stdout=o, stderr=r, text=True,
                                  start_new_session=True)
                 for c, e, (o, r) in zip(cmds, envs, logs)]
        deadline = time.monotonic() + TIMEOUT
        # One process failing ends the others: a peer's survivor can wait forever in a
        # collective.
        while any(p.poll() is None for p in procs):
            if any(p.returncode for p in procs if p.poll() is not None) \
                    or time.monotonic() > deadline:
                for p in procs:
                    if p.poll() is None:
                        os.killpg(p.pid, 9)
                        p.wait()
                break
            time.sleep(0.5)
        outs = []
        for o, r in logs:
            o.seek(0)
            r.seek(0)
            outs.append((o.read(), r.read()))
            o.close()
            r.close()
    failed = [(p.returncode, out + err) for p, (out, err) in zip(procs, outs) if p.returncode
              and p.returncode != -9]
    if failed:
        return {"fails": _error(failed[0][1])}
    if any(p.returncode for p in procs):
        return {"fails": f"no result within {TIMEOUT} s"}
    return _json_line(outs[0][0])


def summarise(rounds: list[dict]) -> dict:
    """{peer: images/s and ratio to lbsgd (median, min, max over rounds)} or its failure."""
    out = {}
    for peer in rounds[0]:
        recs = [r[peer] for r in rounds]
        fails = [r["fails"] for r in recs if "fails" in r]
        if fails:
            out[peer] = {"fails": fails[0], "failed_rounds": len(fails)}
            continue
        ips = [r["images_per_second"] for r in recs]
        entry = {"images_per_second": _stats(ips)}
        if peer != "lbsgd" and all("fails" not in r["lbsgd"] for r in rounds):
            entry["ratio_to_lbsgd"] = _stats([r[peer]["images_per_second"]
                                              / r["lbsgd"]["images_per_second"]
                                              for r in rounds])
        out[peer] = entry
    return out


def _stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": values}


def weight_difference(a: str, b: str, kind: str = "trainable") -> float:
    """max|a - b| over the `kind` tensors ("trainable" or "state": the BN moving statistics),
    relative to the largest |b| among them (b: lbsgd's weights). One scale for all: a
    per-tensor ratio blows float rounding up in tensors near zero (BN betas after 4 steps
    of 3e-8: 1e-10 apart, "3e-3")."""
    import numpy as np
    with np.load(a) as wa, np.load(b) as wb:
        if sorted(wa.files) != sorted(wb.files):
            raise ValueError(f"{a} holds {len(wa.files)} tensors, {b} {len(wb.files)}")
        diff = scale = 0.0
        for k in wb.files:
            if not k.startswith(kind + "_"):
                continue
            x, y = wa[k], wb[k]
            if x.shape != y.shape:
                raise ValueError(f"tensor {k}: shape {x.shape} against {y.shape}")
            diff = max(diff, float(np.max(np.abs(x - y), initial=0.0)))
            scale = max(scale, float(np.max(np.abs(y), initial=0.0)))
        return diff / max(scale, 1e-12)


def markdown(res: dict) -> str:
    lines = [f"# The peers side by side ({res['date']}, commit {res['commit']})", "",
             f"Command: `{res['command']}` - {res['minutes']:.1f} min, every number from "
             "this one run.", "",
             f"{res['model']}, {res['spec']['image_size']}x{res['spec']['image_size']}, local "
             f"batch {res['spec']['local_batch']}, 2 processes x 1 thread on 2 cores, "
             f"{res['rounds']} rounds in rotating order; images/s of the median step "
             f"({res['spec']['steps']} timed after {res['spec']['warmup']}).", "",
             "| peer | stack | img/s (median, range) | ratio to lbsgd (median, range) |",
             "| --- | --- | --- | --- |"]
    for name, entry in res["summary"].items():
        stack = res["stacks"].get(name, "")
        if "fails" in entry:
            lines.append(f"| {name} | {stack} | fails: {entry['fails']} | |")
            continue
        ips = entry["images_per_second"]
        cell = f"{ips['median']:.1f} ({ips['min']:.1f}-{ips['max']:.1f})"
        ratio = entry.get("ratio_to_lbsgd")
        rcell = (f"{ratio['median']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})"
                 if ratio else "1")
        lines.append(f"| {name} | {stack} | {cell} | {rcell} |")
    for name, why in res.get("skipped", {}).items():
        lines.append(f"| {name} | | not run: {why} | |")
    if res.get("weights"):
        lines += ["", "Weights after the same steps (resnet20, local batch "
                  f"{WEIGHTS['local_batch']}, {WEIGHTS['warmup'] + WEIGHTS['steps']} steps), "
                  "max|w - w_lbsgd| / max|w_lbsgd|, the trainable "
                  "weights and the BN moving statistics apart (lbsgd averages those over "
                  "ranks at each epoch end; Horovod's layer keeps each rank's own):", ""]
        for name, w in res["weights"].items():
            lines.append(f"* {name}: {w}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20", choices=sorted(MODELS))
    parser.add_argument("--peers", default=",".join(PEERS),
                        help="comma-separated; lbsgd always runs (the reference)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--setup", action="store_true",
                        help="create the peers' environments that are missing, then stop")
    parser.add_argument("--plan", action="store_true", help="print what would run, run nothing")
    parser.add_argument("--smoke", action="store_true",
                        help="a few steps of a small batch per peer present: checks, measures "
                             "nothing, writes nothing")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "peers"))
    args = parser.parse_args(argv)
    peers = ["lbsgd"] + [p for p in args.peers.split(",") if p and p != "lbsgd"]
    bad = [p for p in peers if p not in PEERS]
    if bad:
        parser.error(f"argument --peers: {', '.join(bad)} not one of {', '.join(PEERS)} "
                     f"(given {args.peers!r})")
    if args.rounds < 1 or (args.rounds < 2 and not args.smoke):
        parser.error(f"argument --rounds must be >= 2 (a spread). Received: {args.rounds}")
    t0 = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    if args.setup and args.plan:
        todo = [p for p in ("jax_dataparallel", "horovod_tf_keras") if missing(p)]
        print(f"peers setup: {len(todo)} environments to do")
        for p in todo:
            print(f"  {p}: {os.path.relpath(os.path.dirname(os.path.dirname(venv_python(p))), ROOT)}")
        return 0
    if args.setup:
        setup(log)
        for p in peers:
            log(f"{p}: {missing(p) or venv_python(p)}")
        return 0
    skipped = {p: missing(p) for p in peers if missing(p)}
    runs = []   # (name, peer, python)
    for p in peers:
        if p in skipped:
            continue
        if p == "mwms":
            for py in tf_stacks():
                stack = os.path.basename(os.path.dirname(os.path.dirname(py)))
                runs.append((f"mwms ({stack})", p, py))
        else:
            runs.append((p, p, venv_python(p)))
    spec = SMOKE if args.smoke else MODELS[args.model]
    if args.plan:
        print(f"peers: {args.model} local batch {spec['local_batch']}, {args.rounds} rounds x "
              f"{len(runs)} jobs, then the weights check")
        for name, _, py in runs:
            print(f"  {name}: {os.path.relpath(py, ROOT)}")
        for p, why in skipped.items():
            print(f"  {p}: skipped, {why}")
        return 0
    for p, why in skipped.items():
        log(f"{p}: skipped, {why}")
    stacks = {name: f"{_stack(py, peer)}" for name, peer, py in runs}
    rounds = []
    for r in range(args.rounds):
        got = {}
        for name, peer, py in rotated(runs, r):
            got[name] = job(peer, args.model, spec, py)
            log(f"round {r + 1} {name}: " + (f"fails: {got[name]['fails']}" if "fails" in
                                              got[name] else
                                              f"{got[name]['images_per_second']:.1f} img/s"))
        rounds.append({name: got[name] for name, _, _ in runs})
    weights = {}
    compared = [(n, p, py) for n, p, py in runs if p not in ("lbsgd", "mwms")]
    with tempfile.TemporaryDirectory() as tmp:
        ref = os.path.join(tmp, "lbsgd.npz")
        base = job("lbsgd", "resnet20", WEIGHTS, weights_out=ref) if compared else {}
        for name, peer, py in compared:
            if "fails" in base:
                weights[name] = f"not compared: lbsgd's run failed ({base['fails']})"
                continue
            out = os.path.join(tmp, f"{peer}.npz")
            rec = job(peer, "resnet20", WEIGHTS, py, weights_out=out)
            weights[name] = (f"fails: {rec['fails']}" if "fails" in rec else
                             f"trainable {weight_difference(out, ref):.2e}, BN statistics "
                             f"{weight_difference(out, ref, 'state'):.2e}"
                             + (" (BN over the global batch: not the same math)"
                                if peer == "jax_dataparallel" else ""))
            log(f"weights {name}: {weights[name]}")
    res = {"command": "python -m benchmarks.peers " + " ".join(argv or sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d", time.gmtime()),
           "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip(),
           "model": args.model, "spec": spec, "rounds": args.rounds, "stacks": stacks,
           "skipped": skipped, "measurements": rounds, "summary": summarise(rounds),
           "weights": weights, "minutes": (time.perf_counter() - t0) / 60}
    text = markdown(res)
    print(text)
    if args.smoke:
        failed = [n for n, e in res["summary"].items() if "fails" in e and not n.startswith("mwms")]
        return 1 if failed else 0
    from lbsgd.run import checkpoint as ckpt
    ckpt.atomic_write_json(args.out + ".json", res)
    tmp = args.out + ".md.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, args.out + ".md")
    return 0


def _stack(python: str, peer: str) -> str:
    if peer == "jax_dataparallel":
        return f"keras {_version(python, 'keras')}, jax {_version(python, 'jax')}"
    if peer == "horovod_tf_keras":
        return (f"tf_keras {_version(python, 'tf_keras')}, horovod "
                f"{_version(python, 'horovod')}")
    return (f"keras {_version(python, 'keras')}, tensorflow {_version(python, 'tensorflow')}"
            + (f", horovod {_version(python, 'horovod')}" if peer == "lbsgd" else ""))


if __name__ == "__main__":
    sys.exit(main())
