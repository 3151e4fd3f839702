from dataclasses import dataclass, field

import pytest

from training.config import ConfigError, build


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    epochs: int = 10


@dataclass(frozen=True)
class Outer:
    dataset: str = "beauty"
    refit: bool = False
    train: Inner = field(default_factory=Inner)


def test_precedence_defaults_file_flags_set(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("dataset: sports\ntrain:\n  lr: 0.01\n  epochs: 5\n")
    cfg = build(Outer, f, {"train.epochs": 7, "dataset": None}, ["train.lr=0.5", "refit=true"])
    assert cfg == Outer(dataset="sports", refit=True, train=Inner(lr=0.5, epochs=7))


def test_toml_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('dataset = "yelp"\n[train]\nepochs = 3\n')
    assert build(Outer, f).train.epochs == 3


def test_unknown_key_names_file_and_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml\.train: unknown key\(s\) \['lrr'\]"):
        build(Outer, f)


def test_bad_value_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read 'abc' as int"):
        build(Outer, None, None, ["train.epochs=abc"])
    with pytest.raises(ConfigError, match="not found"):
        build(Outer, tmp_path / "nope.yaml")


@dataclass(frozen=True)
class Tuned:
    train: Inner = field(default_factory=lambda: Inner(lr=0.5, epochs=99))


def test_partial_section_keeps_the_fields_own_defaults():
    # setting one key of a section must not reset its other keys to the nested class's
    # defaults when the field's default_factory chose different ones
    cfg = build(Tuned, None, {"train.epochs": 3})
    assert cfg.train == Inner(lr=0.5, epochs=3)
    assert build(Tuned).train == Inner(lr=0.5, epochs=99)


@dataclass(frozen=True)
class WithPreset:
    preset: str = "base"
    refit: bool = False
    train: Inner = field(default_factory=Inner)


PRESETS = {"base": {"train": {"epochs": 3}}, "long": {"train": {"epochs": 99, "lr": 0.5}}}


def test_presets_sit_under_file_flags_and_set_and_the_default_one_applies(tmp_path):
    assert build(WithPreset, presets=PRESETS).train == Inner(epochs=3)  # the class's preset
    cfg = build(WithPreset, None, {"preset": "long"}, presets=PRESETS)
    assert (cfg.preset, cfg.train) == ("long", Inner(lr=0.5, epochs=99))
    f = tmp_path / "c.yaml"
    f.write_text("preset: long\ntrain:\n  epochs: 5\n")
    cfg = build(WithPreset, f, {"train.lr": 0.25}, presets=PRESETS)
    assert cfg.train == Inner(lr=0.25, epochs=5)  # preset < file < flags
    cfg = build(WithPreset, f, None, ["train.epochs=7"], presets=PRESETS)
    assert cfg.train == Inner(lr=0.5, epochs=7)  # < --set
    with pytest.raises(ConfigError, match="unknown preset 'short'; choose one of base, long"):
        build(WithPreset, None, {"preset": "short"}, presets=PRESETS)


def test_a_recorded_config_loads_without_the_settings_later_versions_dropped():
    from dataclasses import asdict

    from training.config import from_saved
    from training.seater.pipeline import SeaterRun

    recorded = asdict(SeaterRun())
    recorded["model"]["dec_layers"] = 1
    recorded["losses"].update(generation=True, rank_negatives_pairs=True)
    recorded["bucket"] = False
    assert from_saved(SeaterRun, recorded) == SeaterRun()
    recorded["model"]["dec_layers"] = 2  # another model than any this version builds
    with pytest.raises(ConfigError, match="model.dec_layers=2 is no longer supported"):
        from_saved(SeaterRun, recorded)
