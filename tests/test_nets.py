import pytest
import torch

from ddib.errors import DDIBError
from ddib.model.nets import UNET_SIZES, MLPConfig, build_network, unet_config


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


@pytest.mark.parametrize("net_config", [unet_config("tiny", 8), MLPConfig(width=64, num_blocks=1)])
def test_small_time_scale_makes_the_output_smooth_in_time(net_config):
    """Same weights, embedding scale 1000 vs 10: the output's wiggle along t (second differences on a 400-point
    grid, relative to first differences) is far smaller with the low-frequency embedding."""
    import dataclasses

    def roughness(scale):
        torch.manual_seed(0)
        net = build_network(dataclasses.replace(net_config, time_scale=scale)).eval()
        for p in net.parameters():  # random everywhere (the UNet's last conv starts at zero)
            p.data.normal_(0, 0.1)
        x = torch.randn(1, *net_config.data_shape, generator=torch.Generator().manual_seed(1))
        t = torch.linspace(0, 1, 400)
        with torch.no_grad():
            out = torch.cat([net(x, ti.reshape(1)) for ti in t]).flatten(1)
        return out.diff(n=2, dim=0).abs().mean().item() / out.diff(dim=0).abs().mean().item()

    assert roughness(10.0) < roughness(1000.0) / 20
