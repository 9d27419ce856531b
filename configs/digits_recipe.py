"""The whole Codreanu et al. recipe in minutes on the embedded digits data.

Warmup -> linear decay -> power-2 collapse -> three collapsed-ensemble
cycles (Section VI, Figure 4, with every epoch count divided by ~6):
linear decay to epoch 5, power-2 decay to 22% of the peak at epoch 8, then
cycles of a 1-epoch x3 re-warmup and a 3-epoch power-2 decay (/4) ending at
epochs 12, 16, 20. Scale/aspect augmentation and weight decay 5e-5 in the
main phases; each collapse turns augmentation off and doubles the weight
decay, and ends with a snapshot (epochs 8, 12, 16, 20). At the end the
snapshots' softmax outputs are averaged (ensemble.json, summary.json).

    launch/run.sh -np 2 python -m lbsgd.train --config configs/digits_recipe.py
"""

from lbsgd.config import (DataConfig, EnsembleConfig, ModelConfig, OptimizerConfig,
                          ScheduleConfig, TrainConfig)


def get_config() -> TrainConfig:
    return TrainConfig(
        name="digits_recipe",
        epochs=20,
        batch_size=64,
        seed=0,
        target_accuracies=(0.90, 0.95, 0.97),
        data=DataConfig(name="digits", image_size=32, augment="scale_aspect", min_area=0.35),
        model=ModelConfig(name="resnet20", bn_moving_average_fraction=0.95,
                          zero_gamma_last_bn=True),
        optimizer=OptimizerConfig(name="sgd", base_lr=0.4, reference_batch=256, momentum=0.9,
                                  weight_decay=5e-5, momentum_correction=True),
        schedule=ScheduleConfig(
            kind="collapsed_ensemble", warmup_epochs=1,
            ensemble=EnsembleConfig(linear_end_epoch=5, linear_horizon_epochs=15,
                                    power2_end_epoch=8, power2_end_fraction=0.22,
                                    rewarmup_epochs=1, rise_factor=3, decay_epochs=3,
                                    decay_divisor=4, num_cycles=3)),
    )
