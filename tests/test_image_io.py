import numpy as np
import pytest
from PIL import Image

from hemascope.errors import ImageReadError
from hemascope.io.image import read_header, read_image, read_mask, verify_image, write_image
from hemascope.synthetic import make_cell


@pytest.fixture
def rgb():
    return make_cell("monocyte", seed=3, size=40).image


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_lossless_round_trip(tmp_path, rgb, suffix):
    p = write_image(tmp_path / f"x{suffix}", rgb)
    out = read_image(p)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    np.testing.assert_array_equal(out, rgb)


def test_jpeg_is_close(tmp_path, rgb):
    out = read_image(write_image(tmp_path / "x.jpg", rgb, quality=95))
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() < 8  # noisy cartoon, 4:2:0 chroma


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (6, 8, 3)
    assert (out[..., 0] == gray).all() and (out[..., 2] == gray).all()


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0] = 200
    a[:2, :, 3] = 255  # top opaque red, bottom fully transparent
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert tuple(out[0, 0]) == (200, 0, 0)
    assert tuple(out[3, 3]) == (255, 255, 255)


def test_16bit_png_and_tiff_scaled_by_full_range(tmp_path):
    import tifffile

    g16 = np.array([[0, 257 * 100], [65535, 257 * 7]], np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    assert out[..., 0].tolist() == [[0, 100], [255, 7]]
    rgb16 = np.zeros((3, 5, 3), np.uint16)
    rgb16[..., 1] = 65535
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    out = read_image(tmp_path / "rgb16.tif")
    assert out.shape == (3, 5, 3) and (out[..., 1] == 255).all() and (out[..., 0] == 0).all()


def test_multipage_tiff_pages(tmp_path):
    import tifffile

    pages = np.stack([np.full((4, 6, 3), v, np.uint8) for v in (10, 20, 30)])
    tifffile.imwrite(tmp_path / "m.tif", pages, photometric="rgb")
    assert read_image(tmp_path / "m.tif", page=2)[0, 0, 0] == 30
    with pytest.raises(ImageReadError, match="page 5 requested but the file has 3"):
        read_image(tmp_path / "m.tif", page=5)


def test_exif_orientation_applied(tmp_path):
    a = np.zeros((2, 6, 3), np.uint8)  # wide image stored with "rotate 90" tag
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "o.jpg", exif=exif)
    assert read_image(tmp_path / "o.jpg").shape[:2] == (6, 2)


def test_truncated_jpeg_is_one_clear_error(tmp_path, rgb):
    p = write_image(tmp_path / "t.jpg", rgb)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated") as exc:
        read_image(p)
    assert exc.value.path == p
    with pytest.raises(ImageReadError, match="truncated"):
        verify_image(p)


@pytest.mark.parametrize("content, reason", [
    (b"", "empty"), (b"not an image at all", "not a recognised image"),
])
def test_empty_and_garbage_files(tmp_path, content, reason):
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason):
        read_image(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    p = write_image(tmp_path / "big.png", np.zeros((300, 400, 3), np.uint8))
    with pytest.raises(ImageReadError, match="above the limit"):
        read_image(p, max_pixels=100_000)
    assert read_header(p).width == 400


def test_read_mask_keeps_palette_indices(tmp_path):
    m = np.array([[0, 1], [2, 5]], np.uint8)
    im = Image.fromarray(m, "P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [9] * (256 * 3 - 9))
    im.save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), m)


def test_read_mask_rejects_colour_masks(tmp_path):
    a = np.zeros((3, 3, 3), np.uint8)
    a[0, 0] = (255, 0, 0)
    Image.fromarray(a).save(tmp_path / "c.png")
    with pytest.raises(ImageReadError, match="differing colour channels"):
        read_mask(tmp_path / "c.png")


def test_write_image_is_atomic_on_failure(tmp_path):
    with pytest.raises(ValueError):
        write_image(tmp_path / "x.png", np.zeros((2, 2), np.float32))
    assert list(tmp_path.iterdir()) == []
