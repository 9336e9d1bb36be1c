"""CVAT mask values held as arrays, and the answer's JSON text built from them.

The reference is the encoder this library used before: the crop's 0/1 values as a Python
list plus the box, written by ``json.dumps``. The new one must give the same bytes.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from quadratseg_handlers import cvat
from quadratseg_handlers.cvat.masks import MaskValues, bounding_box
from quadratseg_handlers.cvat.shapes import rounded


def list_mask(bitmap: np.ndarray, origin: tuple[int, int] = (0, 0)) -> list[int]:
    """The mask values as the list encoder built them."""
    box = bounding_box(bitmap)
    assert box is not None
    left, top, right, bottom = box
    crop = np.asarray(bitmap)[top : bottom + 1, left : right + 1]
    xtl, ytl = origin[0] + left, origin[1] + top
    return (crop > 0).astype(np.uint8).reshape(-1).tolist() + [
        xtl,
        ytl,
        origin[0] + right,
        origin[1] + bottom,
    ]


def random_mask(rng: np.random.Generator, fill: float) -> np.ndarray:
    mask = rng.random((int(rng.integers(1, 60)), int(rng.integers(1, 60)))) < fill
    mask[-1, 0] = True  # never empty
    return mask


def masks() -> dict[str, tuple[np.ndarray, tuple[int, int]]]:
    rng = np.random.default_rng(16)
    holes = np.ones((9, 11), dtype=bool)
    holes[2:4, 3:8] = holes[6, 1] = False
    rows_apart = np.zeros((12, 7), dtype=bool)
    rows_apart[[1, 2, 9], 2:5] = True  # empty rows 3..8 inside the box
    single = np.zeros((5, 5), dtype=bool)
    single[4, 0] = True
    levels = np.zeros((6, 8), dtype=np.uint8)
    levels[1:5, 2:7] = rng.choice([0, 1, 200, 255], (4, 5))
    levels[1, 2] = levels[4, 6] = 255
    return {
        "full crop": (np.ones((4, 6), dtype=bool), (0, 0)),
        "holes": (holes, (3, 5)),
        "empty rows": (rows_apart, (0, 0)),
        "single pixel": (single, (1919, 0)),
        "grey levels": (levels, (0, 0)),
        **{
            f"random {i}": (random_mask(rng, p), (i, 7 * i))
            for i, p in enumerate((0.02, 0.5, 0.97))
        },
    }


@pytest.mark.parametrize("name", sorted(masks()))
def test_mask_shapes_give_the_bytes_of_the_list_encoder(name):
    bitmap, origin = masks()[name]
    shape = cvat.mask("coral", bitmap, 0.9, origin=origin, group_id=2)
    expected = list_mask(bitmap, origin)
    values = shape["mask"]
    assert isinstance(values, MaskValues)
    assert values == expected and expected == values and values.tolist() == expected
    assert values.json() == json.dumps(expected)
    plain = [{**shape, "mask": expected}, {"label": "x", "type": "tag", "attributes": []}]
    assert cvat.answer_json([shape, plain[1]]) == json.dumps(plain)
    assert cvat.answer_json([[shape], []]) == json.dumps([[plain[0]], []])
    assert cvat.answer_json([shape], indent=2) == json.dumps([plain[0]], indent=2)


def cvat_rle(values: list[int]) -> list[int]:
    """What CVAT's lambda manager stores for a function's mask: run lengths of the flat 0/1
    values (``mask_to_rle`` on the list, a run of zeros first), then the box."""
    flat = np.asarray(values[:-4], dtype=np.int64)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    return ([0] if flat[0] == 1 else []) + runs + values[-4:]


def decode_cvat_rle(rle: list[int]) -> tuple[np.ndarray, list[int]]:
    xtl, ytl, xbr, ybr = rle[-4:]
    flat = np.repeat(np.arange(len(rle) - 4) % 2, rle[:-4]).astype(bool)
    return flat.reshape(ybr - ytl + 1, xbr - xtl + 1), [xtl, ytl, xbr, ybr]


@pytest.mark.parametrize("name", sorted(masks()))
def test_cvat_decodes_the_sent_mask_to_the_crop(name):
    bitmap, origin = masks()[name]
    shape = cvat.mask("coral", bitmap, 0.9, origin=origin)
    labels = [cvat.label_spec("coral", "mask", [cvat.CONFIDENCE_SPEC])]
    assert cvat.validate_response([shape], labels) == []
    kept = cvat.cvat_keeps([shape], labels, cvat.project_labels(labels))
    received = json.loads(cvat.answer_json(kept))[0]
    crop, box = decode_cvat_rle(cvat_rle(received["mask"]))
    left, top, right, bottom = bounding_box(bitmap) or (0, 0, 0, 0)
    np.testing.assert_array_equal(crop, bitmap[top : bottom + 1, left : right + 1] > 0)
    assert box == [origin[0] + left, origin[1] + top, origin[0] + right, origin[1] + bottom]


def test_mask_values_read_as_their_list():
    values = MaskValues(np.array([[1, 0, 1], [0, 1, 1]], dtype=bool), (10, 20, 12, 21))
    listed = [1, 0, 1, 0, 1, 1, 10, 20, 12, 21]
    assert len(values) == 10 and list(values) == listed
    assert values[0] == 1 and values[1] == 0 and values[-4] == 10 and values[-1] == 21
    assert (
        values[-4:] == [10, 20, 12, 21]
        and values[:-4] == listed[:-4]
        and values[::3] == [1, 0, 10, 21]
    )
    assert values != listed[:-1] and values != [*listed[:-1], 22] and values != "1"
    assert pickle.loads(pickle.dumps(values)) == values
    assert repr(values) == "MaskValues(3x2 crop, box=[10, 20, 12, 21])"
    with pytest.raises(IndexError):
        values[10]
    with pytest.raises(ValueError, match="does not fill"):
        MaskValues(np.ones((2, 2), dtype=bool), (0, 0, 2, 1))
    with pytest.raises(TypeError, match="unhashable"):
        hash(values)


def test_answer_json_is_json_dumps_for_everything_else():
    payload = [
        {"label": "Pavona/Leptoseris é", "type": "polygon", "points": [0.1, 2.0, 1e-7, 3.5]},
        {"label": "\0mask 00\0", "type": "points", "points": [1.25, -0.0], "attributes": []},
        {"image": "abc", "mask": "iVBOR"},
    ]
    assert cvat.answer_json(payload) == json.dumps(payload)
    assert cvat.answer_json({"error": "x"}) == json.dumps({"error": "x"})
    with pytest.raises(TypeError, match="Object of type ndarray is not JSON serializable"):
        cvat.answer_json([np.zeros(2)])


def test_rounding_in_numpy_gives_pythons_floats():
    rng = np.random.default_rng(1)
    values = np.concatenate(
        [
            rng.uniform(-5000, 5000, 20000),
            np.arange(-20000, 20000) / 1000,  # every x.xx5: ties and near-ties
            np.arange(0, 8000) / 8,  # exact binary ties (0.125, 0.375, ...)
            [2.675, 1.005, 0.285, 1e7 + 0.005, -1e9 - 0.125, 123456.785],
        ]
    )
    assert rounded(values) == [round(float(v), 2) for v in values]
    polygon = cvat.polygon("x", values[:20000].reshape(-1, 2))
    assert json.dumps(polygon["points"]) == json.dumps([round(float(v), 2) for v in values[:20000]])
