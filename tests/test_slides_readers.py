"""Slide readers on real files: synthetic tiled TIFFs written here and the CMU slide."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from _slide_files import pyramid_levels, write_tiled_tiff

from weaksegtf.errors import ConfigError, SlideError
from weaksegtf.slides import (
    ArrayReader,
    ImageReader,
    OpenSlideReader,
    SlideReader,
    mpp_from_resolution,
    open_slide,
    write_pyramidal_tiff,
)

MPP = 0.5


@pytest.fixture(scope="module")
def base_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(1000, 700, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def levels(base_image) -> list[np.ndarray]:
    # Levels at 0.5, 1, 2 and 4 um/px; the blue channel holds the level index.
    return pyramid_levels(base_image, 4, mark_levels=True)


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory, levels) -> Path:
    return write_tiled_tiff(tmp_path_factory.mktemp("slides") / "pyramid.tif", levels, MPP)


def test_synthetic_pyramid_opens_as_generic_tiff_with_its_mpp(pyramid):
    with open_slide(pyramid) as slide:
        assert isinstance(slide, OpenSlideReader)
        assert slide.vendor == "generic-tiff"
        assert slide.mpp == pytest.approx(0.5)
        assert slide.level_count == 4
        assert slide.level_dimensions == ((700, 1000), (350, 500), (175, 250), (88, 125))
        assert [slide.level_mpp(level) for level in range(3)] == pytest.approx([0.5, 1.0, 2.0])


@pytest.mark.parametrize(
    ("target_mpp", "level"),
    [(0.25, 0), (0.5, 0), (0.99, 0), (1.0, 1), (1.005, 1), (1.5, 1), (2.0, 2), (3.9, 2),
     (4.0, 3), (100.0, 3)],
)
def test_level_chosen_is_closest_not_coarser_than_target(pyramid, target_mpp, level):
    # 0.99 must not take level 1 (1.0 um/px would be coarser than asked);
    # 1.005 is within the 1% tolerance of level 1.
    with open_slide(pyramid) as slide:
        assert slide.best_level_for_mpp(target_mpp) == level


def test_read_region_returns_exact_pixels_of_each_level(pyramid, levels):
    with open_slide(pyramid) as slide:
        region = slide.read_region((100, 200), 0, (64, 32))
        np.testing.assert_array_equal(region, levels[0][200:232, 100:164])
        # Level-1 reads take level-0 coordinates, like OpenSlide.
        region = slide.read_region((100, 200), 1, (40, 30))
        np.testing.assert_array_equal(region, levels[1][100:130, 50:90])


def test_read_at_mpp_reads_the_pyramid_level_not_level_0(pyramid, levels, monkeypatch):
    with open_slide(pyramid) as slide:
        calls = []
        original = slide._read_region

        def spy(location, level, size):
            calls.append((location, level, size))
            return original(location, level, size)

        monkeypatch.setattr(slide, "_read_region", spy)
        exact = slide.read_at_mpp((400, 600), (32, 32), mpp=2.0)
        np.testing.assert_array_equal(exact, levels[2][150:182, 100:132])
        between = slide.read_at_mpp((400, 600), (32, 32), mpp=3.0)
        expected = cv2.resize(levels[2][150:198, 100:148], (32, 32), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(between, expected)
        assert calls == [((400, 600), 2, (32, 32)), ((400, 600), 2, (48, 48))]
        assert (between[:, :, 2] == 2).all()  # the blue channel names level 2


def test_outside_the_slide_reads_white(pyramid, levels):
    with open_slide(pyramid) as slide:
        region = slide.read_region((680, 990), 0, (40, 20))
    np.testing.assert_array_equal(region[:10, :20], levels[0][990:1000, 680:700])
    assert (region[10:] == 255).all() and (region[:, 20:] == 255).all()


def test_size_at_mpp_and_thumbnail(pyramid):
    with open_slide(pyramid) as slide:
        assert slide.size_at_mpp(2.0) == (175, 250)
        thumbnail, thumbnail_mpp = slide.thumbnail(max_size_px=125)
        assert thumbnail.shape == (125, 88, 3)
        assert thumbnail_mpp == pytest.approx(4.0)


def test_closed_reader_refuses_reads(pyramid):
    slide = open_slide(pyramid)
    with slide:
        pass
    with pytest.raises(SlideError, match="pyramid.tif is closed"):
        slide.read_region((0, 0), 0, (8, 8))


def test_bad_level_and_size_are_config_errors(pyramid):
    with open_slide(pyramid) as slide:
        with pytest.raises(ConfigError, match="level 4 does not exist in pyramid.tif; expected 0 to 3"):
            slide.read_region((0, 0), 4, (8, 8))
        with pytest.raises(ConfigError, match=r"got \(0, 8\)"):
            slide.read_region((0, 0), 0, (0, 8))
        with pytest.raises(ConfigError, match="got -1"):
            slide.read_at_mpp((0, 0), (8, 8), mpp=-1)


def test_write_pyramidal_tiff_round_trips(tmp_path, base_image):
    path = tmp_path / "written.tif"
    sizes = write_pyramidal_tiff(path, base_image, mpp=0.25, n_levels=3)
    assert sizes == [(700, 1000), (350, 500), (175, 250)]
    with open_slide(path) as slide:
        assert slide.mpp == pytest.approx(0.25)
        assert slide.level_dimensions == tuple(sizes)
        np.testing.assert_array_equal(slide.read_region((0, 0), 0, (700, 1000)), base_image)


def test_inch_resolution_is_read(tmp_path, levels):
    path = write_tiled_tiff(tmp_path / "inch.tif", levels[:2], mpp=0.25, unit="INCH")
    with open_slide(path) as slide:
        assert slide.mpp == pytest.approx(0.25)


def test_array_reader_has_the_same_interface(base_image):
    reader = ArrayReader(base_image, mpp=0.5, downsamples=(1, 2, 4))
    assert isinstance(reader, SlideReader)
    assert reader.level_dimensions == ((700, 1000), (350, 500), (175, 250))
    assert reader.best_level_for_mpp(1.9) == 1
    np.testing.assert_array_equal(reader.read_region((10, 20), 0, (5, 6)), base_image[20:26, 10:15])
    with pytest.raises(ConfigError, match="downsamples must start at 1"):
        ArrayReader(base_image, mpp=0.5, downsamples=(2, 4))


def test_plain_png_needs_an_mpp(tmp_path, base_image):
    path = tmp_path / "plain.png"
    cv2.imwrite(str(path), base_image[:100, :80, ::-1])
    with pytest.raises(SlideError, match=r"plain.png has no resolution.*pass mpp="):
        open_slide(path)
    with open_slide(path, mpp=0.62) as image:
        assert isinstance(image, ImageReader)
        assert image.mpp == 0.62
        np.testing.assert_array_equal(image.read_region((0, 0), 0, (80, 100)), base_image[:100, :80])


def test_flat_tiff_reads_its_resolution_tags(tmp_path, base_image):
    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, base_image[:64, :48], resolution=(1e4 / 0.62, 1e4 / 0.62),
                     resolutionunit="CENTIMETER", photometric="rgb")
    with open_slide(path) as image:
        assert isinstance(image, ImageReader)
        assert image.mpp == pytest.approx(0.62)
        assert image.dimensions == (48, 64)


def test_mpp_from_resolution_units():
    assert mpp_from_resolution(20000.0, "centimeter") == pytest.approx(0.5)
    assert mpp_from_resolution(101600.0, "INCH") == pytest.approx(0.25)
    assert mpp_from_resolution(1.0, "none") is None
    assert mpp_from_resolution(72.0, "inch") is None  # an editor's default, not a microscope


# ---------------------------------------------------------------------- the real slide
def test_cmu_slide_geometry_and_mpp(cmu_slide):
    with open_slide(cmu_slide) as slide:
        assert slide.vendor == "aperio"
        assert slide.mpp == pytest.approx(0.499)
        assert slide.level_dimensions == ((2220, 2967),)
        tile = slide.read_at_mpp((1000, 1500), (128, 128), mpp=2.0)
        assert tile.shape == (128, 128, 3) and tile.dtype == np.uint8


def test_cmu_mpp_can_be_overridden(cmu_slide):
    with open_slide(cmu_slide, mpp=0.25) as slide:
        assert slide.mpp == 0.25
        assert slide.size_at_mpp(1.0) == (555, 742)


# ---------------------------------------------------------------------- bad input
def test_truncated_slide_is_named_as_truncated(tmp_path, cmu_slide):
    data = cmu_slide.read_bytes()
    path = tmp_path / "cut.svs"
    path.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(SlideError, match=r"cut.svs: it is corrupt or truncated: directory 1 starts"):
        open_slide(path)


def test_corrupt_tile_fails_on_read_naming_the_file(tmp_path, cmu_slide):
    data = bytearray(cmu_slide.read_bytes())
    with tifffile.TiffFile(cmu_slide) as tif:
        offset, count = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    data[offset : offset + count] = bytes(count)
    path = tmp_path / "corrupt.svs"
    path.write_bytes(bytes(data))
    with open_slide(path) as slide:
        with pytest.raises(SlideError, match=r"corrupt.svs is corrupt or truncated: reading 64x64 px"):
            slide.read_region((0, 0), 0, (64, 64))


def test_not_a_slide(tmp_path):
    path = tmp_path / "notes.svs"
    path.write_text("these are my notes, not a slide\n")
    with pytest.raises(SlideError, match=r"notes.svs: it is not a slide \(32 bytes starting with b'thes'\)"):
        open_slide(path)


def test_truncated_png_is_refused(tmp_path, base_image):
    path = tmp_path / "cut.png"
    ok, encoded = cv2.imencode(".png", base_image[:200, :200])
    path.write_bytes(encoded.tobytes()[:5000])
    with pytest.raises(SlideError, match=r"cannot decode image .*cut.png .*corrupt, truncated"):
        open_slide(path, mpp=0.5)


def test_slide_without_mpp_and_override(tmp_path, levels):
    path = write_tiled_tiff(tmp_path / "nores.tif", levels[:2], mpp=None)
    with pytest.raises(SlideError, match=r"nores.tif has no resolution.*pass mpp= \(or --mpp"):
        open_slide(path)
    with open_slide(path, mpp=0.5) as slide:
        assert slide.mpp == 0.5 and slide.level_count == 2


def test_missing_file(tmp_path):
    with pytest.raises(SlideError, match="absent.svs does not exist"):
        open_slide(tmp_path / "absent.svs")


def test_copy_of_real_slide_with_other_suffix_still_opens(tmp_path, cmu_slide):
    # Routing is by content for TIFF-like files, not only by suffix.
    path = tmp_path / "cmu.tif"
    shutil.copy(cmu_slide, path)
    with open_slide(path) as slide:
        assert isinstance(slide, OpenSlideReader)
        assert slide.dimensions == (2220, 2967)


def test_openslide_properties_fall_back_to_tiff_tags():
    from weaksegtf.slides.openslide_reader import _mpp_from_properties

    assert _mpp_from_properties({"openslide.mpp-x": "0.25", "openslide.mpp-y": "0.27"}) == pytest.approx(0.26)
    tags = {"tiff.XResolution": "40000", "tiff.ResolutionUnit": "centimeter"}
    assert _mpp_from_properties(tags) == pytest.approx(0.25)
    assert _mpp_from_properties({"tiff.XResolution": "1", "tiff.ResolutionUnit": "none"}) is None
