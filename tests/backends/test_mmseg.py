"""backends/mmseg: where the class names come from."""

from __future__ import annotations

from quadratseg_handlers.backends.mmseg import class_names


def test_class_names_fall_back_to_the_config_metainfo():
    config = {"val_dataloader": {"dataset": {"metainfo": {"classes": ("sand", "Acropora")}}}}
    assert class_names({"meta": {}}, config) == ["sand", "Acropora"]
    assert class_names({"meta": {"CLASSES": ["a", "b"]}}, config) == ["a", "b"]
    assert class_names({}, {}) is None
