"""Twin networks for speakers: one encoder, applied to both inputs, maps an utterance's
frames to a unit-length embedding; two utterances are compared by cosine similarity.

The encoder is a small time-delay network (dilated 1-D convolutions over frames) followed
by statistics pooling (mean and standard deviation over the valid frames only), so
utterances of any length are embedded whole: padding never enters the pooled statistics.

Several encoders trained from different seeds can be joined into one (`EncoderEnsemble`):
its score is the mean of their cosine similarities.

Training pairs and triplets are mined per batch: every anchor gets one positive (another
utterance of its speaker, never itself) and one negative (an utterance of another speaker),
so each batch holds exactly as many same-speaker as different-speaker pairs. With hard
mining, the negative is the most similar other-speaker utterance the batch holds.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dlslab.models import register_model

# --- blocks ---------------------------------------------------------------------------------


class TimeDelayBlock(nn.Module):
    """Dilated 1-D convolution over frames, batch norm, ReLU; padded frames are zeroed."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
        self.norm = nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x))) * mask[:, None]  # (B, C_out, T)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of x (B, C, T) where mask (B, T) is 1 -> (B, C)."""
    return (x * mask[:, None]).sum(-1) / mask.sum(-1, keepdim=True).clamp_min(1.0)


def stats_pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean and standard deviation over the valid frames: (B, C, T) -> (B, 2C)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean[..., None]).square(), mask)
    return torch.cat([mean, var.clamp_min(1e-6).sqrt()], dim=1)


