# ruff: noqa: E501 (CVAT's XML lines as CVAT writes them)
"""Reading CVAT exports: the layouts CVAT's own exporters write (cvat/apps/dataset_manager/
formats/cvat.py; datumaro's COCO exporter behind "COCO 1.0" and "COCO Keypoints 1.0"), checked
on literal files whose truth is counted by hand, then on drawn exports in both formats."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from quadratseg_handlers.demo.exports import drawn_images, save_images, write_export
from quadratseg_handlers.evaluate.exports import (
    COCO_FORMAT,
    KEYPOINTS_FORMAT,
    XML_FORMAT,
    ExportError,
    decode,
    open_export,
)

# As CVAT 2.x writes a task export: meta with labels (a skeleton's nodes as labels with a
# parent), then per image the shapes; a mask's rle is a Python list's text without brackets.
CVAT_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>7</id>
      <name>lab quadrats</name>
      <size>1</size>
      <mode>annotation</mode>
      <labels>
        <label>
          <name>Porites</name>
          <color>#33ddff</color>
          <type>any</type>
          <attributes>
          </attributes>
        </label>
        <label>
          <name>quadrat_corner</name>
          <color>#fa3253</color>
          <type>skeleton</type>
          <attributes>
            <attribute>
              <name>confidence</name>
              <mutable>False</mutable>
              <input_type>number</input_type>
              <default_value>0</default_value>
              <values>0\n100\n1</values>
            </attribute>
          </attributes>
        </label>
        <label>
          <name>1</name>
          <type>points</type>
          <parent>quadrat_corner</parent>
        </label>
      </labels>
    </task>
    <dumped>2026-12-01 10:00:00.000000+00:00</dumped>
  </meta>
  <image id="0" name="photo.jpg" width="8" height="6">
    <mask label="Porites" source="manual" occluded="0" rle="1, 2, 2, 1" left="2" top="1" width="3" height="2" z_order="0">
    </mask>
    <polygon label="Porites" source="manual" occluded="0" points="0.00,3.00;3.00,3.00;3.00,5.00;0.00,5.00" z_order="0" group_id="1">
    </polygon>
    <polygon label="Porites" source="manual" occluded="0" points="5.00,4.00;7.00,4.00;7.00,5.00" z_order="0" group_id="1">
    </polygon>
    <skeleton label="quadrat_corner" source="manual" z_order="0">
      <points label="1" source="manual" outside="0" occluded="0" points="1.00,1.00">
      </points>
      <points label="2" source="manual" outside="1" occluded="0" points="7.00,1.00">
      </points>
      <points label="3" source="manual" outside="0" occluded="1" points="7.00,5.00">
      </points>
      <points label="4" source="manual" outside="0" occluded="0" points="1.50,5.25">
      </points>
      <attribute name="confidence">87</attribute>
    </skeleton>
  </image>
</annotations>
"""


def _photo(folder, name="photo.jpg", size=(8, 6)):
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(folder / name)


def test_cvat_xml_masks_polygons_and_skeletons_as_cvat_writes_them(tmp_path):
    (tmp_path / "annotations.xml").write_text(CVAT_XML)
    _photo(tmp_path / "images")
    with open_export(tmp_path) as export:
        assert export.format == XML_FORMAT
        assert export.declared_labels == ["Porites", "quadrat_corner"]
        assert export.label_kinds() == {"Porites": "instances", "quadrat_corner": "skeleton"}
        (image,) = export.images
        assert (image.name, image.width, image.height) == ("photo.jpg", 8, 6)
        assert image.path == tmp_path / "images" / "photo.jpg"
        masks = [decode(rle) for _, rle in image.instances]
    assert len(masks) == 2  # the mask, and the two polygons of group 1 as one instance
    # rle 1, 2, 2, 1 over the 3 x 2 box at (2, 1): 0 1 1 / 0 0 1
    assert sorted(zip(*np.nonzero(masks[0]), strict=True)) == [(1, 3), (1, 4), (2, 4)]
    assert masks[1][4, 1] and masks[1][4, 6] and not masks[1][1, 1]
    (skeleton,) = image.skeletons
    assert skeleton.label == "quadrat_corner"
    assert skeleton.points == {"1": (1.0, 1.0), "3": (7.0, 5.0), "4": (1.5, 5.25)}


