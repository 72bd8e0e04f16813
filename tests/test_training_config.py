"""TrainingConfig: today's defaults, checks when it is made, misspelt settings, overrides and its JSON form."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from weaksegtf.errors import ConfigError
from weaksegtf.training import TrainingConfig, run_training, train_weak_segmenter
from weaksegtf.training.outputs import provenance_settings


def test_defaults_are_the_library_defaults():
    config = TrainingConfig()
    assert (config.mode, config.tile_size_px, config.epochs, config.steps_per_epoch) == ("S+C", 128, 10, None)
    assert (config.batch_size, config.learning_rate, config.lr_schedule) == (20, 1e-4, "constant")
    assert (config.class_weights, config.label_class_weights, config.update) == ("auto", "auto", "joint")
    assert (config.allowed_class_weight, config.classification_weight, config.present_class_share) == (1.0, 1.0, 0.0)
    assert (config.label_tiles, config.label_max_size_px, config.background_patches) == ("whole", 512, True)
    assert (config.best_epoch, config.precise_batch_norm, config.strategy) == (True, True, "none")
    assert config.verbose is None  # run_training: 2, train_weak_segmenter: "auto"


@pytest.mark.parametrize("settings, message", [
    ({"mode": "S+D"}, "mode 'S+D' is unknown; expected one of"),
    ({"tile_size_px": 100}, "tile_size_px must be a multiple of 16, got 100"),
    ({"label_tiles": "tiles"}, "label_tiles 'tiles' is unknown"),
    ({"lr_schedule": "linear"}, "lr_schedule 'linear' is unknown"),
    ({"augment": "heavy"}, "augment 'heavy' is unknown"),
    ({"strategy": "horovod"}, "strategy 'horovod' is unknown"),
    ({"class_weights": "inverse"}, "class_weights must be 'auto', a list or None, got 'inverse'"),
    ({"self_training": True, "mode": "S"}, "self-training needs masks and whole labelled images"),
    ({"architecture": "unet", "encoder_weights": "r.pth"}, "encoder_weights are ResNet-18 weights"),
    ({"class_names": ["a", "b"], "num_classes": 3}, "num_classes is 3 but class_names lists 2"),
])
def test_a_refused_setting_fails_when_the_config_is_made(settings, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainingConfig(**settings)
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainingConfig().replace(**settings)


def test_a_misspelt_setting_names_the_closest_ones(tmp_path):
    with pytest.raises(ConfigError, match="'learning_rat' is not a training setting; did you mean 'learning_rate'"):
        run_training(None, None, None, tmp_path / "run", class_names=["a", "b"], learning_rat=1e-3)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="'background_image' is not a training setting; did you mean "
                                          "'background_images' or 'background_patches'"):
        train_weak_segmenter(None, None, None, None, num_classes=2, background_image=np.zeros((1, 32, 32, 3)))
    with pytest.raises(ConfigError, match="'zzz' is not a training setting; expected one of class_names, mode"):
        TrainingConfig().replace(zzz=1)
    with pytest.raises(ConfigError, match="config must be a TrainingConfig, got list"):
        run_training(None, None, None, tmp_path / "run", ["a", "b"])


def test_keyword_settings_override_the_config_and_are_checked_before_any_image(tmp_path):
    config = TrainingConfig(class_names=["a", "b"], mode="S+C")
    with pytest.raises(ConfigError, match="mode S needs a non-empty mask set"):
        train_weak_segmenter(None, None, None, None, config, mode="S")
    with pytest.raises(ConfigError, match="self-training needs masks"):
        run_training(None, None, None, tmp_path / "run", config, self_training=True)
    with pytest.raises(ConfigError, match="class names are missing"):
        run_training(None, None, None, tmp_path / "run")
    with pytest.raises(ConfigError, match="the number of classes is unknown"):
        train_weak_segmenter(None, None, None, None, mode="S")
    assert config.replace(epochs=3).epochs == 3 and config.epochs == 10  # a copy: the config is frozen
    assert not (tmp_path / "run").exists()


def test_to_dict_is_json_and_provenance_keeps_run_trainings_settings(tmp_path):
    table = type("JointDistributionTable", (), {})()
    config = TrainingConfig(class_names=("a", "b"), encoder_weights=Path("w.pth"), joint_table=table, verbose=2)
    record = json.loads(json.dumps(config.to_dict()))
    assert record["class_names"] == ["a", "b"] and record["encoder_weights"] == "w.pth"
    assert record["joint_table"] == "JointDistributionTable" and record["num_classes"] is None
    settings = provenance_settings(tmp_path, config)
    assert list(settings)[:3] == ["out_dir", "class_names", "mode"] and list(settings)[-1] == "strategy"
    assert not {"model_card", "num_classes", "label_class_weights", "precise_batch_norm"} & set(settings)


def test_importing_the_config_loads_neither_tensorflow_nor_numpy():
    code = ("import sys; from weaksegtf.training import TrainingConfig; TrainingConfig(class_names=['a', 'b']);"
            "assert not {'tensorflow', 'keras', 'numpy'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