class SpeakerEncoder(nn.Module):
    """Frames (B, n_features, T) with a frame mask (B, T) -> unit embeddings (B, embed_dim)."""

    def __init__(self, n_features: int = 40, channels: int = 128, embed_dim: int = 128,
                 dilations: tuple[int, ...] = (1, 2, 3), mean_norm: bool = True):
        super().__init__()
        self.mean_norm = mean_norm  # subtract each utterance's mean frame (removes channel colour)
        self.input_norm = nn.BatchNorm1d(n_features)
        widths = [n_features] + [channels] * len(dilations)
        self.blocks = nn.ModuleList(
            TimeDelayBlock(c_in, c_out, 5 if i == 0 else 3, d)
            for i, (c_in, c_out, d) in enumerate(zip(widths[:-1], widths[1:], dilations)))
        self.project = nn.Linear(2 * channels, embed_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.to(x.dtype)
        if self.mean_norm:
            x = x - masked_mean(x, mask)[..., None]
        x = self.input_norm(x) * mask[:, None]  # (B, F, T)
        for block in self.blocks:
            x = block(x, mask)  # (B, C, T)
        return F.normalize(self.project(stats_pool(x, mask)), dim=1)  # (B, E)


class GE2EEncoder(nn.Module):
    """The GE2E speaker encoder (Wan et al. 2018) in the shape of resemblyzer's pretrained
    one: a 3-layer LSTM over mel power frames; the last layer's final state -> linear -> ReLU
    -> unit length. An utterance is cut into partial windows of `window` frames, `step`
    apart (zero-padded at the end; a last window less than `min_coverage` full is dropped
    unless it is the only one); its embedding is the mean of theirs, made unit length."""

    def __init__(self, n_features: int = 40, hidden: int = 256, embed_dim: int = 256, layers: int = 3,
                 window: int = 160, step: int = 77, min_coverage: float = 0.75):
        super().__init__()
        self.embed_dim, self.window, self.step, self.min_coverage = embed_dim, window, step, min_coverage
        self.lstm = nn.LSTM(n_features, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, embed_dim)

    def windows(self, length: int) -> list[int]:
        """Start frames of the partial windows of an utterance of `length` frames."""
        starts = list(range(0, max(1, length - self.window + self.step + 1), self.step))
        if len(starts) > 1 and (length - 1 - starts[-1]) / self.window < self.min_coverage:
            starts.pop()
        return starts

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = (x * mask[:, None]).transpose(1, 2)  # (B, T, F), zero beyond each length
        starts = [(b, s) for b, n in enumerate(mask.sum(1).long().tolist()) for s in self.windows(n)]
        owner = torch.tensor([b for b, _ in starts], device=x.device)  # (W,)
        t = torch.tensor([s for _, s in starts], device=x.device)[:, None] + torch.arange(self.window, device=x.device)
        x = F.pad(x, (0, 0, 0, self.window))  # (B, T + window, F)
        _, (hidden, _) = self.lstm(x[owner[:, None], t])  # windows (W, window, F) -> hidden (layers, W, H)
        partial = F.normalize(F.relu(self.linear(hidden[-1])), dim=1)  # (W, E)
        total = torch.zeros(len(mask), partial.shape[1], device=x.device, dtype=partial.dtype)
        return F.normalize(total.index_add(0, owner, partial), dim=1)  # (B, E)


# --- losses ---------------------------------------------------------------------------------


def contrastive_loss(sim: torch.Tensor, same: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Contrastive loss on cosine similarities: pull same-speaker pairs to 1, push
    different-speaker pairs below `margin`."""
    same = same.to(sim.dtype)
    return (same * (1 - sim).square() + (1 - same) * F.relu(sim - margin).square()).mean()


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 margin: float = 0.3) -> torch.Tensor:
    """Triplet loss on cosine similarity: cos(a, p) should exceed cos(a, n) by `margin`."""
    return F.relu((anchor * negative).sum(1) - (anchor * positive).sum(1) + margin).mean()


def additive_margin_loss(embeddings: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor,
                         margin: float = 0.2, scale: float = 20.0) -> torch.Tensor:
    """Additive-margin softmax (AM-softmax): cosine to learned speaker centres, with the
    target's cosine lowered by `margin` before a scaled softmax."""
    cos = embeddings @ F.normalize(centres, dim=1).T  # (B, S)
    return F.cross_entropy(scale * (cos - margin * F.one_hot(labels, cos.shape[1])), labels)


# --- mining ---------------------------------------------------------------------------------


class SpeakerIndex:
    """Utterances grouped by speaker, for vectorised sampling of positives and negatives.

    `speaker` (N,) gives each utterance's speaker as 0..S-1; every speaker needs at least two
    utterances (a positive must differ from its anchor)."""

    def __init__(self, speaker: torch.Tensor):
        speaker = speaker.long()
        counts = torch.bincount(speaker)
        if counts.numel() < 2 or int(counts.min()) < 2:
            raise ValueError("pair mining needs at least 2 speakers with at least 2 utterances each; "
                             f"speaker utterance counts: {counts.tolist()}")
        self.speaker = speaker
        self.order = torch.argsort(speaker, stable=True)  # utterances grouped by speaker
        self.counts = counts
        self.starts = torch.cumsum(counts, 0) - counts
        rank = torch.empty_like(speaker)
        rank[self.order] = torch.arange(len(speaker), device=speaker.device) - self.starts[speaker[self.order]]
        self.rank = rank  # position of each utterance within its speaker's group

    @property
    def n_speakers(self) -> int:
        return self.counts.numel()

    def _utterance(self, spk: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
        return self.order[self.starts[spk] + rank]

    def positives(self, anchors: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """For each anchor, a random other utterance of the same speaker."""
        spk, n = self.speaker[anchors], self.counts[self.speaker[anchors]]
        shift = 1 + (torch.rand(len(anchors), generator=generator, device=anchors.device) * (n - 1)).long()
        return self._utterance(spk, (self.rank[anchors] + shift) % n)

    def negatives(self, anchors: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """For each anchor, a random utterance of a random other speaker."""
        s = self.n_speakers
        u = torch.rand(2, len(anchors), generator=generator, device=anchors.device)
        other = (self.speaker[anchors] + 1 + (u[0] * (s - 1)).long()) % s
        return self._utterance(other, (u[1] * self.counts[other]).long())


def sample_pairs(index: SpeakerIndex, anchors: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Balanced pairs: (first (2B,), second (2B,), same (2B,) bool); each anchor appears once
    with a positive and once with a negative."""
    pos, neg = index.positives(anchors, generator), index.negatives(anchors, generator)
    same = torch.cat([torch.ones_like(anchors, dtype=torch.bool), torch.zeros_like(anchors, dtype=torch.bool)])
    return torch.cat([anchors, anchors]), torch.cat([pos, neg]), same


def hardest_negatives(embeddings: torch.Tensor, speakers: torch.Tensor, anchors: int) -> torch.Tensor:
    """For the first `anchors` rows of `embeddings` (B', E), the row index of the most similar
    row of another speaker (batch-hard mining)."""
    sim = embeddings[:anchors] @ embeddings.T  # (B, B')
    sim = sim.masked_fill(speakers[:anchors, None] == speakers[None], float("-inf"))
    return sim.argmax(1)


# --- the model --------------------------------------------------------------------------------


class SiameseNet(nn.Module):
    """Twin networks with tied weights: `encoder` embeds both inputs; the output is their
    cosine similarity (B,). `centres` (n_centres, E) exist only for additive-margin training."""

    def __init__(self, n_features: int = 40, channels: int = 128, embed_dim: int = 128,
                 dilations: tuple[int, ...] = (1, 2, 3), mean_norm: bool = True, n_centres: int = 0,
                 encoder: nn.Module | None = None):
        super().__init__()
        # the time-delay encoder, or a given one (e.g. a pretrained GE2EEncoder) with `embed_dim`
        self.encoder = encoder if encoder is not None else SpeakerEncoder(n_features, channels, embed_dim,
                                                                          dilations, mean_norm)
        embed_dim = getattr(self.encoder, "embed_dim", embed_dim)
        # one learned centre per training speaker, used only by the additive-margin loss; beside a
        # given (pretrained) encoder they start tiny, so the small fine-tuning rate turns them fast
        scale = 0.1 if encoder is None else 1e-4
        self.centres = nn.Parameter(scale * torch.randn(n_centres, embed_dim)) if n_centres else None

    def embed(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, mask)  # (B, E), unit length

    def forward(self, x1: torch.Tensor, mask1: torch.Tensor, x2: torch.Tensor,
                mask2: torch.Tensor) -> torch.Tensor:
        e1, e2 = self.embed(x1, mask1), self.embed(x2, mask2)  # one encoder, so tied weights
        return (e1 * e2).sum(1)  # (B,) cosine similarity


class EncoderEnsemble(nn.Module):
    """Independently trained twin networks used as one: the embedding (B, K * E) is the K
    members' unit embeddings side by side, scaled by 1 / sqrt(K), so it has unit length and
    its cosine similarity is the mean of the members' cosine similarities."""

    def __init__(self, members: list[SiameseNet]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    @staticmethod
    def join(members: list[SiameseNet]) -> SiameseNet | EncoderEnsemble:
        """The lone member itself, or the members as one ensemble (in eval mode)."""
        return members[0] if len(members) == 1 else EncoderEnsemble(members).eval()

    def embed(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.embed(x, mask) for m in self.members], dim=1) / math.sqrt(len(self.members))

    def forward(self, x1: torch.Tensor, mask1: torch.Tensor, x2: torch.Tensor,
                mask2: torch.Tensor) -> torch.Tensor:
        return (self.embed(x1, mask1) * self.embed(x2, mask2)).sum(1)  # (B,) mean cosine of the members


def _example() -> tuple[torch.Tensor, ...]:
    mask = torch.ones(3, 50)
    mask[1, 30:] = 0
    return torch.randn(3, 40, 50), mask, torch.randn(3, 40, 50), torch.ones(3, 50)


@register_model("siamese-tdnn", example=_example)
def siamese_tdnn(n_features: int = 40, channels: int = 128, embed_dim: int = 128,
                 dilations: tuple[int, ...] = (1, 2, 3), mean_norm: bool = True) -> SiameseNet:
    return SiameseNet(n_features, channels, embed_dim, dilations, mean_norm)


@register_model("siamese-ge2e", example=_example)
def siamese_ge2e(n_features: int = 40, hidden: int = 256, embed_dim: int = 256, layers: int = 3) -> SiameseNet:
    """Twin GE2E encoders (untrained here; `audio.pretrained.pretrained_encoder` loads its weights)."""
    return SiameseNet(encoder=GE2EEncoder(n_features, hidden, embed_dim, layers))
