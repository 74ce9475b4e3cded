"""Frame-wise speech denoisers on STFT magnitudes: an MLP, a 1-D CNN and a 2-D CNN.

Each model estimates the clean magnitude of a frame from that noisy frame |X| and the
`context` frames before it. It reads a run of frames (B, context + L, bins) and returns the
estimates of its last L frames (B, L, bins), never negative: either a sigmoid mask times the
noisy |X| ("mask"), or a softplus magnitude ("magnitude"). The 2-D CNN convolves along time
without padding, so it computes a run of L frames in one pass instead of L windows (this is
what makes training and denoising fast); the others see each frame's window. Inputs are
log-compressed and standardised per frequency bin inside the model (statistics set from
training frames with `fit_norm`), so a checkpoint holds all a user needs to denoise a file.

- MLP: the window flattened (context 0 is the classic single-frame MLP).
- 1-D CNN: convolutions along frequency, the window's frames as input channels.
- 2-D CNN: convolutions over (time, frequency) of the window (default: 20 previous frames),
  strided along frequency, dilated along time; their receptive fields add up to the window.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from dlslab.models import register_model

Output = Literal["mask", "magnitude"]


class LogMagNorm(nn.Module):
    """log(|X| + floor), then standardised per frequency bin with training statistics."""

    def __init__(self, bins: int, floor: float = 1e-5):
        super().__init__()
        self.floor = floor
        self.register_buffer("mean", torch.zeros(bins))
        self.register_buffer("std", torch.ones(bins))
        self.register_buffer("scale", torch.ones(()))  # typical clean magnitude (magnitude output)

    @torch.no_grad()
    def fit(self, noisy: torch.Tensor, clean: torch.Tensor) -> None:
        """Statistics from training frames (N, bins) of noisy and clean |X|."""
        feats = torch.log(noisy.float() + self.floor)
        self.mean.copy_(feats.mean(0))
        self.std.copy_(feats.std(0).clamp_min(1e-3))
        self.scale.copy_(clean.float().mean().clamp_min(1e-8))

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        return (torch.log(mag + self.floor) - self.mean) / self.std  # same shape as mag


class OutputHead(nn.Module):
    """Raw per-bin values -> a non-negative magnitude: sigmoid mask · |X|, or softplus."""

    def __init__(self, output: Output):
        super().__init__()
        if output not in ("mask", "magnitude"):
            raise ValueError(f"output must be 'mask' or 'magnitude', got {output!r}")
        self.output = output

    def forward(self, raw: torch.Tensor, noisy: torch.Tensor, norm: LogMagNorm) -> torch.Tensor:
        if self.output == "mask":
            return torch.sigmoid(raw) * noisy
        return nn.functional.softplus(raw) * norm.scale


class MLPBody(nn.Module):
    def __init__(self, bins: int, context: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        dims = [bins * (context + 1)] + [hidden] * layers
        blocks: list[nn.Module] = [nn.Flatten()]  # (B, (context + 1) * bins)
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            blocks += [nn.Linear(d_in, d_out), nn.ReLU(), nn.Dropout(dropout)]
        blocks.append(nn.Linear(dims[-1], bins))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, bins)


class CNN1dBody(nn.Module):
    """Strided 1-D convolutions along frequency, then a linear map back to every bin."""

    def __init__(self, bins: int, context: int, channels: list[int], kernel: int, dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        c_in, length = context + 1, bins
        for c_out in channels:
            layers += [nn.Conv1d(c_in, c_out, kernel, stride=2, padding=kernel // 2), nn.ReLU()]
            c_in, length = c_out, (length - 1) // 2 + 1
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in * length, bins))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, context + 1, bins): the frames are channels
        return self.fc(self.conv(x))  # (B, C, bins / 2^L) -> (B, bins)


def time_kernels(context: int, layers: int) -> list[tuple[int, int]]:
    """(kernel, dilation) along time of each of `layers` unpadded convolutions whose receptive
    fields add up to `context` + 1 frames: 3-tap kernels with dilations that split the window
    (dilations 4, 3, 3 for 20 frames in 3 layers), so every layer spans a share of the window
    at a third of the cost of a dense kernel. An odd window leaves the first layer an odd share:
    it takes a dense kernel instead."""
    half = context // 2
    shares = [2 * (half // layers + (i < half % layers)) for i in range(layers)]
    shares[0] += context % 2
    return [(share + 1, 1) if share % 2 or share == 0 else (3, share // 2) for share in shares]


class CNN2dBody(nn.Module):
    """Convolutions over (time, frequency): unpadded along time and dilated, with receptive
    fields that add up to the window (so one output frame sees exactly context + 1 input
    frames), strided by 2 along frequency. Their features and the current frame at full
    resolution go through a hidden layer to every bin, so fine spectral detail is not lost to
    the striding."""

    sequential = True  # reads (B, context + L, bins) runs, not single windows

    def __init__(self, bins: int, context: int, channels: list[int], freq_kernel: int, hidden: int,
                 dropout: float):
        super().__init__()
        self.context = context
        layers: list[nn.Module] = []
        c_in, length = 1, bins
        for c_out, (kernel, dilation) in zip(channels, time_kernels(context, len(channels))):
            layers += [nn.Conv2d(c_in, c_out, (kernel, freq_kernel), stride=(1, 2),
                                 padding=(0, freq_kernel // 2), dilation=(dilation, 1)), nn.ReLU()]
            c_in, length = c_out, (length - 1) // 2 + 1
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in * length + bins, hidden), nn.ReLU(),
                                nn.Dropout(dropout), nn.Linear(hidden, bins))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, context + L, bins)
        h = self.conv(x.unsqueeze(1)).permute(0, 2, 1, 3).flatten(2)  # (B, C, L, bins') -> (B, L, C * bins')
        return self.fc(torch.cat([h, x[:, self.context:]], 2))  # (B, L, C * bins' + bins) -> (B, L, bins)


class FrameDenoiser(nn.Module):
    """Normalise a run of frames, estimate each of its last L frames, apply the output head."""

    def __init__(self, body: nn.Module, bins: int, context: int, output: Output):
        super().__init__()
        self.bins, self.context = bins, context
        self.norm = LogMagNorm(bins)
        self.body = body
        self.head = OutputHead(output)

    def fit_norm(self, noisy: torch.Tensor, clean: torch.Tensor) -> None:
        self.norm.fit(noisy, clean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, context + L, bins) of noisy |X|
        feats = self.norm(x)
        if getattr(self.body, "sequential", False):
            raw = self.body(feats)  # (B, L, bins)
        else:
            windows = feats.unfold(1, self.context + 1, 1).transpose(2, 3)  # (B, L, context + 1, bins)
            raw = self.body(windows.flatten(0, 1)).view(x.shape[0], -1, self.bins)  # (B, L, bins)
        return self.head(raw, x[:, self.context:], self.norm)  # (B, L, bins)

    @torch.no_grad()
    def denoise_frames(self, mag: torch.Tensor, block: int = 1024) -> torch.Tensor:
        """Estimates (T, bins) for noisy frames `mag` (T, bins), silence before the first,
        `block` frames per pass so memory stays bounded."""
        x = torch.cat([mag.new_zeros(self.context, self.bins), mag])  # (context + T, bins)
        return torch.cat([self(x[s:s + self.context + block][None])[0]
                          for s in range(0, len(mag), block)])  # (T, bins)


@register_model("denoise_mlp", example=lambda: torch.rand(4, 3, 513))
def denoise_mlp(bins: int = 513, context: int = 0, hidden: int = 1024, layers: int = 2,
                dropout: float = 0.2, output: Output = "mask") -> FrameDenoiser:
    return FrameDenoiser(MLPBody(bins, context, hidden, layers, dropout), bins, context, output)


@register_model("denoise_cnn1d", example=lambda: torch.rand(4, 7, 513))
def denoise_cnn1d(bins: int = 513, context: int = 4, channels: list[int] | None = None, kernel: int = 9,
                  dropout: float = 0.2, output: Output = "mask") -> FrameDenoiser:
    body = CNN1dBody(bins, context, channels or [16, 32, 32], kernel, dropout)
    return FrameDenoiser(body, bins, context, output)


@register_model("denoise_cnn2d", example=lambda: torch.rand(4, 23, 513))
def denoise_cnn2d(bins: int = 513, context: int = 20, channels: list[int] | None = None,
                  freq_kernel: int = 5, hidden: int = 512, dropout: float = 0.2,
                  output: Output = "mask") -> FrameDenoiser:
    body = CNN2dBody(bins, context, channels or [16, 16, 32], freq_kernel, hidden, dropout)
    return FrameDenoiser(body, bins, context, output)
