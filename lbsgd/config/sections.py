"""The model, optimizer, schedule, ensemble, adaptive-batch and stop sections of a config.

One dataclass per concern, the papers' values as defaults (Codreanu et al.
IV-C/D, V-B, VI; Lee et al. III-D/E): each validates itself on construction
and names the field it refuses.
"""

from __future__ import annotations

import dataclasses
import math

from lbsgd.config.checks import (DECAYS, DEFAULT_BUCKET_MB, EXCHANGES, COMPRESSIONS,
                                 EXCLUSIONS, LR_CONTROLS, LR_SCALINGS, MODELS, OPTIMIZERS,
                                 SCHEDULE_KINDS, START_BATCHES, check_types, one_of, require)
from lbsgd.recipe import timing as _timing


@dataclasses.dataclass
class ModelConfig:
    """The network and its batch-normalisation tweaks (Codreanu et al. IV-C).

    Attributes:
      name: "resnet8/14/20/32" (CIFAR-style, He et al.), "resnet50", or
        "edsr" (EDSR-style residual restoration network, Lee et al. VI-A).
      bn_moving_average_fraction: Caffe's moving_average_fraction (Keras BN
        momentum); the paper sets 0.95.
      zero_gamma_last_bn: gamma = 0 for the last BN of each residual block.
      dtype_policy: Keras mixed-precision policy ("float32", "mixed_bfloat16").
      edsr_blocks, edsr_filters: residual blocks and width of "edsr" (the
        paper's Phantom network: 16 blocks).
      stem_stride: stride of a CIFAR ResNet's first convolution (1: He et
        al.'s; 2 halves every feature map, ~4x fewer FLOPs, for 28x28 inputs).
      precise_bn_batches: precise BN (Wu & Johnson 2021): before every
        evaluation and snapshot, re-estimate the BN population statistics
        from this many training batches with the current weights (0 = off,
        the moving averages are used); at most one epoch of this rank's
        shard is drawn.
      fused_bn: compute every BN with TensorFlow's fused kernel
        (lbsgd.model.batchnorm; same variables and statistics as Keras'
        layer, up to float rounding); False runs Keras' own layer.
    """

    name: str = "resnet20"
    bn_moving_average_fraction: float = 0.95
    zero_gamma_last_bn: bool = True
    dtype_policy: str = "float32"
    edsr_blocks: int = 16
    edsr_filters: int = 64
    stem_stride: int = 1
    precise_bn_batches: int = 0
    fused_bn: bool = True

    def __post_init__(self):
        check_types(self, "model.")
        require(self.precise_bn_batches >= 0, "model.precise_bn_batches",
                 self.precise_bn_batches, "must be >= 0")
        one_of("model.name", self.name, MODELS)
        one_of("model.stem_stride", self.stem_stride, (1, 2))
        require(0.0 <= self.bn_moving_average_fraction < 1.0,
                 "model.bn_moving_average_fraction", self.bn_moving_average_fraction,
                 "must be in [0, 1)")
        one_of("model.dtype_policy", self.dtype_policy, ("float32", "mixed_bfloat16"))
        require(self.edsr_blocks >= 1, "model.edsr_blocks", self.edsr_blocks, "must be >= 1")
        require(self.edsr_filters >= 1, "model.edsr_filters", self.edsr_filters, "must be >= 1")


