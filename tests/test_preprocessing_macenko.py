"""Macenko stain normalisation: round trip, robustness, batches, persistence."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from weaksegtf.errors import ConfigError, DataError
from weaksegtf.preprocessing import MacenkoNormalizer, StainWarning
from weaksegtf.slides import open_slide

# Ruifrok & Johnston's H and E optical-density vectors.
HAEMATOXYLIN = np.array([0.65, 0.70, 0.29])
EOSIN = np.array([0.07, 0.99, 0.11])


def concentrations(seed: int = 0, size: int = 64) -> np.ndarray:
    """Random H and E amounts, with white glass in the top quarter."""
    amounts = np.random.default_rng(seed).uniform(0.0, 1.5, size=(size, size, 2))
    amounts[: size // 4] = 0.0
    return amounts


def render(amounts: np.ndarray, haematoxylin=HAEMATOXYLIN, eosin=EOSIN) -> np.ndarray:
    """RGB of stain amounts under Beer-Lambert, I = 256 exp(-OD) - 1."""
    stains = np.stack([haematoxylin / np.linalg.norm(haematoxylin), eosin / np.linalg.norm(eosin)])
    density = amounts @ stains
    return np.clip(np.rint(256.0 * np.exp(-density) - 1.0), 0, 255).astype(np.uint8)


def two_stain_image(seed: int = 0) -> np.ndarray:
    return render(concentrations(seed))


@pytest.fixture(scope="module")
def cmu_tile(cmu_slide) -> np.ndarray:
    with open_slide(cmu_slide) as slide:
        return slide.read_region((1100, 1800), 0, (256, 256))  # all tissue


def test_round_trip_on_a_two_stain_image_is_exact_to_one_level():
    image = two_stain_image()
    normalizer = MacenkoNormalizer().fit(image)
    assert np.abs(normalizer.transform(image).astype(int) - image).max() <= 1
    # Haematoxylin, the first column, is found; eosin is the most eosin-like
    # colour among pixels dense enough in all three channels, so only near.
    haematoxylin = HAEMATOXYLIN / np.linalg.norm(HAEMATOXYLIN)
    assert normalizer.stain_matrix[:, 0] @ haematoxylin > 0.999
    assert normalizer.stain_matrix[:, 1] @ (EOSIN / np.linalg.norm(EOSIN)) > 0.99


def test_round_trip_on_the_real_slide(cmu_tile):
    # Macenko keeps only the two-stain part of each colour: close, not equal.
    canonical = MacenkoNormalizer().fit(cmu_tile).transform(cmu_tile)
    assert np.abs(canonical.astype(int) - cmu_tile).mean() < 8.0
    # Keeping the residual makes the round trip exact.
    residual = MacenkoNormalizer(keep_residual=True).fit(cmu_tile).transform(cmu_tile)
    assert np.abs(residual.astype(int) - cmu_tile).max() <= 1


def test_normalisation_undoes_another_lab_s_staining():
    amounts = concentrations(seed=1)
    reference = render(amounts)
    # The same tissue stained 30% darker with other dyes.
    other = render(1.3 * amounts, np.array([0.55, 0.78, 0.30]), np.array([0.15, 0.95, 0.25]))
    normalized = MacenkoNormalizer().fit(reference).transform(other)
    before = np.abs(other.astype(float) - reference).mean()
    after = np.abs(normalized.astype(float) - reference).mean()
    assert before > 15 and after < before / 4


def test_white_and_flat_tiles_pass_through_and_are_counted(cmu_tile):
    normalizer = MacenkoNormalizer().fit(cmu_tile)
    white = np.full((32, 32, 3), 255, np.uint8)
    nearly_white = white.copy()
    nearly_white[0, :3] = (120, 60, 140)  # 3 stained pixels of 1024
    flat = np.full((32, 32, 3), (150, 80, 160), np.uint8)
    batch = np.stack([white, nearly_white, flat, cmu_tile[:32, :32]])
    with pytest.warns(StainWarning, match="left unchanged"):
        out = normalizer.transform(batch)
    np.testing.assert_array_equal(out[:3], batch[:3])
    assert not np.isnan(out.astype(float)).any()
    assert (normalizer.n_unchanged, normalizer.n_transformed) == (3, 1)


def test_batch_equals_one_tile_at_a_time(cmu_tile):
    normalizer = MacenkoNormalizer().fit(cmu_tile)
    tiles = np.stack([cmu_tile[:64, :64], cmu_tile[64:128, 64:128], cmu_tile[128:192, :64]])
    batch = normalizer.transform(tiles)
    for tile, out in zip(tiles, batch):
        np.testing.assert_array_equal(normalizer.transform(tile), out)


def test_save_and_load(tmp_path, cmu_tile):
    normalizer = MacenkoNormalizer(alpha=2.0).fit(cmu_tile)
    normalizer.save(tmp_path / "stain.json")
    loaded = MacenkoNormalizer.load(tmp_path / "stain.json")
    assert loaded.get_config() == normalizer.get_config()
    np.testing.assert_array_equal(loaded.transform(cmu_tile), normalizer.transform(cmu_tile))
    (tmp_path / "other.json").write_text('{"type": "Something"}')
    with pytest.raises(DataError, match="cannot load stain normaliser .*other.json"):
        MacenkoNormalizer.load(tmp_path / "other.json")


def test_every_reader_of_a_reference_checks_it_and_names_its_file(tmp_path, cmu_tile):
    import json

    from weaksegtf.model_card import prepared_set_info
    from weaksegtf.preprocessing.macenko_normalizer import read_stain_reference

    normalizer = MacenkoNormalizer().fit(cmu_tile)
    normalizer.save(tmp_path / "stain.json")
    document = json.loads((tmp_path / "stain.json").read_text())
    # The ONNX metadata may hold the matrix and concentrations alone (no type, no config).
    bare = {key: document[key] for key in ("stain_matrix", "max_concentrations")}
    np.testing.assert_array_equal(MacenkoNormalizer.from_reference(bare).transform(cmu_tile),
                                  normalizer.transform(cmu_tile))
    bad = dict(document, stain_matrix=[[0.6, 0.1], [0.7, 0.9]])
    with pytest.raises(DataError, match=r"in the metadata of m.onnx: stain_matrix has shape \(2, 2\)"):
        MacenkoNormalizer.from_reference(bad, "in the metadata of m.onnx")
    with pytest.raises(DataError, match="no stain_matrix and max_concentrations"):
        read_stain_reference({"config": {}})
    # A training folder's reference (weakseg-prepare's stain_normalizer.json) is checked too.
    (tmp_path / "summary.json").write_text(json.dumps({"patch_mpp": 2.0}))
    (tmp_path / "stain_normalizer.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="stain_normalizer.json: it holds a list"):
        prepared_set_info(tmp_path / "masks_set")


def test_misuse_is_reported():
    with pytest.raises(ConfigError, match="before fit"):
        MacenkoNormalizer().transform(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="stain reference of shape \\(8, 8, 3\\) has too little stain"):
        MacenkoNormalizer().fit(np.full((8, 8, 3), 255, np.uint8))
    with pytest.raises(DataError, match="expected uint8 RGB"):
        MacenkoNormalizer().fit(np.zeros((8, 8), np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from NaNs anywhere
        normalizer = MacenkoNormalizer().fit(two_stain_image())
        with pytest.raises(StainWarning):
            normalizer.transform(np.zeros((2, 16, 16, 3), np.uint8) + 255)
