"""A scaling model of data-parallel SGD time per epoch and time to accuracy (Codreanu et al. V-A,
Tables V, XII-XIII; Lee et al. IV-B, VI-B).

Time per optimizer step on P workers with local batch b:

    t_step(b, P) = t0 + b * t_sample + (1 - overlap) * t_allreduce(P)
    t_allreduce(P) = 2 (P - 1) latency + 2 (P - 1) / P * M / bandwidth      (ring allreduce)

with t0 a fixed per-step cost, t_sample the compute time per sample, M the
gradient bytes, latency the seconds per message and bandwidth the bytes per second.
Time per epoch = N / (b P) * t_step; time to accuracy = epochs needed x time
per epoch (Tables XII-XIII). :func:`fit_table` calibrates the model on some
rows of a (local batch, P, seconds per epoch) table — the exposed
communication is fitted as A (P - 1) + B (P - 1) / P, i.e. (1 - overlap) x
the ring cost — and :func:`predict` gives the others.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lbsgd.config import IMAGENET_TRAIN_EXAMPLES as IMAGENET_TRAIN

RESNET50_GRADIENT_BYTES = 25_557_032 * 4

# Codreanu et al. Table V (Stampede2, KNL): local batch, nodes, seconds per epoch.
TABLE_V = [(16, 256, 102.0), (32, 256, 85.0), (16, 512, 60.0), (20, 512, 55.0),
           (24, 512, 51.3), (32, 512, 48.8), (16, 768, 38.0), (16, 1024, 31.5),
           (32, 1024, 24.5), (32, 1536, 16.8)]
# Table VI (MareNostrum 4, Skylake): local batch, CPUs, seconds per epoch.
TABLE_VI = [(32, 512, 84.3), (24, 800, 62.5), (16, 800, 67.2), (16, 1024, 52.5)]
# Table XII's epoch budgets for each top-1 level (the collapsed-ensemble schedule).
EPOCHS_TO_TOP1 = {0.755: 48, 0.76: 64, 0.765: 78}


def ring_allreduce_seconds(num_workers: int, num_bytes: float, latency: float,
                           bandwidth: float) -> float:
    """latency-bandwidth cost of a ring allreduce: 2(P-1) latency + 2(P-1)/P bytes/bandwidth."""
    p = num_workers
    if p <= 1:
        return 0.0
    return 2 * (p - 1) * latency + 2 * (p - 1) / p * num_bytes / bandwidth


@dataclasses.dataclass
class ScalingModel:
    """Step-time model (see the module docstring); seconds and samples."""

    t0: float
    t_sample: float
    comm_latency: float = 0.0     # A: exposed seconds per extra worker ((1-overlap) 2 latency)
    comm_volume: float = 0.0      # B: exposed bandwidth seconds ((1-overlap) 2M/bandwidth)
    num_train: int = IMAGENET_TRAIN

    @classmethod
    def from_machine(cls, t0: float, t_sample: float, gradient_bytes: float, latency: float,
                     bandwidth: float, overlap: float = 0.0, num_train: int = IMAGENET_TRAIN):
        """From measured compute times and latency-bandwidth network figures."""
        if not 0 <= overlap <= 1:
            raise ValueError(f"Argument `overlap` must be in [0, 1]. Received: overlap={overlap}")
        return cls(t0, t_sample, (1 - overlap) * 2 * latency,
                   (1 - overlap) * 2 * gradient_bytes / bandwidth, num_train)

    def step_seconds(self, local_batch: int, workers: int) -> float:
        p = workers
        exposed = self.comm_latency * (p - 1) + self.comm_volume * (p - 1) / p
        return self.t0 + local_batch * self.t_sample + exposed

    def epoch_seconds(self, local_batch: int, workers: int) -> float:
        return self.num_train / (local_batch * workers) * self.step_seconds(local_batch, workers)

    def images_per_second(self, local_batch: int, workers: int) -> float:
        return local_batch * workers / self.step_seconds(local_batch, workers)

    def efficiency(self, local_batch: int, workers: int) -> float:
        """Weak-scaling efficiency against one worker at the same local batch."""
        return self.step_seconds(local_batch, 1) / self.step_seconds(local_batch, workers)

    def time_to_accuracy(self, local_batch: int, workers: int, epochs: float) -> float:
        """Seconds to run `epochs` epochs (Tables XII-XIII's projection)."""
        return epochs * self.epoch_seconds(local_batch, workers)


def fit_table(rows, num_train: int = IMAGENET_TRAIN) -> ScalingModel:
    """Least-squares fit of the step-time model to (local batch, workers, s/epoch) rows.

    Fits in relative terms (each row weighted by 1 / its step time), so small
    and large runs count alike, with every term >= 0 (non-negative least
    squares: a physical model, not a curve through the points). Needs >= 4
    rows with >= 2 local batches and >= 2 worker counts.
    """
    from scipy.optimize import nnls

    rows = [(int(b), int(p), float(t)) for b, p, t in rows]
    if len(rows) < 4 or len({b for b, _, _ in rows}) < 2 or len({p for _, p, _ in rows}) < 2:
        raise ValueError("Argument `rows` must hold >= 4 rows with >= 2 local batch sizes and "
                         f">= 2 worker counts. Received: rows={rows}")
    design, target = [], []
    for b, p, t in rows:
        step = t * b * p / num_train
        design.append([1.0 / step, b / step, (p - 1) / step, (p - 1) / p / step])
        target.append(1.0)
    coef, _ = nnls(np.array(design), np.array(target))
    return ScalingModel(*[float(c) for c in coef], num_train=num_train)


def predict(model: ScalingModel, rows) -> list[dict]:
    """Per row: measured and predicted seconds per epoch and the relative error."""
    out = []
    for b, p, t in rows:
        pred = model.epoch_seconds(b, p)
        out.append({"local_batch": b, "workers": p, "measured": t, "predicted": pred,
                    "error": (pred - t) / t})
    return out


def holdout_report(rows=TABLE_V, calibrate=(0, 1, 7, 8, 9)) -> tuple[ScalingModel, list[dict]]:
    """Calibrates on the rows at indices `calibrate`; predicts every row.

    The default calibration rows are Table V's 256- and 1024/1536-node runs
    (local batch 16 and 32); the held-out rows are the 512- and 768-node runs
    and the local batches 20 and 24 the model never saw.
    """
    model = fit_table([rows[i] for i in calibrate])
    report = predict(model, rows)
    for i, r in enumerate(report):
        r["held_out"] = i not in calibrate
    return model, report


def format_report(report) -> str:
    lines = ["| local batch | workers | measured s/epoch | predicted | error | held out |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in report:
        lines.append(f"| {r['local_batch']} | {r['workers']} | {r['measured']:.1f} | "
                     f"{r['predicted']:.1f} | {100 * r['error']:+.1f}% | "
                     f"{'yes' if r.get('held_out') else 'no'} |")
    held = [abs(r["error"]) for r in report if r.get("held_out")]
    if held:
        lines.append(f"\nHeld-out rows: mean |error| {100 * sum(held) / len(held):.1f}%, "
                     f"max {100 * max(held):.1f}%.")
    return "\n".join(lines)


# Horovod's small-allreduce time measured on this host kind, 2 ranks: ~1 ms = 2 latency.
DEFAULT_LATENCY = 5e-4
GRADIENT_BYTES = {"resnet50": RESNET50_GRADIENT_BYTES}


def machine_model(results: dict, latency: float = DEFAULT_LATENCY,
                  bandwidth: float | None = None,
                  num_train: int = IMAGENET_TRAIN) -> tuple[ScalingModel, dict]:
    """The model of the machine a `benchmarks.run` result file measured.

    t_sample = the 1 rank x 1 core step time / local batch (t0 = 0); bandwidth from
    the grouped exchange's communication time per step in Horovod's timeline
    (c = 2(P-1) latency + 2(P-1)/P M / bandwidth), unless given; no overlap (a
    grouped allreduce runs after backprop). Returns the model and the check
    against the same run's N-rank launcher throughput.
    """
    ex = [r for r in results.get("exchanges", [])
          if r["exchange"] == "grouped" and r.get("compression", "none") == "none"]
    if not ex or ex[0]["model"] not in GRADIENT_BYTES:
        raise ValueError("Argument `results` must hold a grouped-exchange row of a model in "
                         f"{sorted(GRADIENT_BYTES)}. Received: exchanges of "
                         f"{[r['model'] for r in results.get('exchanges', [])]}")
    ex = ex[0]
    name, b, p = ex["model"], ex["local_batch"], ex["ranks"]
    rows = {r["setup"]: r for r in results["throughput"]
            if r["model"] == name and r["local_batch"] == b}
    one = rows["1 rank x 1 core"]
    t_sample = one["seconds_per_step"] / b
    m_bytes = GRADIENT_BYTES[name]
    if bandwidth is None:
        bandwidth_seconds = ex["comm_seconds_per_step"] - 2 * (p - 1) * latency
        if bandwidth_seconds <= 0:
            raise ValueError(f"Argument `latency` leaves no time for bandwidth: "
                             f"comm {ex['comm_seconds_per_step']:.4f} s <= 2(P-1) latency. "
                             f"Received: latency={latency}")
        bandwidth = 2 * (p - 1) / p * m_bytes / bandwidth_seconds
    model = ScalingModel.from_machine(0.0, t_sample, m_bytes, latency, bandwidth,
                                      num_train=num_train)
    measured = [r for k, r in rows.items() if k.endswith("lbsgd launcher")][0]
    check = {"model": name, "local_batch": b, "workers": p, "t_sample": t_sample,
             "latency": latency, "bandwidth": bandwidth,
             "measured_images_per_second": measured["images_per_second"],
             "predicted_images_per_second": model.images_per_second(b, p)}
    check["error"] = (check["predicted_images_per_second"] /
                      check["measured_images_per_second"] - 1)
    return model, check


def many_hosts_report(results: dict, project=(16, 64)) -> list[dict]:
    """Predicted against measured throughput of a `benchmarks.many_hosts` result.

    For each link setting and model: the model of the network is t_sample = one host's
    seconds per step / local batch (t0 = 0, one rank per host), the gradient bytes M of
    the model, and the latency and bandwidth measured by `benchmarks.allreduce` through
    that link; no overlap (a grouped allreduce after backprop). Gives the predicted and
    measured images/s of the benchmark's hosts, the error, and the projection to `project`
    hosts. Where the result holds the hosts' step time computing together without any
    exchange ("compute_only"), the same prediction from that step time is given too
    ("predicted_from_compute_only"): its error is the network model's alone, without what
    hosts sharing one machine cost each other.
    """
    hosts = int(results["hosts"])
    single = {r["model"]: r for r in results["single_host"]}
    together = {r["model"]: r for r in results.get("compute_only", [])}
    rows = []
    for link in results["links"]:
        latency, bandwidth = link["allreduce"]["latency"], link["allreduce"]["bandwidth"]
        for measured in link["throughput"]:
            one = single[measured["model"]]
            b, m_bytes = int(one["local_batch"]), one["gradient_bytes"]
            model = ScalingModel.from_machine(0.0, one["seconds_per_step"] / b, m_bytes,
                                              latency, bandwidth)
            row = {"link": link["link"], "model": measured["model"], "local_batch": b,
                   "latency": latency, "bandwidth": bandwidth, "gradient_bytes": m_bytes,
                   "single_host_images_per_second": one["images_per_second"],
                   "single_host_runs": one.get("images_per_second_runs",
                                               [one["images_per_second"]]),
                   "hosts": hosts, "measured": measured["images_per_second"],
                   "measured_runs": measured.get("images_per_second_runs",
                                                 [measured["images_per_second"]]),
                   "predicted": model.images_per_second(b, hosts),
                   "projection": {str(p): {"images_per_second": model.images_per_second(b, p),
                                           "efficiency": model.efficiency(b, p)}
                                  for p in project}}
            row["error"] = row["predicted"] / row["measured"] - 1
            if measured["model"] in together:
                step = together[measured["model"]]["seconds_per_step"]
                row["compute_only_images_per_second"] = hosts * b / step
                row["predicted_from_compute_only"] = ScalingModel.from_machine(
                    0.0, step / b, m_bytes, latency, bandwidth).images_per_second(b, hosts)
                row["error_from_compute_only"] = (row["predicted_from_compute_only"] /
                                                  row["measured"] - 1)
            rows.append(row)
    return rows


def _spread(median: float, runs) -> str:
    """"211.92 (189.42-223.74)": the median and the range of the runs, when there are several."""
    return (f"{median:.2f} ({min(runs):.2f}-{max(runs):.2f})" if len(runs) > 1
            else f"{median:.2f}")


def format_many_hosts(rows) -> str:
    """The README table of :func:`many_hosts_report` (Markdown): images/s as the median and
    the range of the runs."""
    projected = list(rows[0]["projection"]) if rows else []
    hosts = rows[0]["hosts"] if rows else 2
    head = ("| link | latency | bandwidth | model (local batch) | 1 host img/s | "
            f"{hosts} hosts measured | predicted | error | predicted from {hosts}-host "
            "compute | error | " +
            " | ".join(f"{p} hosts (efficiency)" for p in projected) + " |")
    lines = [head, "|" + " --- |" * (10 + len(projected))]
    for r in rows:
        cells = " | ".join(f"{q['images_per_second']:.1f} ({100 * q['efficiency']:.0f}%)"
                           for q in r["projection"].values())
        together = (f"{r['predicted_from_compute_only']:.2f} | "
                    f"{100 * r['error_from_compute_only']:+.1f}%"
                    if "predicted_from_compute_only" in r else "- | -")
        lines.append(f"| {r['link']} | {r['latency'] * 1e6:.0f} us | "
                     f"{r['bandwidth'] / 1e9:.3f} GB/s | "
                     f"{r['model']} ({r['local_batch']}) | "
                     f"{_spread(r['single_host_images_per_second'], r['single_host_runs'])} | "
                     f"{_spread(r['measured'], r['measured_runs'])} | "
                     f"{r['predicted']:.2f} | {100 * r['error']:+.1f}% | {together} | "
                     f"{cells} |")
    return "\n".join(lines)