@dataclasses.dataclass
class OptimizerConfig:
    """Optimizer, linear scaling rule and weight decay (Codreanu et al. IV-B, IV-D).

    Attributes:
      name: "sgd" (momentum SGD, the paper's), "adam" (Lee et al. VI-A),
        "lars" (You et al. 2017 layer-wise adaptive rate scaling,
        lbsgd.optim.lars.LARS: momentum SGD whose per-layer LR is trust_coefficient
        x ||w|| / (||g|| + weight_decay x ||w||), weight decay inside that
        ratio) or "lamb" (keras.optimizers.Lamb: Adam moments and a
        ||w|| / ||update|| ratio on every variable; lbsgd's L2 is added to
        its gradient).
      base_lr: learning rate at the reference batch size.
      reference_batch: batch size base_lr belongs to; peak LR = base_lr x
        global batch / reference_batch (linear scaling rule, Goyal et al.).
      max_lr: ceiling on the scaled LR (the paper holds 6.4 for >= 16K); 0 = none.
      momentum: SGD and LARS momentum.
      weight_decay: Caffe-style L2 coefficient (paper: 1e-4 standard, 5e-5
        before the collapse); "lars" applies it inside its trust ratio.
      exchange: gradient exchange "grouped" (one allreduce after backprop),
        "per_tensor", "reducescatter" (Lee et al. IV-B after backprop),
        "overlap" (an allreduce per bucket as backprop produces it) or
        "overlap_reducescatter" (IV-B per bucket, overlapped the same way).
      bucket_mb: bucket size of the overlapped exchanges, in MiB.
      compression: wire format of the exchanged gradients: "none" (their own
        dtype) or "fp16" (float32 gradients sent as float16, half the bytes,
        rounded to ~3 significant digits).
      momentum_correction: scale the SGD velocity by lr_new / lr_old when the
        LR changes (Goyal et al., adopted by Codreanu et al. II); for "lars"
        too (its velocity holds lr x update); "adam" and "lamb" have none.
      trust_coefficient: LARS's eta in its per-layer LR (You et al.: 0.001;
        "lars" only).
      excluded_variables: variables left out of weight decay and of LARS's
        trust ratio: "rank1" (biases, BN gamma/beta) or "none" (every
        variable). Keras' Lamb applies its trust ratio to every variable
        either way.
    """

    name: str = "sgd"
    base_lr: float = 0.1
    reference_batch: int = 256
    max_lr: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 5e-5
    exchange: str = "grouped"
    bucket_mb: float = DEFAULT_BUCKET_MB
    compression: str = "none"
    momentum_correction: bool = True
    trust_coefficient: float = 0.001
    excluded_variables: str = "rank1"

    def __post_init__(self):
        check_types(self, "optimizer.")
        one_of("optimizer.name", self.name, OPTIMIZERS)
        require(self.base_lr > 0 and math.isfinite(self.base_lr), "optimizer.base_lr",
                 self.base_lr, "must be a finite number > 0")
        require(self.reference_batch >= 1, "optimizer.reference_batch",
                 self.reference_batch, "must be >= 1")
        require(self.max_lr >= 0, "optimizer.max_lr", self.max_lr, "must be >= 0")
        require(0.0 <= self.momentum < 1.0, "optimizer.momentum", self.momentum,
                 "must be in [0, 1)")
        require(self.weight_decay >= 0, "optimizer.weight_decay", self.weight_decay,
                 "must be >= 0")
        one_of("optimizer.exchange", self.exchange, EXCHANGES)
        require(self.bucket_mb > 0 and math.isfinite(self.bucket_mb), "optimizer.bucket_mb",
                 self.bucket_mb, "must be a finite number > 0")
        one_of("optimizer.compression", self.compression, COMPRESSIONS)
        require(self.trust_coefficient > 0 and math.isfinite(self.trust_coefficient),
                 "optimizer.trust_coefficient", self.trust_coefficient,
                 "must be a finite number > 0")
        one_of("optimizer.excluded_variables", self.excluded_variables, EXCLUSIONS)


