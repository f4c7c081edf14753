"""The YAML spec: strict validation with key paths, --set overrides, resolution, the schema."""

from __future__ import annotations

import json

import pytest

from nnlab.config import (
    config_hash,
    config_schema,
    dump_yaml,
    load_config,
    parse_yaml,
    resolve,
    split_key,
)
from nnlab.errors import ConfigError

BASE = """
data: {name: threshold}
model:
  layers:
    - {type: dense, units: 1, activation: linear, initializer: glorot_uniform}
loss: mse
optimizer: {name: sgd, lr: 0.01}
training: {epochs: 10, batch_size: null, seed: 1}
"""


def error_of(write_config, text=BASE, overrides=()) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(text), list(overrides))
    return info.value


def test_resolved_config_fills_every_default(write_config):
    cfg = load_config(write_config(BASE))
    layer = cfg["model"]["layers"][0]
    assert layer == {
        "type": "dense",
        "units": 1,
        "activation": "linear",
        "initializer": {"name": "glorot_uniform", "gain": 1.0},
        "bias_initializer": "zeros",
        "use_bias": True,
        "name": None,
        "inputs": None,
        "join": "concat",
    }
    assert cfg["optimizer"]["momentum"] == 0.0 and cfg["optimizer"]["schedule"] == "constant"
    assert cfg["training"]["dtype"] == "float32" and cfg["training"]["shuffle"] is True
    assert cfg["data"]["validation_split"] == 0.0
    assert cfg["name"] == "exp"  # the file's name


def test_resolved_config_is_a_fixed_point(write_config):
    cfg = load_config(write_config(BASE))
    again = resolve(parse_yaml(dump_yaml(cfg), "x"))
    assert again == cfg


def test_aliases_resolve_to_canonical_names_and_the_same_hash(write_config):
    a = load_config(write_config(BASE), ["model.layers.0.initializer=xavier_uniform"])
    b = load_config(write_config(BASE), ["model.layers.0.initializer={name: glorot_uniform}"])
    assert a["model"]["layers"][0]["initializer"]["name"] == "glorot_uniform"
    assert config_hash(a) == config_hash(b)
    c = load_config(write_config(BASE), ["optimizer.lr=0.02"])
    assert config_hash(c) != config_hash(a)


def test_unknown_initializer_names_the_path_value_allowed_and_suggestion(write_config):
    e = error_of(
        write_config, BASE.replace("initializer: glorot_uniform", "initializer: glorot_unifrom")
    )
    text = str(e)
    assert e.path == "model.layers[0].initializer"
    assert "'glorot_unifrom'" in text and "Did you mean 'glorot_uniform'?" in text
    assert "he_normal" in text and "orthogonal" in text  # the allowed values


def test_unknown_key_gets_a_suggestion_and_the_allowed_keys(write_config):
    e = error_of(write_config, BASE.replace("lr: 0.01", "lr: 0.01, momentun: 0.9"))
    assert e.path == "optimizer.momentun"
    assert "Did you mean 'momentum'?" in str(e) and "nesterov" in str(e)


def test_unknown_top_level_section(write_config):
    e = error_of(write_config, BASE + "trainig: {epochs: 3}\n")
    assert e.path == "trainig" and "Did you mean 'training'?" in str(e)


@pytest.mark.parametrize(
    "override, path, words",
    [
        ("training.epochs=ten", "training.epochs", "expected an integer >= 1, got 'ten'"),
        ("training.epochs=0", "training.epochs", "got 0"),
        ("training.epochs=true", "training.epochs", "got true"),
        ("optimizer.lr=-1", "optimizer.lr", "a number > 0"),
        ("model.layers.0.units=2.5", "model.layers[0].units", "an integer"),
        ("training.dtype=float16", "training.dtype", "Did you mean 'float64'?"),
        ("data.name=digit", "data.name", "Did you mean 'digits'?"),
        ("loss=cross_entropyy", "loss", "Did you mean 'cross_entropy'?"),
        ("optimizer.name=adamm", "optimizer.name", "Did you mean 'adam'?"),
        ("model.layers.0.type=dens", "model.layers[0].type", "Did you mean 'dense'?"),
        ("model.layers.0.activation=rleu", "model.layers[0].activation", "Did you mean 'relu'?"),
        ("data.validation_split=1.5", "data.validation_split", "< 1"),
        ("model.layers=[]", "model.layers", "at least one layer"),
        ("model.layers.0={units: 3}", "model.layers[0].type", "missing 'type'"),
    ],
)
def test_bad_values_name_their_key_path(write_config, override, path, words):
    e = error_of(write_config, overrides=[override])
    assert e.path == path
    assert words in str(e)
    assert "(from --set)" in str(e)