def test_coco_instances_rle_and_polygons_as_datumaro_writes_them(tmp_path):
    data = {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {},
        "categories": [{"id": 1, "name": "Fungia", "supercategory": ""}],
        "images": [{"id": 5, "width": 4, "height": 3, "file_name": "q.png", "license": 0}],
        "annotations": [
            # uncompressed RLE, column-major: pixels (x=1, y=0) and (x=1, y=1)
            {"id": 1, "image_id": 5, "category_id": 1, "iscrowd": 1, "area": 2.0,
             "bbox": [1, 0, 1, 2], "segmentation": {"counts": [3, 2, 7], "size": [3, 4]}},
            {"id": 2, "image_id": 5, "category_id": 1, "iscrowd": 0, "area": 1.0,
             "bbox": [3, 2, 0, 0], "segmentation": [[3.0, 2.0, 3.0, 2.0, 3.0, 2.0]]},
        ],
    }  # fmt: skip
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_default.json").write_text(json.dumps(data))
    _photo(tmp_path / "images" / "default", "q.png", (4, 3))
    with open_export(tmp_path) as export:
        assert export.format == COCO_FORMAT
        (image,) = export.images
        masks = [decode(rle) for _, rle in image.instances]
    assert sorted(zip(*np.nonzero(masks[0]), strict=True)) == [(0, 1), (1, 1)]
    assert masks[1][2, 3] and masks[1].sum() == 1


def test_coco_keypoints_leave_out_absent_nodes(tmp_path):
    data = {
        "categories": [
            {"id": 1, "name": "grid", "supercategory": "", "keypoints": ["1", "2", "3"],
             "skeleton": []},
            {"id": 2, "name": "1", "supercategory": "grid", "keypoints": [], "skeleton": []},
        ],
        "images": [{"id": 1, "width": 8, "height": 6, "file_name": "q.png"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [], "iscrowd": 0,
             "keypoints": [1, 2, 2, 0, 0, 0, 5.5, 4, 1], "num_keypoints": 2},
        ],
    }  # fmt: skip
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "person_keypoints_default.json").write_text(json.dumps(data))
    _photo(tmp_path / "images", "q.png")
    with open_export(tmp_path) as export:
        assert export.format == KEYPOINTS_FORMAT
        assert export.declared_labels == ["grid"]
        (skeleton,) = export.images[0].skeletons
    assert skeleton.points == {"1": (1.0, 2.0), "3": (5.5, 4.0)}


@pytest.fixture(scope="module")
def corals():
    return drawn_images("pth-yolo-coralsegv4", 2, warp=256)


@pytest.mark.parametrize("masks", [True, False], ids=["masks", "polygons"])
def test_drawn_exports_read_the_same_in_both_formats(tmp_path, corals, masks):
    """The XML and the COCO export of the same drawing give the same instances (exactly the
    drawn masks when written as masks)."""
    write_export(corals, tmp_path / "cvat.zip", "cvat", masks=masks)
    write_export(corals, tmp_path / "coco", "coco", masks=masks)
    with open_export(tmp_path / "cvat.zip") as xml, open_export(tmp_path / "coco") as coco:
        assert (xml.format, coco.format) == (XML_FORMAT, COCO_FORMAT)
        for drawn, left, right in zip(corals, xml.images, coco.images, strict=True):
            assert [label for label, _ in left.instances] == [name for name, _ in drawn.instances]
            for (_, a), (_, b), (_, truth) in zip(
                left.instances, right.instances, drawn.instances, strict=True
            ):
                assert np.array_equal(decode(a), decode(b))
                if masks:
                    assert np.array_equal(decode(a), truth)


def test_images_outside_the_export_come_from_images_dir(tmp_path, corals):
    write_export(corals, tmp_path / "export.zip", "cvat", with_images=False)
    missing = r"image 'quadrat_000.png' \(and 1 more\) is not in the"
    with pytest.raises(ExportError, match=missing), open_export(tmp_path / "export.zip"):
        pass
    save_images(corals, tmp_path / "photos")
    with open_export(tmp_path / "export.zip", tmp_path / "photos") as export:
        assert [image.path for image in export.images] == [
            tmp_path / "photos" / drawn.name for drawn in corals
        ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04 cut short", "not a complete zip archive"),
        (None, "no annotations.xml"),
        (b"<annotations><image id='0' name='a.jpg'/></annotations>", "no width and height"),
        (b"<html></html>", "not a CVAT for images export"),
        (b"<annotations><image", "not a readable CVAT XML file"),
    ],
    ids=["damaged-zip", "empty-zip", "no-size", "not-cvat", "broken-xml"],
)
def test_an_unreadable_export_is_one_line(tmp_path, content, message):
    path = tmp_path / "export.zip"
    if content is None or content.startswith(b"<"):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt" if content is None else "annotations.xml", content or "")
    else:
        path.write_bytes(content)
    with pytest.raises(ExportError, match=message) as caught, open_export(path):
        pass
    assert "\n" not in str(caught.value)
