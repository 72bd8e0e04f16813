import numpy as np
import pytest

from weaksegtf.errors import ConfigError
from weaksegtf.tiling import tile_grid, tile_origins


def test_origins_cover_axis_with_flush_last_tile():
    assert tile_origins(300, 128, 128).tolist() == [0, 128, 172]
    assert tile_origins(256, 128, 128).tolist() == [0, 128]
    assert tile_origins(256, 128, 64).tolist() == [0, 64, 128]


def test_short_axis_gives_single_origin():
    assert tile_origins(100, 128, 128).tolist() == [0]


def test_grid_exact_coordinates():
    grid = tile_grid(200, 300, 128)
    expected = [[0, 0], [0, 128], [0, 172], [72, 0], [72, 128], [72, 172]]
    assert grid.tolist() == expected
    assert grid.dtype == np.int64


def test_bad_stride_is_refused():
    with pytest.raises(ConfigError, match="got 128 and 0"):
        tile_origins(300, 128, 0)
