"""Config validation: every mistake is ONE line that names the key, the value and what is allowed."""

from __future__ import annotations

import pytest

import imagegen
from training import ConfigError, RunConfig, load_config, parse_config
from training.config import dump_config


def _error(data: dict) -> str:
    with pytest.raises(ConfigError) as ei:
        parse_config(data)
    msg = str(ei.value)
    assert "\n" not in msg, f"not one line: {msg!r}"
    assert msg.strip() == msg and msg
    return msg


def test_defaults_parse_and_round_trip():
    cfg = parse_config({})
    assert isinstance(cfg, RunConfig)
    assert cfg.data.source == "digits"
    assert parse_config(dump_config(cfg)) == cfg


def test_full_config_round_trips_through_yaml(tmp_path):
    import yaml

    data = imagegen.base_config({"source": "imagefolder", "root": str(tmp_path / "imgs")}, tmp_path,
                                optimizer={"name": "sgd", "momentum": 0.8, "nesterov": True, "backbone_lr": 1e-3},
                                scheduler={"name": "multistep", "milestones": [1, 2], "warmup_epochs": 0.5})
    cfg = parse_config(data)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(dump_config(cfg)))
    assert load_config(p) == cfg


def test_unknown_key_suggests_the_near_one_and_lists_valid_keys():
    msg = _error({"optimizer": {"lrr": 0.1}})
    assert "optimizer.lrr" in msg
    assert "did you mean 'lr'" in msg
    assert "valid keys" in msg and "momentum" in msg


def test_unknown_top_level_key():
    msg = _error({"trian": {"epochs": 2}})
    assert "'trian'" in msg and "did you mean 'train'" in msg


def test_unknown_key_in_a_data_source_lists_that_sources_keys():
    msg = _error({"data": {"source": "csv", "file": "x.csv", "label_columns": ["y"], "roott": "x"}})
    assert "data.roott" in msg and "did you mean 'root'" in msg and "label_columns" in msg


@pytest.mark.parametrize("name, near", [("test_resnt", "test_resnet"), ("resnet_nope", None)])
def test_unknown_model_name(name, near):
    msg = _error({"model": {"name": name}})
    assert "model.name" in msg and repr(name) in msg and "unknown timm model" in msg
    if near:
        assert near in msg


@pytest.mark.parametrize("data, key, value, allowed", [
    ({"data": {"source": "digits", "val_fraction": 1.5}}, "data.val_fraction", "1.5", "less than 1"),
    ({"data": {"source": "digits", "val_fraction": 0}}, "data.val_fraction", "0", "greater than 0"),
    ({"optimizer": {"lr": -1}}, "optimizer.lr", "-1", "greater than 0"),
    ({"train": {"epochs": 0}}, "train.epochs", "0", "greater than or equal to 1"),
    ({"model": {"dropout": 1.0}}, "model.dropout", "1.0", "less than 1"),
    ({"loss": {"label_smoothing": -0.1}}, "loss.label_smoothing", "-0.1", "greater than or equal to 0"),
    ({"data": {"source": "digits", "on_bad_image": "ignore"}}, "data.on_bad_image", "'ignore'", "'fail' or 'skip'"),
    ({"train": {"device": "tpu"}}, "train.device", "'tpu'", "auto, cpu, cuda or cuda:N"),
    ({"data": {"source": "mask", "root": "x", "age_bins": [60, 30]}}, "data.age_bins", "[60, 30]",
     "0 < first < second"),
])
def test_impossible_value_names_key_value_and_allowed(data, key, value, allowed):
    msg = _error(data)
    assert f"{key} = {value}" in msg
    assert allowed in msg


def test_data_without_source_defaults_to_digits():
    cfg = parse_config({"data": {"image_size": 16}})
    assert cfg.data.source == "digits" and cfg.data.image_size == 16


def test_impossible_value_without_source_names_the_key():
    msg = _error({"data": {"val_fraction": 1.5}})
    assert "data.val_fraction = 1.5" in msg


