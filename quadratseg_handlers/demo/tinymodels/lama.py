"""LaMa-shaped inpainting models with random weights, saved as TorchScript like big-lama.pt.

The network follows big-lama's generator: a 7 x 7 stem, 3 stride-2 downsamplings, residual
blocks of fast Fourier convolutions (3/4 of the channels in the global, spectral branch),
3 transposed-convolution upsamplings and a sigmoid. The scripted module has big-lama.pt's
interface, ``forward(image, mask) -> image`` on [1, 3, H, W] float images in 0..1 and
[1, 1, H, W] masks (1 = inpaint), H and W multiples of 8, so ``SimpleLama`` loads and runs it
exactly as it runs the real file. :func:`tiny_lama` is a miniature for tests; :func:`save_lama`
with the defaults builds the real size (51 M parameters) for memory and speed measurements.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

BIG_LAMA_WIDTH = 64
"""Channels of big-lama's first layer (the widest layer has 8 times as many)."""
BIG_LAMA_BLOCKS = 18
"""Residual Fourier blocks in big-lama."""
GLOBAL_RATIO = 0.75
"""Share of channels in the global (spectral) branch of each Fourier convolution."""


def _conv_bn_relu(conv: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class FourierUnit(nn.Module):
    """A 1 x 1 convolution applied to the image's 2-D spectrum (real and imaginary parts)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.spectral = _conv_bn_relu(
            nn.Conv2d(2 * channels, 2 * channels, 1, bias=False), 2 * channels
        )

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2], x.shape[-1]
        spectrum = torch.fft.rfftn(x, dim=[-2, -1], norm="ortho")
        mixed = self.spectral(torch.cat([spectrum.real, spectrum.imag], dim=1))
        real, imag = mixed.chunk(2, dim=1)
        return torch.fft.irfftn(
            torch.complex(real.contiguous(), imag.contiguous()),
            s=[height, width],
            dim=[-2, -1],
            norm="ortho",
        )


class SpectralTransform(nn.Module):
    """The global branch: squeeze, Fourier unit with a residual, expand."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.squeeze = _conv_bn_relu(
            nn.Conv2d(channels, channels // 2, 1, bias=False), channels // 2
        )
        self.fourier = FourierUnit(channels // 2)
        self.expand = nn.Conv2d(channels // 2, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.squeeze(x)
        return self.expand(x + self.fourier(x))


class FourierConv(nn.Module):
    """A fast Fourier convolution on (local, global) feature maps, with batch norm and ReLU."""

    def __init__(self, local: int, glob: int) -> None:
        super().__init__()

        def conv(inputs: int, outputs: int) -> nn.Conv2d:
            return nn.Conv2d(inputs, outputs, 3, padding=1, padding_mode="reflect", bias=False)

        self.local_to_local = conv(local, local)
        self.global_to_local = conv(glob, local)
        self.local_to_global = conv(local, glob)
        self.global_to_global = SpectralTransform(glob)
        self.local_out = nn.Sequential(nn.BatchNorm2d(local), nn.ReLU(inplace=True))
        self.global_out = nn.Sequential(nn.BatchNorm2d(glob), nn.ReLU(inplace=True))

    def forward(self, x_local: Tensor, x_global: Tensor) -> tuple[Tensor, Tensor]:
        y_local = self.local_to_local(x_local) + self.global_to_local(x_global)
        y_global = self.local_to_global(x_local) + self.global_to_global(x_global)
        return self.local_out(y_local), self.global_out(y_global)


class FourierBlock(nn.Module):
    """Two Fourier convolutions with a residual connection on both branches."""

    def __init__(self, local: int, glob: int) -> None:
        super().__init__()
        self.first = FourierConv(local, glob)
        self.second = FourierConv(local, glob)

    def forward(self, x_local: Tensor, x_global: Tensor) -> tuple[Tensor, Tensor]:
        y_local, y_global = self.first(x_local, x_global)
        y_local, y_global = self.second(y_local, y_global)
        return x_local + y_local, x_global + y_global


class LamaInpainter(nn.Module):
    """The generator behind big-lama.pt, wrapped with its ``forward(image, mask)`` interface."""

    def __init__(self, width: int = BIG_LAMA_WIDTH, blocks: int = BIG_LAMA_BLOCKS) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            *_conv_bn_relu(nn.Conv2d(4, width, 7), width),
        ]
        for level in range(3):
            inputs = width * 2**level
            layers += _conv_bn_relu(
                nn.Conv2d(inputs, 2 * inputs, 3, stride=2, padding=1), 2 * inputs
            )
        self.encoder = nn.Sequential(*layers)
        channels = width * 8
        self.global_channels = int(channels * GLOBAL_RATIO)
        self.local_channels = channels - self.global_channels
        self.blocks = nn.ModuleList(
            FourierBlock(self.local_channels, self.global_channels) for _ in range(blocks)
        )
        layers = []
        for level in range(3):
            inputs = channels // 2**level
            layers += _conv_bn_relu(
                nn.ConvTranspose2d(inputs, inputs // 2, 3, stride=2, padding=1, output_padding=1),
                inputs // 2,
            )
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, 3, 7), nn.Sigmoid()]
        self.decoder = nn.Sequential(*layers)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        mask = mask.to(image.dtype)
        features = self.encoder(torch.cat([image * (1 - mask), mask], dim=1))
        x_local, x_global = features.split([self.local_channels, self.global_channels], dim=1)
        for block in self.blocks:
            x_local, x_global = block(x_local, x_global)
        predicted = self.decoder(torch.cat([x_local, x_global], dim=1))
        return mask * predicted + (1 - mask) * image


def save_lama(
    path: str | Path,
    width: int = BIG_LAMA_WIDTH,
    blocks: int = BIG_LAMA_BLOCKS,
    seed: int = 0,
) -> Path:
    """Write a scripted LaMa-shaped model with random weights (from ``seed``) to ``path``."""
    torch.manual_seed(seed)
    model = LamaInpainter(width, blocks).eval()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(model).save(str(target))
    return target


def tiny_lama(path: str | Path, seed: int = 0) -> Path:
    """A miniature LaMa (width 4, one Fourier block, 24 K parameters) saved as TorchScript."""
    return save_lama(path, width=4, blocks=1, seed=seed)
