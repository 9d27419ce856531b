"""The launcher of a horovodrun job: its plan before any rank starts, and the job's supervision (many hosts, both papers).

* `plan`: horovodrun's arguments and the program, hosts, network interface,
  job id and heartbeat names (pure decisions)
* `job`: the console filter, signal forwarding, the guard that ends a job
  whose launcher is gone, remote clean-up

The command is `python -m lbsgd.launch` (what `launch/run.sh` runs).
"""

from lbsgd._exports import lazy

_WHERE: dict = {}
__getattr__, __dir__ = lazy(__name__, _WHERE)
