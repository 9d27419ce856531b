"""Input pipeline headroom: lbsgd's training pipelines alone against what the training step consumes (Codreanu et al. IV-A, V-B).

    .venv/bin/python -m benchmarks.pipeline            # both pipelines, their models' demand
    .venv/bin/python -m benchmarks.pipeline --smoke    # a few batches: checks, measures nothing

Each pipeline is lbsgd.data.pipeline.train_dataset, exactly as training
builds it (per-example seeds, decode, augmentation, batching, prefetch),
timed alone on 1 thread and on all cores (tf.data's private thread pool):

  imagenet_folder  the "folder" source (the ImageNet-style one): JPEGs of
                   500x375 held encoded in RAM (as the paper copies ImageNet
                   to RAM), decoded, Inception scale/aspect crop to 224,
                   flip; generated here (nothing is downloaded)
  cifar_arrays     32x32 images in RAM (CIFAR-10, Fashion-MNIST style):
                   pad-and-crop, flip

and the model it feeds (ResNet-50 at 224, ResNet-20 at 32) trained through
benchmarks.throughput on 1 rank x all cores (the machine's demand: every
rank's pipeline shares the machine's cores). Per pipeline:

  per-core rate  images/s on one thread
  core share     demand / per-core rate: the cores the pipeline takes away
                 from training at full speed
  headroom       images/s on all cores / demand

Writes benchmarks/results/pipeline.{json,md}. Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
sys.path.insert(0, ROOT)

PIPELINES = {
    "imagenet_folder": dict(model="resnet50", image_size=224, num_classes=1000, local_batch=8,
                            images=512, steps=6, warmup=2),
    "cifar_arrays": dict(model="resnet20", image_size=32, num_classes=10, local_batch=64,
                         images=8192, steps=20, warmup=3),
}
SMOKE = {"imagenet_folder": dict(PIPELINES["imagenet_folder"], images=32, steps=2, warmup=1,
                                 image_size=64),
         "cifar_arrays": dict(PIPELINES["cifar_arrays"], images=256, steps=2, warmup=1)}


def make_jpeg_folder(root: str, images: int, seed: int = 0, size=(375, 500)) -> str:
    """`images` JPEGs (quality 90, about ImageNet's mean size) under root/train/<class>/, 16
    under root/val/<class>/, 2 classes: smooth random fields with noise, so they compress
    like photographs rather than like pure noise."""
    import numpy as np
    import tensorflow as tf
    rng = np.random.default_rng(seed)
    h, w = size
    for split, n in (("train", images), ("val", 16)):
        for i in range(n):
            d = os.path.join(root, split, f"c{i % 2}")
            os.makedirs(d, exist_ok=True)
            coarse = rng.random((h // 25 + 1, w // 25 + 1, 3)).astype(np.float32)
            img = tf.image.resize(coarse[None], [h, w], method="bicubic")[0].numpy()
            img = np.clip(img * 200 + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
            tf.io.write_file(os.path.join(d, f"{i}.jpg"), tf.io.encode_jpeg(img, quality=90))
    return root


def source_of(name: str, spec: dict, data_dir: str):
    from lbsgd.config import DataConfig
    from lbsgd.data import sources
    if name == "imagenet_folder":
        cfg = DataConfig(name="folder", data_dir=data_dir, image_size=spec["image_size"],
                         augment="scale_aspect", flip=True, cache=True)
    else:
        cfg = DataConfig(name="synthetic", image_size=spec["image_size"], augment="crop",
                         flip=True, num_train=spec["images"])
    return sources.load_source(cfg, seed=0)


def pipeline_rate(source, local_batch: int, threads: int, batches: int) -> float:
    """Images/s of lbsgd's training pipeline alone on `threads` threads, after a warm-up
    of 2 batches; it repeats epochs as long as needed."""
    import tensorflow as tf
    from lbsgd.data import pipeline
    epochs = math.ceil((batches + 2) * local_batch / source.num_train) + 1
    ds = pipeline.train_dataset(source, local_batch, 0, 0, 1, 0, epochs)
    opts = tf.data.Options()
    opts.threading.private_threadpool_size = threads
    opts.threading.max_intra_op_parallelism = 1
    it = iter(ds.with_options(opts))
    for _ in range(2):
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * local_batch / (time.perf_counter() - t)


def demand(spec: dict, cores: int) -> dict:
    """The model's training images/s on 1 rank x all cores (benchmarks.throughput)."""
    from benchmarks.run import throughput
    return throughput(spec["model"], spec["local_batch"],
                      dict(image_size=spec["image_size"], num_classes=spec["num_classes"],
                           steps=spec["steps"], warmup=spec["warmup"]), threads=cores)


def _rates(name: str, spec: dict, cores: int, batches: int) -> dict:
    """Both thread counts of one pipeline, in a fresh process (its own thread pools)."""
    code = (f"import json, sys; sys.path.insert(0, {ROOT!r}); import tempfile; "
            f"from benchmarks import pipeline as P; spec = {spec!r}; "
            f"d = tempfile.mkdtemp(); "
            f"d = P.make_jpeg_folder(d, spec['images']) if {name!r} == 'imagenet_folder' "
            f"else d; s = P.source_of({name!r}, spec, d); "
            f"print(json.dumps({{'one': P.pipeline_rate(s, spec['local_batch'], 1, {batches}), "
            f"'all': P.pipeline_rate(s, spec['local_batch'], {cores}, {batches})}}))")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([PY, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode:
        raise RuntimeError(f"pipeline {name} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(smoke: bool = False, log=print, demands: dict | None = None) -> dict:
    """Each pipeline's rates and its model's demand (measured here unless `demands` gives
    the model's images/s on 1 rank x all cores, e.g. from the same benchmark run)."""
    cores = os.cpu_count() or 1
    specs = SMOKE if smoke else PIPELINES
    out = {"cores": cores, "pipelines": {}}
    for name, spec in specs.items():
        batches = 4 if smoke else max(20, 4096 // spec["local_batch"])
        rates = _rates(name, spec, cores, batches)
        given = (demands or {}).get(spec["model"])
        need = given if given else demand(spec, cores)["images_per_second"]
        row = {"model": spec["model"], "image_size": spec["image_size"],
               "local_batch": spec["local_batch"], "images_per_second_one_thread": rates["one"],
               "images_per_second_all_cores": rates["all"], "demand_images_per_second": need,
               "core_share": need / rates["one"], "headroom": rates["all"] / need}
        out["pipelines"][name] = row
        log(f"pipeline {name}: {rates['one']:.0f} img/s on 1 thread, {rates['all']:.0f} on "
            f"{cores}; {spec['model']} consumes {need:.1f} img/s: "
            f"{100 * row['core_share']:.1f}% of a core, headroom {row['headroom']:.0f}x")
    return out


def markdown_rows(res: dict) -> list[str]:
    lines = ["| pipeline | feeds | img/s, 1 thread | img/s, all cores | training consumes "
             "img/s | core share | headroom |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in res["pipelines"].items():
        lines.append(f"| {name} | {r['model']} ({r['image_size']}², batch {r['local_batch']}) "
                     f"| {r['images_per_second_one_thread']:.0f} | "
                     f"{r['images_per_second_all_cores']:.0f} | "
                     f"{r['demand_images_per_second']:.1f} | {100 * r['core_share']:.1f}% | "
                     f"{r['headroom']:.0f}x |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="a few batches: checks the command, measures nothing")
    parser.add_argument("--plan", action="store_true", help="print the jobs to run, run nothing")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "pipeline"))
    args = parser.parse_args(argv)
    if args.plan:
        specs = SMOKE if args.smoke else PIPELINES
        print(f"pipeline: {len(specs)} pipelines x 2 jobs (the pipeline alone, its model's "
              "training step):")
        for name, spec in specs.items():
            print(f"  {name}: {spec['images']} images at {spec['image_size']}^2, feeds "
                  f"{spec['model']} (local batch {spec['local_batch']})")
        return 0
    t0 = time.perf_counter()
    res = measure(args.smoke, log=lambda m: print(f"[{time.perf_counter() - t0:6.0f} s] {m}",
                                                 flush=True))
    res.update(command="python -m benchmarks.pipeline " + " ".join(argv or sys.argv[1:]),
               date=time.strftime("%Y-%m-%d", time.gmtime()),
               minutes=(time.perf_counter() - t0) / 60)
    text = "\n".join([f"# Input pipeline headroom ({res['date']}, {res['cores']} cores)", "",
                      f"`{res['command']}` — {res['minutes']:.1f} min, every number from this "
                      "run.", "", *markdown_rows(res), "",
                      "core share = training's images/s / the pipeline's images/s on one "
                      "thread; headroom = the pipeline on all cores / training's images/s "
                      "(1 rank x all cores, synthetic input: the step alone)."]) + "\n"
    from lbsgd.run import checkpoint as ckpt
    ckpt.atomic_write_json(args.out + ".json", res)
    ckpt.atomic_write_text(args.out + ".md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