@dataclasses.dataclass
class EnsembleConfig:
    """The collapsed-ensemble cycles (Codreanu et al. VI, Figure 4), in epochs.

    The paper's 120-epoch run: linear decay to epoch 30, power-2 decay to
    ~22% of the peak at epoch 45, then 5 cycles of a 3-epoch x3 re-warmup and
    a 12-epoch power-2 decay dividing the top by 4, ending at epochs 60, 75,
    90, 105, 120. The last `collapse_epochs` of each power-2 decay are a
    collapse (weight decay doubled, scale/aspect augmentation off), and each
    collapse ends with a snapshot; the ensemble averages the last
    `num_snapshots` of them.

    The epoch fields left at None follow the run's `epochs` in those
    proportions (:meth:`timing`): a cycle is 1/8 of the run (whole epochs,
    at least 2), its re-warmup 1/5 of the cycle, up to 5 cycles after the
    first collapse ends near 3/8 of the run, the last cycle ending with the
    run. Explicit values override; `timing` refuses a schedule that ends
    mid-cycle, runs past its last cycle, ends a collapse mid-epoch or yields
    fewer than 2 snapshots.

    Attributes:
      linear_end_epoch: end of the linear decay after warmup (paper: 30; None:
        2/3 of power2_end_epoch).
      linear_horizon_epochs: epoch at which that linear decay would reach 0
        (paper: 90; None: 3x linear_end_epoch); it stops at `linear_end_epoch`.
      power2_end_epoch: end of the first power-2 decay, the first collapse
        (paper: 45; None: from `epochs`).
      power2_end_fraction: LR at `power2_end_epoch` as a fraction of the peak
        (paper: ~22%).
      rewarmup_epochs: length of each cycle's re-warmup (paper: 3; None: 1/5 of
        a cycle).
      rise_factor: LR multiplier of each re-warmup (paper: x3).
      decay_epochs: length of each cycle's power-2 decay, a collapse ending
        with a snapshot (paper: 12; None: from `epochs`).
      decay_divisor: each cycle's decay divides its top LR by this (paper: 4).
      num_cycles: re-warmup + decay cycles after the first collapse (paper: 5;
        None: as many as fit, up to 5).
      collapse_epochs: whole epochs at the end of each power-2 decay run as a
        collapse. Section VI: "In this collapse phase we typically perform
        between 3-10 epochs"; None: a quarter of `decay_epochs` (3 of the
        paper's 12, the low end of that range, so 9 of each 12-epoch decay keep
        the augmentation), rounded, at least 1.
      num_snapshots: the ensemble averages the last this many snapshots
        (paper: 5, "when ensembling 5 models"; the first collapse's snapshot
        at epoch 45 is left out); 0 = all.
    """

    linear_end_epoch: float | None = None
    linear_horizon_epochs: float | None = None
    power2_end_epoch: float | None = None
    power2_end_fraction: float = 0.22
    rewarmup_epochs: float | None = None
    rise_factor: float = 3.0
    decay_epochs: float | None = None
    decay_divisor: float = 4.0
    num_cycles: int | None = None
    collapse_epochs: float | None = None
    num_snapshots: int = _timing.PAPER_ENSEMBLE_SNAPSHOTS

    def __post_init__(self):
        check_types(self, "schedule.ensemble.")
        require(self.collapse_epochs is None or (self.collapse_epochs >= 1 and abs(
            self.collapse_epochs - round(self.collapse_epochs)) < 1e-9),
                 "schedule.ensemble.collapse_epochs", self.collapse_epochs,
                 "must be a whole number of epochs >= 1 (augmentation switches per epoch)")
        require(self.num_snapshots >= 0, "schedule.ensemble.num_snapshots", self.num_snapshots,
                 "must be >= 0")
        for f in ("linear_end_epoch", "linear_horizon_epochs", "power2_end_epoch",
                  "rewarmup_epochs", "rise_factor", "decay_epochs", "decay_divisor"):
            v = getattr(self, f)
            require(v is None or v > 0, f"schedule.ensemble.{f}", v, "must be > 0")
        require(self.num_cycles is None or self.num_cycles >= 0, "schedule.ensemble.num_cycles",
                 self.num_cycles, "must be >= 0")

    @classmethod
    def paper(cls) -> "EnsembleConfig":
        """The paper's 120-epoch timing, every field explicit."""
        return cls(linear_end_epoch=30.0, linear_horizon_epochs=90.0, power2_end_epoch=45.0,
                   rewarmup_epochs=3.0, decay_epochs=12.0, num_cycles=5)

    def timing(self, epochs: int) -> "_timing.EnsembleTiming":
        """The timing of a run of `epochs` epochs (derived fields filled in; ConfigError if unusable)."""
        return _timing.derive(self, epochs)


