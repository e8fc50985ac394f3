import pytest
import torch

from ddib.errors import DDIBError
from ddib.nets import UNET_SIZES, MLPConfig, build_network, unet_config


@pytest.mark.parametrize("size", list(UNET_SIZES))
def test_unet_maps_images_to_same_shape(size):
    net = build_network(unet_config(size, image_size=16 if size == "tiny" else 32))
    x = torch.randn(2, 3, net.config.image_size, net.config.image_size)
    out = net(x, torch.rand(2))
    assert out.shape == x.shape


def test_unet_greyscale_and_time_dependence():
    net = build_network(unet_config("tiny", image_size=16, channels=1))
    for p in net.parameters():  # break the zero init so the output depends on its inputs
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(3, 1, 16, 16)
    a, b = net(x, torch.zeros(3)), net(x, torch.ones(3))
    assert a.shape == (3, 1, 16, 16)
    assert not torch.allclose(a, b)


def test_mlp_maps_points_to_points():
    net = build_network(MLPConfig())
    assert net(torch.randn(5, 2), torch.rand(5)).shape == (5, 2)
    assert sum(p.numel() for p in net.parameters()) > 100_000  # width 256, 3 residual blocks


def test_bad_sizes_are_clear_errors():
    with pytest.raises(DDIBError, match="unknown model size"):
        unet_config("huge")
    with pytest.raises(DDIBError, match="multiple of"):
        unet_config("small", image_size=30)