@pytest.mark.parametrize("section, bad, good, valid", [
    ("loss", "focall", "focal", ["bce", "ce", "focal", "soft_margin"]),
    ("optimizer", "sgdd", "sgd", ["adam", "adamw", "sgd"]),
    ("scheduler", "cosin", "cosine", ["cosine", "multistep", "none", "step"]),
])
def test_unknown_registry_names(section, bad, good, valid):
    msg = _error({section: {"name": bad}})
    assert f"{section}.name = '{bad}'" in msg
    assert f"did you mean '{good}'" in msg
    assert "valid: " + ", ".join(valid) in msg


def test_bad_data_source():
    msg = _error({"data": {"source": "parquet", "root": "x"}})
    assert "data.source = 'parquet'" in msg
    assert "digits, imagefolder, csv, mask" in msg


def test_missing_required_key_of_a_source():
    msg = _error({"data": {"source": "imagefolder"}})
    assert "missing required key 'data.root'" in msg


def test_multistep_milestones_must_increase():
    msg = _error({"scheduler": {"name": "multistep", "milestones": [5, 2]}})
    assert "scheduler.milestones must be increasing" in msg


def test_bad_augmentation_pipeline_names_the_transform():
    msg = _error({"augment": {"train": [{"__class_fullname__": "NoSuchTransform", "p": 1.0}]}})
    assert "augment.train" in msg and "NoSuchTransform" in msg


def test_several_errors_report_the_first_and_count_the_rest():
    msg = _error({"optimizer": {"lr": -1, "weight_decay": -1}})
    assert "(+1 more)" in msg


def test_yaml_file_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optimizer:\n  lr: [\n")
    with pytest.raises(ConfigError) as ei:
        load_config(bad)
    assert "\n" not in str(ei.value) and str(bad) in str(ei.value) and "line" in str(ei.value)
    with pytest.raises(ConfigError) as ei:
        load_config(tmp_path / "missing.yaml")
    assert "\n" not in str(ei.value) and "missing.yaml" in str(ei.value)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(lst)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("optimizer: {lrr: 0.1}\n")
    with pytest.raises(ConfigError) as ei:
        load_config(wrong)
    assert str(ei.value).startswith(f"{wrong}: unknown key 'optimizer.lrr'")


def test_config_is_frozen():
    cfg = parse_config({})
    with pytest.raises(Exception):
        cfg.optimizer.lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("data, head, allowed", [
    ({"loss": {"class_weights": "balancedd"}}, "loss.class_weights = 'balancedd'", "list"),
    ({"loss": {"class_weights": [1, "x"]}}, "loss.class_weights", "list"),
    ({"train": {"channels_last": "maybe"}}, "train.channels_last = 'maybe'", "auto"),
    ({"model": {"pretrained": 5}}, "model.pretrained = 5", "path"),
], ids=["class_weights-word", "class_weights-list", "channels_last", "pretrained"])
def test_union_keys_are_named_plainly_with_every_allowed_form(data, head, allowed):
    msg = _error(data)
    assert f": {head}" in msg and ".literal[" not in msg and ".bool " not in msg
    assert allowed in msg.lower()


@pytest.mark.parametrize("data, head", [({"optimizer": {"betas": [0.9]}}, "optimizer.betas = [0.9]"),
                                        ({"augment": {"mean": [0.5, 0.5]}}, "augment.mean = [0.5, 0.5]")])
def test_too_short_tuple_names_the_key_and_value(data, head):
    msg = _error(data)
    assert head in msg and "missing required key" not in msg


def test_yaml_merge_keys_may_set_a_key_again_but_a_key_written_twice_is_an_error(tmp_path):
    from training.config import read_yaml

    path = tmp_path / "cfg.yaml"
    path.write_text("base: &base {lr: 0.01, name: sgd}\noptimizer: {<<: *base, lr: 0.1}\n")
    assert read_yaml(path)["optimizer"] == {"lr": 0.1, "name": "sgd"}  # the override wins, as YAML says
    path.write_text("optimizer: {lr: 0.01}\nseed: 1\noptimizer: {lr: 0.1}\n")
    with pytest.raises(ConfigError, match="line 3: key 'optimizer' is already set on line 1"):
        read_yaml(path)