@dataclasses.dataclass
class ScheduleConfig:
    """Learning-rate, weight-decay and augmentation schedule (Codreanu et al. IV-D, V-B, VI).

    Attributes:
      kind: "standard" (warmup, decay, optional final collapse) or
        "collapsed_ensemble" (warmup, then the cycles of `ensemble`).
      warmup_epochs: gradual warmup from ~0 to the peak LR (paper: 5; 7-10 for
        very large batches).
      decay: "poly" (polynomial to 0 over the run), "steps" (x0.1 at
        step_epochs) or "constant".
      power: polynomial power (1 = linear, the paper's default).
      step_epochs: epochs of the x0.1 steps (the 3-step baseline: 30, 60, 80).
      collapse_epochs: length of the final collapse (power-2 LR decay from
        where the main schedule left off, weight decay `collapse_weight_decay`,
        scale/aspect augmentation off); 0 = no collapse. A value in (0, 1) is
        a fraction of the run (paper: 5-7%, typically 4-7 epochs).
      collapse_weight_decay: weight decay in collapse phases (0 = twice the
        main value, the paper's 5e-5 -> 1e-4).
      weight_decay_epochs: epochs at which the main-phase weight decay steps
        up (the 64K run's multi-step increase, Figure 3) ...
      weight_decay_values: ... to these values (same length).
      ensemble: cycle shape for kind="collapsed_ensemble".
    """

    kind: str = "standard"
    warmup_epochs: float = 5.0
    decay: str = "poly"
    power: float = 1.0
    step_epochs: tuple = (30, 60, 80)
    collapse_epochs: float = 0.0
    collapse_weight_decay: float = 0.0
    weight_decay_epochs: tuple = ()
    weight_decay_values: tuple = ()
    ensemble: EnsembleConfig = dataclasses.field(default_factory=EnsembleConfig)

    def __post_init__(self):
        check_types(self, "schedule.")
        self.step_epochs = tuple(self.step_epochs)
        self.weight_decay_epochs = tuple(self.weight_decay_epochs)
        self.weight_decay_values = tuple(float(v) for v in self.weight_decay_values)
        one_of("schedule.kind", self.kind, SCHEDULE_KINDS)
        require(self.warmup_epochs >= 0, "schedule.warmup_epochs", self.warmup_epochs,
                 "must be >= 0")
        one_of("schedule.decay", self.decay, DECAYS)
        require(self.power > 0, "schedule.power", self.power, "must be > 0")
        require(all(e > 0 for e in self.step_epochs) and
                 list(self.step_epochs) == sorted(self.step_epochs),
                 "schedule.step_epochs", self.step_epochs,
                 "must be increasing positive epochs")
        require(self.collapse_epochs >= 0, "schedule.collapse_epochs", self.collapse_epochs,
                 "must be >= 0")
        require(self.collapse_weight_decay >= 0, "schedule.collapse_weight_decay",
                 self.collapse_weight_decay, "must be >= 0")
        require(all(e > 0 for e in self.weight_decay_epochs) and
                 list(self.weight_decay_epochs) == sorted(set(self.weight_decay_epochs)),
                 "schedule.weight_decay_epochs", self.weight_decay_epochs,
                 "must be increasing positive epochs")
        require(len(self.weight_decay_values) == len(self.weight_decay_epochs) and
                 all(v >= 0 for v in self.weight_decay_values), "schedule.weight_decay_values",
                 self.weight_decay_values,
                 "must hold one value >= 0 per entry of schedule.weight_decay_epochs")
        if isinstance(self.ensemble, dict):
            self.ensemble = EnsembleConfig(**self.ensemble)
        require(isinstance(self.ensemble, EnsembleConfig), "schedule.ensemble", self.ensemble,
                 "must be an EnsembleConfig")

    def collapse_epochs_for(self, epochs: int) -> int:
        """Whole epochs of the final collapse in a run of `epochs` epochs."""
        if self.collapse_epochs <= 0:
            return 0
        if self.collapse_epochs < 1:
            return max(1, int(round(self.collapse_epochs * epochs)))
        return int(round(self.collapse_epochs))