def test_split_sums_are_checked(write_config):
    e = error_of(write_config, overrides=["data.validation_split=0.6", "data.test_split=0.5"])
    assert e.path == "data.validation_split" and "below 1" in str(e)


def test_missing_required_section(write_config):
    e = error_of(write_config, "data: {name: xor}\nloss: mse\n")
    assert e.path == "model" and "required" in str(e)


def test_yaml_syntax_error_names_line_and_column(write_config):
    e = error_of(write_config, "data: {name: xor\nmodel:\n  layers: [\n")
    assert "line" in str(e) and "column" in str(e)
    assert e.source.endswith("exp.yaml")


def test_duplicate_keys_are_an_error(write_config):
    e = error_of(write_config, BASE + "loss: mae\n")
    assert "duplicate key 'loss'" in str(e) and "line 9" in str(e)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_numbers_in_exponent_form_are_numbers(write_config):
    cfg = load_config(write_config(BASE.replace("lr: 0.01", "lr: 1e-3")))
    assert cfg["optimizer"]["lr"] == 0.001
    cfg = load_config(write_config(BASE), ["optimizer.lr=5E-4"])
    assert cfg["optimizer"]["lr"] == 0.0005


def test_set_list_index_forms_and_append(write_config):
    cfg = load_config(
        write_config(BASE),
        [
            "model.layers[0].units=4",
            "model.layers.0.activation=tanh",
            "model.layers.1={type: dense, units: 1, activation: sigmoid}",
        ],
    )
    assert cfg["model"]["layers"][0]["units"] == 4
    assert cfg["model"]["layers"][0]["activation"] == "tanh"
    assert cfg["model"]["layers"][1]["activation"] == "sigmoid"


def test_set_an_option_of_a_component_given_by_name(write_config):
    cfg = load_config(
        write_config(BASE),
        [
            "model.layers.0.initializer.gain=2",
            "loss=categorical_crossentropy",
            "loss.label_smoothing=0.1",
        ],
    )
    assert cfg["model"]["layers"][0]["initializer"] == {"name": "glorot_uniform", "gain": 2.0}
    assert cfg["loss"] == {"name": "categorical_crossentropy", "label_smoothing": 0.1}


def test_set_creates_a_section(write_config):
    cfg = load_config(write_config(BASE), ["training.early_stopping.patience=3"])
    assert cfg["training"]["early_stopping"]["patience"] == 3
    assert cfg["training"]["early_stopping"]["monitor"] == "val_loss"


def test_set_index_out_of_range(write_config):
    e = error_of(write_config, overrides=["model.layers.3.units=2"])
    assert "out of range" in str(e) and e.path == "model.layers[3]"


def test_set_needs_key_equals_value(write_config):
    e = error_of(write_config, overrides=["optimizer.lr"])
    assert "KEY=VALUE" in str(e)


def test_split_key_forms():
    assert split_key("model.layers.0.units") == ["model", "layers", 0, "units"]
    assert split_key("model.layers[0].units") == ["model", "layers", 0, "units"]
    with pytest.raises(ConfigError):
        split_key("model..units")


def test_json_schema_describes_every_section_and_component():
    schema = config_schema()
    json.dumps(schema)  # serialisable
    props = schema["properties"]
    assert set(props) >= {"data", "model", "loss", "optimizer", "training"}
    assert schema["required"] == ["data", "model"]
    assert props["training"]["properties"]["epochs"]["default"] == 10
    opt_names = {n for o in props["optimizer"]["anyOf"] for n in o.get("enum", [])}
    assert {"sgd", "adam", "adamw", "rmsprop", "adagrad"} <= opt_names


def test_readme_documents_every_key():
    """The README's key reference is the generated one (regenerate with
    `nnlab config --schema --format markdown`)."""
    from pathlib import Path

    from nnlab.docs import reference_markdown

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert reference_markdown() in readme
