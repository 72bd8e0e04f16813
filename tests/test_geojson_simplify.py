"""GeoJSON polygons simplified within a tolerance in µm (weakseg-infer --geojson-simplify-um)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely

from weaksegtf.inference.writers import label_features, write_geojson

CLASSES = ["background", "gland"]
COLOURS = [(0, 0, 0), (255, 0, 0)]


def _polygon(feature: dict) -> shapely.Polygon:
    rings = feature["geometry"]["coordinates"]
    return shapely.Polygon(rings[0], rings[1:])


def test_staircase_becomes_its_hand_computed_simplification():
    labels = np.tril(np.ones((4, 4), np.uint8))  # a 1-px staircase: 10 pixels, 10 corners
    exact, = label_features(labels, CLASSES, COLOURS, 1.0, slide_mpp=1.0)
    simple, = label_features(labels, CLASSES, COLOURS, 1.0, slide_mpp=1.0, simplify_px=0.75)
    assert exact["geometry"]["coordinates"] == [[[0.0, 0.0], [0.0, 4.0], [4.0, 4.0], [4.0, 3.0], [3.0, 3.0],
                                                 [3.0, 2.0], [2.0, 2.0], [2.0, 1.0], [1.0, 1.0], [1.0, 0.0],
                                                 [0.0, 0.0]]]
    # Every inner step corner lies 1/sqrt(2) = 0.707 px from the diagonal, within 0.75: Douglas-Peucker drops
    # them and keeps the ring's start (0, 0), the far corner and the last step.
    assert simple["geometry"]["coordinates"] == [[[0.0, 4.0], [4.0, 4.0], [4.0, 3.0], [0.0, 0.0], [0.0, 4.0]]]
    assert simple["properties"]["measurements"]["Area µm^2"] == pytest.approx(10.0)  # shoelace of the 4 corners
    assert simple["id"] == exact["id"]


def test_disc_keeps_shape_validity_and_tolerance():
    yy, xx = np.mgrid[:64, :64]
    labels = (((yy - 32) ** 2 + (xx - 32) ** 2) < 20**2).astype(np.uint8)
    level0_px_per_px, mpp = 2.0, 0.5  # a label pixel is 2 level-0 pixels = 1 µm
    exact, = label_features(labels, CLASSES, COLOURS, level0_px_per_px, slide_mpp=mpp)
    exact_polygon = _polygon(exact)
    assert exact_polygon.area == labels.sum() * level0_px_per_px**2
    previous = len(exact["geometry"]["coordinates"][0])
    for tolerance_px in (1.0, 2.0, 4.0):
        simple, = label_features(labels, CLASSES, COLOURS, level0_px_per_px, slide_mpp=mpp, simplify_px=tolerance_px)
        polygon = _polygon(simple)
        vertices = len(simple["geometry"]["coordinates"][0])
        assert polygon.is_valid
        assert vertices < previous  # fewer vertices as the tolerance grows
        assert polygon.hausdorff_distance(exact_polygon) <= tolerance_px + 1e-6
        assert abs(polygon.area - exact_polygon.area) / exact_polygon.area < 0.05
        assert simple["properties"]["measurements"]["Area µm^2"] == pytest.approx(polygon.area * mpp**2, abs=1e-3)
        previous = vertices


def test_region_with_hole_stays_valid(tmp_path):
    labels = np.zeros((40, 40), np.uint8)
    labels[5:35, 5:35] = 1
    labels[15:25, 15:25] = 0  # a hole
    path = tmp_path / "a.geojson"
    assert write_geojson(path, labels, CLASSES, COLOURS, 1.0, slide_mpp=1.0, simplify_px=1.5) == 1
    feature, = json.loads(path.read_text())["features"]
    polygon = _polygon(feature)
    assert polygon.is_valid and len(polygon.interiors) == 1
    assert polygon.area == 30 * 30 - 10 * 10  # straight edges: nothing to simplify


def test_negative_tolerance_is_refused():
    with pytest.raises(ValueError, match="simplify_px must be a distance >= 0"):
        list(label_features(np.ones((2, 2), np.uint8), CLASSES, COLOURS, 1.0, simplify_px=-1))


def test_cli_rejects_a_negative_tolerance(capsys):
    from weaksegtf.cli.infer import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["model.onnx", "slide.svs", "--out", "o", "--geojson-simplify-um", "-1"])
    assert "--geojson-simplify-um must be >= 0, got -1" in capsys.readouterr().err