@dataclasses.dataclass
class AdaptiveConfig:
    """Adaptive batch size and LR at run time (Lee et al. III-D, III-E, Algorithm 1).

    With `enabled`, the run starts at the global `batch_size` (B_s) and the
    LR mu0 = base_lr x B_s / reference_batch; the schedule section is not
    used (the controller owns the LR).

    Attributes:
      enabled: grow the batch by Algorithm 1.
      max_batch: B_m (multiple of the rank count).
      growth_factor: batch multiplier at each growth (paper: 2).
      lr_scaling: LR multiplier at each growth: "linear" (same factor, the
        paper), "root" (its square root) or "none" (fixed LR).
      theta_threshold: theta is saturated once it changes by less than this
        (relative) epoch over epoch; then K = that epoch (paper: 10%).
      k_epochs: fixed K instead (0: detect from theta).
      log_theta: log theta even when the batch does not grow.
      theta_samples: training examples F (the cost in theta) is measured on.
      lr_control: "none", "saturation" (decay when the training cost
        saturates) or "fixed" (decay after `lr_decay_epochs`).
      beta: decay factor; the first decay sets the LR to mu0 x beta.
      lr_decay_epochs: epochs after which "fixed" decays (paper's CIFAR: 80, 120).
      saturation_patience: epochs without a relative cost drop of more than
        `saturation_threshold` that count as saturation.
      saturation_threshold: smallest relative drop of the training cost
        (epoch over epoch) that counts as progress for "saturation".
      max_decays: most decays (0: no limit).
      start_batch: where B_s comes from: "batch_size" (the run's batch_size)
        or "probe" (Lee et al. III-D: at start-up every rank measures the
        l2-norm of the averaged gradient at rank 0's initial weights for each
        of `probe_batches`, and the run starts from the largest whose mean
        norm stays >= `probe_ratio` x the smallest's; lbsgd.adaptive.probe).
        The choice is kept in the checkpoint (resume does not probe again),
        in summary.json ("probe") and in history.csv's batch_size.
      probe_batches: the probe's candidate global batches (() = batch_size
        doubled while <= max_batch).
      probe_draws: random batches per candidate.
      probe_ratio: the norm ratio a candidate must keep (0.9: within 10%,
        Algorithm 1's theta tolerance).
      max_ranks: more workers as the batch grows (Lee et al. IV-A): at a
        growth, launch/run.sh restarts the job from its checkpoint on B /
        (B_s / P_s) ranks, at most this many, a divisor of B, on the hosts
        of -H/--hostfile (lbsgd.adaptive.ranks). 0: the ranks stay as
        launched.
    """

    enabled: bool = False
    max_batch: int = 0
    growth_factor: float = 2.0
    lr_scaling: str = "linear"
    theta_threshold: float = 0.1
    k_epochs: int = 0
    log_theta: bool = False
    theta_samples: int = 512
    lr_control: str = "none"
    beta: float = 0.1
    lr_decay_epochs: tuple = ()
    saturation_patience: int = 5
    saturation_threshold: float = 0.01
    max_decays: int = 0
    start_batch: str = "batch_size"
    probe_batches: tuple = ()
    probe_draws: int = 5
    probe_ratio: float = 0.9
    max_ranks: int = 0

    def __post_init__(self):
        check_types(self, "adaptive.")
        self.lr_decay_epochs = tuple(self.lr_decay_epochs)
        self.probe_batches = tuple(self.probe_batches)
        one_of("adaptive.start_batch", self.start_batch, START_BATCHES)
        require(all(isinstance(b, int) and b >= 1 for b in self.probe_batches) and
                 list(self.probe_batches) == sorted(set(self.probe_batches)),
                 "adaptive.probe_batches", self.probe_batches,
                 "must be increasing batch sizes >= 1")
        require(self.probe_draws >= 1, "adaptive.probe_draws", self.probe_draws, "must be >= 1")
        require(0 < self.probe_ratio <= 1, "adaptive.probe_ratio", self.probe_ratio,
                 "must be in (0, 1]")
        require(self.max_ranks >= 0, "adaptive.max_ranks", self.max_ranks, "must be >= 0")
        require(self.max_batch >= 0, "adaptive.max_batch", self.max_batch, "must be >= 0")
        require(self.growth_factor > 1, "adaptive.growth_factor", self.growth_factor,
                 "must be > 1")
        one_of("adaptive.lr_scaling", self.lr_scaling, LR_SCALINGS)
        require(self.theta_threshold >= 0, "adaptive.theta_threshold", self.theta_threshold,
                 "must be >= 0")
        require(self.k_epochs >= 0, "adaptive.k_epochs", self.k_epochs, "must be >= 0")
        require(self.theta_samples >= 1, "adaptive.theta_samples", self.theta_samples,
                 "must be >= 1")
        one_of("adaptive.lr_control", self.lr_control, LR_CONTROLS)
        require(0 < self.beta < 1, "adaptive.beta", self.beta, "must be in (0, 1)")
        require(all(e > 0 for e in self.lr_decay_epochs), "adaptive.lr_decay_epochs",
                 self.lr_decay_epochs, "must be positive epochs")
        require(self.saturation_patience >= 1, "adaptive.saturation_patience",
                 self.saturation_patience, "must be >= 1")
        require(self.max_decays >= 0, "adaptive.max_decays", self.max_decays, "must be >= 0")

    def probe_candidates(self, batch_size: int) -> tuple:
        """The global batches the start-up probe measures (`probe_batches`, else batch_size
        doubled while <= max_batch)."""
        if self.probe_batches:
            return self.probe_batches
        out, b = [], batch_size
        while b <= max(self.max_batch, batch_size):
            out.append(b)
            b *= 2
        return tuple(out)


@dataclasses.dataclass
class StopConfig:
    """Convergence stop (Lee et al. VI-A: PSNR not up 0.1 dB in 50 epochs).

    Attributes:
      patience: epochs without an improvement of `min_delta` in `monitor`
        before the run stops (0: never stop early).
      min_delta: smallest improvement that counts.
      monitor: the log key ("" = the task's validation metric:
        val_accuracy or val_psnr).
    """

    patience: int = 0
    min_delta: float = 0.0
    monitor: str = ""

    def __post_init__(self):
        check_types(self, "stop.")
        require(self.patience >= 0, "stop.patience", self.patience, "must be >= 0")
        require(self.min_delta >= 0, "stop.min_delta", self.min_delta, "must be >= 0")
