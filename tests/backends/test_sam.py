"""backends/sam on a tiny CoralSCoP-style checkpoint: CoralSCoP's extra decoder heads dropped
by name, any other unknown tensor refused, and the encoder's size read from the checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from quadratseg_handlers import ConfigError
from quadratseg_handlers.backends.sam import EncoderGeometry, encoder_geometry, load_sam
from quadratseg_handlers.demo.tinymodels.sam import ENCODER, coralscop_decoder_heads, tiny_sam

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sam_path(tmp_path_factory) -> Path:
    return tiny_sam(tmp_path_factory.mktemp("sam") / "vit_b_coralscop.pth")


def test_an_extra_tensor_that_is_not_coralscop_stops_start_up(tmp_path, sam_path):
    state = torch.load(sam_path, weights_only=True)
    state["mask_decoder.extra_head.weight"] = torch.zeros(2)
    odd = tmp_path / "odd.pth"
    torch.save(state, odd)
    with pytest.raises(
        ConfigError,
        match="neither SAM's nor CoralSCoP's decoder heads: mask_decoder.extra_head.weight",
    ):
        load_sam(odd, "auto", "cpu")


def test_a_checkpoint_of_another_size_names_sam_model_type(tmp_path, sam_path):
    with pytest.raises(ConfigError, match=r"SAM_WEIGHTS=.*\(SAM_MODEL_TYPE=vit_b; set it to"):
        load_sam(sam_path, "vit_b", "cpu")


def test_coralscop_heads_are_dropped_by_name_and_logged(caplog, sam_path):
    with caplog.at_level(logging.INFO, logger="quadratseg_handlers.backends.sam"):
        model = load_sam(sam_path, "auto", "cpu")
    (record,) = caplog.records
    dropped = sorted(coralscop_decoder_heads())
    assert record.getMessage().endswith(", ".join(dropped))
    assert f"dropped {len(dropped)} CoralSCoP decoder tensor(s)" in record.getMessage()
    assert not set(dropped) & set(model.state_dict())


def test_encoder_geometry_is_read_from_the_checkpoint(sam_path):
    from segment_anything import sam_model_registry

    state = torch.load(sam_path, weights_only=True)
    assert encoder_geometry(state) == EncoderGeometry(64, 2, 2, (1,))
    assert ENCODER["encoder_global_attn_indexes"] == [1]
    with torch.device("meta"):
        vit_b = sam_model_registry["vit_b"](checkpoint=None).state_dict()
    assert encoder_geometry(vit_b) == EncoderGeometry(768, 12, 12, (2, 5, 8, 11))
