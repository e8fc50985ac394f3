import numpy as np
import pytest
import torch
from PIL import Image

from ddib.color import colorize, digit_hue, hue_difference
from ddib.data.colored_mnist import color_digits, colored_mnist, split_hues
from ddib.data.domains import domain_source, load_domain_images
from ddib.errors import DDIBError
from ddib.io.images import image_grid, load_image, to_pil

from .conftest import mnist_dir, needs_mnist


def _stroke(size=28):
    g = torch.zeros(1, size, size, dtype=torch.uint8)
    g[0, 6:22, 12:16] = 255
    g[0, 6:9, 8:20] = 180
    return g


@pytest.mark.parametrize("hue", [0.0, 37.0, 120.0, 200.5, 299.0, 359.0])
def test_colouring_hue_is_read_back(hue):
    img = color_digits(_stroke(), torch.tensor([hue]), image_size=32)
    assert img.shape == (1, 3, 32, 32) and img.dtype == torch.uint8
    read, share = digit_hue(img.float() / 127.5 - 1)
    assert share.item() > 0.05
    assert hue_difference(read, torch.tensor([hue])).item() < 2.0


def test_colouring_is_full_saturation_value_is_grey():
    grey = torch.linspace(0, 1, 11)[None, None, :].expand(1, 4, 11)
    rgb = colorize(grey, torch.tensor([77.0]))
    assert torch.allclose(rgb.max(dim=1).values, grey, atol=1e-6)  # V = grey level
    assert torch.allclose(rgb.min(dim=1).values, torch.zeros_like(grey), atol=1e-6)  # S = 1


def test_hues_are_seeded_by_split_and_index():
    a, b = split_hues("train", 100), split_hues("train", 100)
    assert np.array_equal(a, b)
    assert not np.allclose(split_hues("test", 100), a)
    assert a.min() >= 0 and a.max() < 360


@needs_mnist
def test_colored_mnist_digit_domain_matches_recipe():
    images, idx = colored_mnist(mnist_dir(), 5, "test", limit=16)
    hues = torch.from_numpy(split_hues("test", 10_000))[idx]
    read, _ = digit_hue(images.float() / 127.5 - 1)
    assert images.shape == (16, 3, 32, 32)
    assert hue_difference(read, hues).max().item() < 5.0
    assert images.float().amin(dim=(1, 2, 3)).max().item() == 0  # black background


def test_unknown_domain_lists_valid_ones():
    with pytest.raises(DDIBError, match="zeros, ones"):
        domain_source("fivez")


def test_missing_mnist_is_a_clear_error(tmp_path, monkeypatch):
    import torchvision

    def offline(*a, **k):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(DDIBError, match="MNIST is not in"):
        load_domain_images(domain_source("fives"), str(tmp_path), 32, 3)


def _save(tmp_path, name, img):
    path = tmp_path / name
    img.save(path)
    return path


def test_image_modes_are_converted(tmp_path):
    # RGBA: alpha composited over black.
    rgba = Image.new("RGBA", (40, 20), (255, 0, 0, 128))
    x = load_image(_save(tmp_path, "a.png", rgba), 16, 3)
    assert x.shape == (3, 16, 16) and abs(int(x[0, 8, 8]) - 128) <= 1 and int(x[1:].max()) == 0
    # 16-bit greyscale: full range maps to full range.
    arr = np.full((20, 20), 65535, dtype=np.uint16)
    arr[:, :10] = 32896  # 128 * 257
    x = load_image(_save(tmp_path, "g16.png", Image.fromarray(arr)), 20, 3)
    assert int(x[0, 5, 15]) == 255 and int(x[0, 5, 2]) == 128 and torch.equal(x[0], x[2])
    # Palette and greyscale.
    pal = Image.new("P", (16, 16), 0)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.paste(1, (0, 0, 8, 16))
    x = load_image(_save(tmp_path, "p.png", pal), 16, 3)
    assert int(x[1, 0, 0]) == 255 and int(x[1, 0, 15]) == 0
    grey = load_image(_save(tmp_path, "l.png", Image.new("L", (16, 16), 77)), 16, 1)
    assert grey.shape == (1, 16, 16) and int(grey.max()) == 77
    # Non-square: shorter side resized, centre cropped.
    wide = Image.new("RGB", (64, 32), (0, 0, 0))
    wide.paste((255, 255, 255), (16, 0, 48, 32))
    x = load_image(_save(tmp_path, "w.png", wide), 16, 3)
    assert x.shape == (3, 16, 16) and int(x[:, :, 2:14].min()) == 255 and int(x.min()) > 200  # crop kept the centre


def test_folder_domain_and_unreadable_files(tmp_path):
    folder = tmp_path / "cats"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(folder / "a.jpg")
    Image.new("L", (8, 8), 9).save(folder / "sub" / "b.png")
    images = load_domain_images(domain_source("cats", str(folder)), "unused", 16, 3)
    assert images.pixels.shape == (2, 3, 16, 16)
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DDIBError, match=r"1 of 3 images cannot be read: .*broken.png \(not a recognised"):
        load_domain_images(domain_source("cats", str(folder)), "unused", 16, 3)
    kept = load_domain_images(domain_source("cats", str(folder)), "unused", 16, 3, skip_bad=True)
    assert kept.pixels.shape == (2, 3, 16, 16) and [p.name for p, _ in kept.skipped] == ["broken.png"]
    with pytest.raises(DDIBError, match="folder not found"):
        load_domain_images(domain_source("dogs", str(tmp_path / "nope")), "unused", 16, 3)


@pytest.mark.parametrize(
    ("n", "channels", "nrow", "padding"), [(1, 3, 8, 2), (5, 3, 2, 2), (16, 1, 8, 2), (7, 3, 3, 0)]
)
def test_image_grid_lays_out_as_torchvisions_make_grid(n, channels, nrow, padding):
    from torchvision.utils import make_grid

    x = torch.rand(n, channels, 6, 5, generator=torch.Generator().manual_seed(n)) * 2.4 - 1.2  # clamped too
    want = make_grid(x.clamp(-1, 1), nrow=nrow, padding=padding, pad_value=1.0)
    want = np.asarray(to_pil(want[:1] if channels == 1 else want))  # make_grid makes one channel three
    assert np.array_equal(np.asarray(image_grid(x, nrow=nrow, padding=padding)), want)
