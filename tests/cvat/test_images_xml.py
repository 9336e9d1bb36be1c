"""CVAT for images 1.1: every shape kind the functions answer, as CVAT's own dumper lays it out."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ElementTree

import numpy as np

from quadratseg_handlers import cvat
from quadratseg_handlers.cvat.images_xml import ImageAnnotations, mask_rle, write_images_xml


def written(images, labels=()) -> ElementTree.Element:
    stream = io.BytesIO()
    write_images_xml(stream, "corals", images, labels)
    text = stream.getvalue().decode("utf-8")
    assert text.startswith('<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>')
    return ElementTree.fromstring(text)


def test_shapes_of_every_kind_become_cvat_elements():
    bitmap = np.zeros((6, 8), dtype=bool)
    bitmap[2:4, 3:6] = True
    shapes = [
        cvat.polygon("Acropora", [10, 10, 50, 10, 50, 40], 0.87),
        cvat.rectangle("Porites", [1, 2, 30.5, 40], 0.5),
        cvat.mask("Fungia", bitmap, 0.9),
        cvat.skeleton(
            "quadrat_corner",
            [cvat.skeleton_element(str(i), (10.0 * i, 5.0), 0.8) for i in range(1, 5)],
        ),
        cvat.tag("bleached", 0.7),
    ]
    received = json.loads(cvat.answer_json(shapes))  # as a client reads the answer
    root = written(
        [ImageAnnotations("q1.png", 64, 48, received), ImageAnnotations("q2.png", 64, 48)],
        [cvat.label_spec("Acropora", "polygon")],
    )
    assert root.findtext("version") == "1.1"
    task = root.find("meta/task")
    assert task is not None and task.findtext("name") == "corals" and task.findtext("size") == "2"
    label = task.find("labels/label")
    assert label is not None and label.findtext("name") == "Acropora"
    assert label.findtext("type") == "polygon"
    assert label.findtext("attributes/attribute/values") == "0\n100\n1"
    first, second = root.findall("image")
    assert first.attrib == {"id": "0", "name": "q1.png", "width": "64", "height": "48"}
    assert list(second) == []
    polygon, box, mask, skeleton, tag = list(first)
    assert polygon.tag == "polygon" and polygon.attrib == {
        "label": "Acropora", "source": "auto", "occluded": "0",
        "points": "10.00,10.00;50.00,10.00;50.00,40.00", "z_order": "0",
    }  # fmt: skip
    assert [(a.get("name"), a.text) for a in polygon] == [("confidence", "87")]
    assert box.tag == "box" and (box.get("xtl"), box.get("ybr")) == ("1.00", "40.00")
    assert mask.tag == "mask"
    assert (mask.get("left"), mask.get("top"), mask.get("width"), mask.get("height")) == (
        "3", "2", "3", "2",
    )  # fmt: skip
    assert mask.get("rle") == "0, 6"  # the crop is all foreground
    assert skeleton.tag == "skeleton" and skeleton.get("label") == "quadrat_corner"
    nodes = skeleton.findall("points")
    assert [(n.get("label"), n.get("points"), n.get("outside")) for n in nodes] == [
        (str(i), f"{10.0 * i:.2f},5.00", "0") for i in range(1, 5)
    ]
    assert nodes[0].find("attribute").text == "80"
    assert tag.tag == "tag" and tag.get("label") == "bleached"


def test_mask_run_lengths_start_with_background():
    #  crop 2 x 3 at (4, 7): 0 1 1 / 1 0 0  -> runs 1, 3, 2
    assert mask_rle([0, 1, 1, 1, 0, 0, 4, 7, 6, 8]) == ([1, 3, 2], (4, 7, 3, 2))
    assert mask_rle([1, 1, 0, 0, 0, 0]) == ([0, 2], (0, 0, 1, 1))
