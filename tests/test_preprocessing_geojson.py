"""QuPath GeoJSON rasterisation and annotation masks checked against the slide."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from weaksegtf.errors import DataError
from weaksegtf.preprocessing import (
    LabelMap,
    check_aspect,
    rasterize_geojson,
    read_label_image,
    remap_labels,
)


def square(a: float, b: float) -> list[list[float]]:
    return [[a, a], [b, a], [b, b], [a, b], [a, a]]


def feature(name: str | None, *rings, kind: str = "Polygon") -> dict:
    properties = {"objectType": "annotation"}
    if name is not None:
        properties["classification"] = {"name": name, "color": [255, 0, 0]}
    coordinates = [list(rings)] if kind == "MultiPolygon" else list(rings)
    return {"type": "Feature", "geometry": {"type": kind, "coordinates": coordinates},
            "properties": properties}


def write(path: Path, *features: dict) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": list(features)}))
    return path


def test_square_at_two_downsamples(tmp_path):
    path = write(tmp_path / "a.geojson", feature("Tumor", square(10, 30)))
    full = rasterize_geojson(path, {"Tumor": 1}, (40, 40), downsample=1.0)
    # Pixels whose centres lie in [10, 30] level-0 px, boundary included.
    assert np.argwhere(full == 1).min(axis=0).tolist() == [10, 10]
    assert np.argwhere(full == 1).max(axis=0).tolist() == [30, 30]
    assert set(np.unique(full)) == {1, 255}
    half = rasterize_geojson(path, {"Tumor": 1}, (20, 20), downsample=2.0, outside_value=0)
    assert np.argwhere(half == 1).min(axis=0).tolist() == [5, 5]
    assert np.argwhere(half == 1).max(axis=0).tolist() == [15, 15]
    assert set(np.unique(half)) == {0, 1}


def test_holes_nesting_and_multipolygons(tmp_path):
    path = write(
        tmp_path / "b.geojson",
        feature("Tumor", square(15, 25)),  # nested: drawn after the larger stroma
        feature("Stroma", square(2, 38), square(5, 10)),  # with a hole
        feature("Tumor", square(30, 35), kind="MultiPolygon"),
    )
    raster = rasterize_geojson(path, {"Stroma": 2, "Tumor": 1}, (40, 40), 1.0)
    assert raster[20, 20] == 1  # nested tumour wins over stroma
    assert raster[7, 7] == 255  # the hole of the stroma
    assert raster[3, 20] == 2
    assert raster[32, 32] == 1  # multipolygon part


def test_class_missing_from_map_names_the_file_and_class(tmp_path):
    path = write(tmp_path / "slide_7.geojson", feature("Tumor", square(0, 5)),
                 feature("Necrosis", square(5, 9)))
    with pytest.raises(DataError, match=r"slide_7.geojson: feature 1 has class 'Necrosis', which is "
                       r"not in the class map \{'Tumor': 1\}"):
        rasterize_geojson(path, {"Tumor": 1}, (10, 10), 1.0)


def test_unclassified_features_use_their_own_name(tmp_path):
    path = write(tmp_path / "c.geojson", feature(None, square(0, 5)))
    with pytest.raises(DataError, match="class 'Unclassified'"):
        rasterize_geojson(path, {"Tumor": 1}, (10, 10), 1.0)
    raster = rasterize_geojson(path, {"Unclassified": 3}, (10, 10), 1.0)
    assert raster[2, 2] == 3


def test_not_geojson_is_refused(tmp_path):
    path = tmp_path / "d.geojson"
    path.write_text("{not json")
    with pytest.raises(DataError, match="d.geojson is not valid JSON"):
        rasterize_geojson(path, {"Tumor": 1}, (10, 10), 1.0)
    path.write_text(json.dumps({"type": "Point", "coordinates": [1, 2]}))
    with pytest.raises(DataError, match="expected a FeatureCollection"):
        rasterize_geojson(path, {"Tumor": 1}, (10, 10), 1.0)


def test_aspect_mismatch_names_both_files():
    check_aspect((185, 139), (2220, 2967), "m.png", "s.svs")  # level size, rounded: fine
    with pytest.raises(DataError, match=r"annotation mask m.png is 300x100 px \(aspect 3.0000\) but "
                       r"slide s.svs is 2220x2967 px"):
        check_aspect((100, 300), (2220, 2967), "m.png", "s.svs")


def test_label_map_reads_nearest_and_pads_outside():
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)  # 4 x 3 over a 40 x 30 slide
    label_map = LabelMap(labels, (40, 30))
    assert label_map.downsample == 10.0
    crop, inside = label_map.read((5, 5), (20, 20), (4, 4))
    assert crop.tolist() == [[0, 1, 1, 2], [4, 5, 5, 6], [4, 5, 5, 6], [8, 9, 9, 10]]
    crop, inside = label_map.read((30, 20), (20, 20), (2, 2))
    assert crop.tolist() == [[11, 255], [255, 255]] and inside.tolist() == [[True, False], [False, False]]


def test_read_label_image_variants(tmp_path):
    grey = np.array([[0, 1], [2, 255]], np.uint8)
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    assert read_label_image(tmp_path / "grey.png").tolist() == grey.tolist()
    cv2.imwrite(str(tmp_path / "rgb.png"), np.repeat(grey[:, :, None], 3, axis=2))
    assert read_label_image(tmp_path / "rgb.png").tolist() == grey.tolist()
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    cv2.imwrite(str(tmp_path / "colour.png"), colour)
    with pytest.raises(DataError, match="colour.png has 3 channels that differ"):
        read_label_image(tmp_path / "colour.png")
    with pytest.raises(DataError, match="mask.jpg has suffix '.jpg'"):
        (tmp_path / "mask.jpg").write_bytes(b"")
        read_label_image(tmp_path / "mask.jpg")
    assert remap_labels(np.array([[0, 255]], np.uint8), {255: 1}).tolist() == [[0, 1]]
