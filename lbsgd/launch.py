"""`python -m lbsgd.launch`: the launcher of an lbsgd job under horovodrun (`launch/run.sh` runs it).

    launch/run.sh -np 2 python -m lbsgd.train --config configs/digits_resnet.py
    launch/run.sh -np 8 -H node1:4,node2:4 python -m lbsgd.train --config ...

Everything before the program (the first python interpreter) goes to
horovodrun (-np, -H, --hostfile, --gloo/--mpi, ...). Before any rank starts
the launcher decides the job (:mod:`lbsgd.launcher.plan`: hosts, network
interface, job id), refuses a bad command line in one line, and validates an
`lbsgd.train` config once for the job's number of ranks; then it runs the
job (:mod:`lbsgd.launcher.job`: console, signals, the guard, remote clean-up).
Serves the many-host runs of both papers (Codreanu et al. V; Lee et al. IV).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys

from lbsgd.errors import ConfigError
from lbsgd.launcher import job
from lbsgd.launcher import plan as _plan

USAGE = ("usage: launch/run.sh [horovodrun options] python PROGRAM ...\n"
         "       (python -m lbsgd.launch [horovodrun options] python PROGRAM ...)")


def __getattr__(name):          # the planning names, as `lbsgd.launch.<name>` before
    return getattr(_plan, name)


def _refuse(err: ConfigError) -> int:
    text = str(err)
    print(text if text.startswith(job.PREFIX) else f"{job.PREFIX}: error: {text}", file=sys.stderr)
    return 2


def _validate(p: "_plan.Plan") -> int:
    """An lbsgd.train config checked once, for the job's ranks, before any rank starts."""
    if "lbsgd.train" not in p.prog:
        return 0
    env = {k: v for k, v in job.job_environment(p).items() if k != "LBSGD_JOB_ID"}
    return subprocess.run([*p.prog, "--validate_only", f"--validate_ranks={p.np}"],
                          stdout=subprocess.DEVNULL, env=env).returncode


def _announce_hosts(p: "_plan.Plan") -> None:
    if not p.remote_hosts:
        return
    hosts = f"{len(p.remote_hosts)} remote host(s) ({' '.join(p.remote_hosts)})"
    if p.nic:
        job.say(f"{hosts} over network interface {p.nic} ({p.nic_reason})")
    else:
        job.say(f"{hosts}; no route found: horovodrun picks the interface")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--guard"] and len(argv) in (4, 5):
        return job.guard(int(argv[1]), argv[2], int(argv[3]), *argv[4:])
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE + "\n\n" + __doc__.split("\n")[0], file=sys.stderr)
        return 0 if argv else 2
    try:
        p = _plan.plan(argv, launcher_pid=os.getpid())
    except ConfigError as err:
        return _refuse(err)
    if shutil.which("horovodrun") is None:
        job.say("horovodrun not found; run 'bash launch/install.sh' first")
        return 2
    if any(arg in ("-h", "--help") for arg in p.prog):   # the program's help, no rank started
        os.execvpe(p.prog[0], p.prog, {**job.DEFAULTS, **os.environ})
    rc = _validate(p)
    if rc:
        return rc
    _announce_hosts(p)
    if "lbsgd.train" not in p.prog:
        return job.run(p)
    return _run_growing(p)


def _run_growing(p: "_plan.Plan") -> int:
    """The job, restarted on more ranks each time lbsgd.train asks (adaptive.max_ranks,
    Lee et al. IV-A): from its checkpoint, with `--resume`, on the same hosts."""
    import tempfile

    from lbsgd.adaptive import ranks

    with tempfile.TemporaryDirectory(prefix="lbsgd-relaunch-") as tmp:
        p = dataclasses.replace(p, relaunch_file=os.path.join(tmp, "request.json"))
        while True:
            rc = job.run(p)
            request = ranks.read_request(p.relaunch_file)
            if rc != 0 or request is None:    # done, or failed: the job's own exit code
                return rc
            os.remove(p.relaunch_file)
            job.say(f"the batch grew to {request['batch']} after epoch {request['epoch']}: "
                    f"restarting on {request['np']} ranks (was {request['from_ranks']}) from "
                    f"the checkpoint")
            prog = [p.prog[0], "-m", "lbsgd.train", *request["args"]]
            p = _plan.with_ranks(p, int(request["np"]), prog)
            os.environ[ranks.RELAUNCHED_ENV] = repr(request["exited_at"])
            rc = _validate(p)
            if rc:
                return rc


if __name__ == "__main__":
    sys.exit(main())
