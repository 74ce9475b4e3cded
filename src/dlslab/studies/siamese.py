"""Study 8: one-shot speaker identification with a Siamese network and cosine similarity.

Twin networks with tied weights (one time-delay encoder with statistics pooling over the
valid frames, so utterances of any length are embedded whole) map log-mel frames to unit
embeddings; two utterances are compared by cosine similarity. The encoder is trained on one
set of speakers with a contrastive loss on balanced pairs, a triplet loss, or an
additive-margin softmax (each anchor gets a fresh positive and negative every epoch;
optionally the hardest negative in the batch), and evaluated on speakers it never heard:

- verification of balanced same/different pairs: ROC-AUC, EER, and accuracy at the
  threshold chosen on validation speakers (disjoint from both training and test speakers);
- one-shot identification: each test speaker enrolled with ONE utterance, each of its other
  utterances identified among N enrolled speakers (N = 5, 10, 20, all), chance beside each;
  on all real test speakers pooled, within each real corpus (a model cannot win there by
  telling corpora apart), and on unseen synthetic voices.

Several encoders trained from different seeds are joined into one (their scores averaged),
and scores are normalised against a cohort of training utterances (adaptive symmetric
s-norm); with the quick preset that lifts one-shot 10-way accuracy on the 18 unseen real
speakers from 0.72 (one encoder, cosine) to 0.80 (docs/studies/siamese.md; the 0.90 target
is not met). Settings are chosen by `cross_validate` over folds of the untested speakers.

Baselines in the same tables: cosine similarity of mean MFCC vectors (no learning) and the
same encoder untrained, scored the same way.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from dlslab import config
from dlslab.audio.features import frame_features
from dlslab.audio.io import read_audio
from dlslab.audio.speakers import (SpeakerSet, SyntheticSpec, Utterance, featurize, normalise_level,
                                   read_speakers, real_speakers, synthetic_speakers)
from dlslab.config import StudyConfig
from dlslab.data.locate import locate
from dlslab.errors import ConfigError, DataError, UsageError
from dlslab.metrics.verification import (CohortNorm, accuracy_at, best_threshold, equal_error_rate,
                                         one_shot_identification, pair_scores, roc_auc, verification_pairs)
from dlslab.models.siamese import (EncoderEnsemble, SiameseNet, SpeakerIndex, additive_margin_loss, contrastive_loss,
                                   hardest_negatives, masked_mean, triplet_loss)
from dlslab.report.plots import line_plot, pyplot
from dlslab.runs import Run, safe_torch_load
from dlslab.train.engine import fit, seed_everything
from dlslab.train.optim import make_optimizer

LOSSES = ("contrastive", "triplet", "am-softmax")
N_WAYS = (5, 10, 20)  # plus "all" speakers of the group
SAMPLE_RATE = 16000


@dataclass
class Config(StudyConfig):
    data: Literal["real+synthetic", "real", "synthetic", "folder"] = "real+synthetic"  # speakers used: the real corpora found, espeak-ng voices, both, or speakers_dir
    speakers_dir: str | None = None  # your own folder SPEAKER/utterance.wav|flac (with data=folder): split by speaker like a real corpus
    real_per_speaker: int = 20  # utterances per real speaker at most (a seeded random subset)
    val_fraction: float = 0.15  # fraction of each real corpus's speakers held out for validation (threshold, early stop, loss choice)
    test_fraction: float = 0.4  # fraction of each real corpus's speakers held out for testing (unseen)
    synth_train_speakers: int = 50  # espeak-ng training speakers (the classic setting: 50 x 10 utterances)
    synth_val_speakers: int = 10  # espeak-ng validation speakers (other voices)
    synth_test_speakers: int = 20  # espeak-ng test speakers (other voices, test sentences)
    synth_utterances: int = 10  # utterances per synthetic speaker
    features: Literal["logmel", "stft"] = "logmel"  # input frames: log-mel energies or log STFT magnitudes
    n_mels: int = 40  # mel bands (features=logmel)
    n_fft: int = 512  # STFT window in samples (32 ms at 16 kHz)
    hop: int = 256  # STFT hop in samples (16 ms)
    max_seconds: float = 4.0  # longer utterances keep their first max_seconds
    crop_frames: int = 48  # training sees a random crop of this many frames per utterance (evaluation: whole utterances)
    channels: int = 128  # channels of the time-delay layers
    dilations: list[int] = field(default_factory=lambda: [1, 2, 3])  # one time-delay layer per entry (its dilation)
    embed_dim: int = 128  # embedding size
    mean_norm: bool = False  # subtract each utterance's mean frame (removes the recording channel's colour)
    speed_perturb: list[float] = field(default_factory=list)  # each training utterance also resampled by these speed factors; each factor makes new pseudo-speakers
    losses: list[Literal["contrastive", "triplet", "am-softmax"]] = field(default_factory=lambda: list(LOSSES))  # losses trained and compared; the best on validation is reported as "trained"
    margin: float = 0.3  # margin of the contrastive and triplet losses (on cosine similarity)
    am_margin: float = 0.2  # additive margin of the AM-softmax loss
    am_scale: float = 20.0  # logit scale of the AM-softmax loss
    noise_snr: list[float] = field(default_factory=list)  # [low, high] dB: each training crop gets a crop of a real noise recording (dataset 'noise') at a random SNR in this range; [] = off
    band_mask: int = 0  # each training crop has a random band of up to this many feature rows set to the crop's mean (SpecAugment-style); 0 = off
    hard_negatives: bool = False  # pair each anchor with the most similar other-speaker utterance in its batch
    epochs: int = 60  # passes over the training utterances (each one an anchor once per epoch)
    batch_size: int = 64  # anchors per batch
    optimizer: str = "adam"  # optimizer name (see dlslab.train.optim)
    lr: float = 2e-3  # learning rate
    patience: int = 15  # stop after this many epochs without a better validation AUC
    ensemble: int = 5  # encoders trained per loss (seeds seed, seed + 1, ...) and joined: a score is the mean of their cosines
    score_norm: Literal["none", "s-norm"] = "s-norm"  # test-time scores: cosine, or adaptive symmetric s-norm against a cohort of training utterances
    cohort_top_k: int | None = None  # s-norm: each side is normalised by its most similar cohort utterances (None: the whole cohort)
    eval_rounds: int = 10  # random enrolments averaged in one-shot identification


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"data": "synthetic", "synth_train_speakers": 12, "synth_val_speakers": 5,
              "synth_test_speakers": 8, "synth_utterances": 5, "channels": 48, "embed_dim": 48,
              "losses": ["triplet"], "epochs": 8, "batch_size": 32, "ensemble": 2, "eval_rounds": 3},
    "quick": {"synth_train_speakers": 30, "synth_utterances": 8, "channels": 64,
              "losses": ["am-softmax"], "epochs": 25, "patience": 8, "eval_rounds": 5},
    "full": {},
}


def data_needs(cfg: Config) -> list[str]:
    return (["speakers", "speakers2"] if "real" in cfg.data else []) + \
        (["speech-corpus"] if "synthetic" in cfg.data else []) + (["noise"] if cfg.noise_snr else [])


# --- data -----------------------------------------------------------------------------------------


def split_speakers(utterances: list[Utterance], val_fraction: float, test_fraction: float,
                   seed: int) -> dict[str, str]:
    """{speaker: train | val | test}, drawn per corpus (seeded), every role non-empty in a
    corpus with 3+ speakers; no speaker is in two roles."""
    roles: dict[str, str] = {}
    rng = np.random.default_rng(seed)
    for corpus in sorted({u.corpus for u in utterances}):
        names = sorted({u.speaker for u in utterances if u.corpus == corpus})
        rng.shuffle(names)
        n = len(names)
        n_test = max(1, round(test_fraction * n)) if n >= 3 else 0
        n_val = max(1, round(val_fraction * n)) if n >= 3 else 0
        for i, name in enumerate(names):
            roles[name] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return roles


def _synthetic(cfg: Config) -> dict[str, list[Utterance]]:
    """Disjoint espeak-ng speaker sets for training, validation and testing."""
    sets = {"train": (cfg.synth_train_speakers, 0, "train"),
            "val": (cfg.synth_val_speakers, cfg.synth_train_speakers, "test"),
            "test": (cfg.synth_test_speakers, cfg.synth_train_speakers + cfg.synth_val_speakers, "test")}
    out = {}
    for role, (n, first, sentences) in sets.items():
        spec = SyntheticSpec(n, cfg.synth_utterances, first, sentences, cfg.seed, SAMPLE_RATE)
        out[role] = read_speakers(synthetic_speakers(spec), "synthetic", sample_rate=SAMPLE_RATE)
    return out


def speed_perturbed(utterances: list[Utterance], factors: list[float]) -> list[Utterance]:
    """Copies of `utterances` played `factor` times faster (resampled, so pitch and formants
    move too); each (speaker, factor) is a new pseudo-speaker `speaker@x<factor>`."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    out = []
    for factor in factors:
        ratio = Fraction(factor).limit_denominator(100)  # new length = old length / factor
        out += [Utterance(f"{u.speaker}@x{factor:g}", u.corpus, u.path,
                          resample_poly(u.wave, ratio.denominator, ratio.numerator).astype(np.float32))
                for u in utterances]
    return out


def load_sets(cfg: Config, data_dir: str | Path | None) -> tuple[SpeakerSet, dict[str, str]]:
    """Every utterance's features in one SpeakerSet, and each speaker's role."""
    real: list[Utterance] = []
    if cfg.data == "folder":
        if not cfg.speakers_dir:
            raise ConfigError("data=folder needs speakers_dir=PATH (a folder SPEAKER/utterance.wav)")
        real = read_speakers(cfg.speakers_dir, "folder", sample_rate=SAMPLE_RATE,
                             max_per_speaker=cfg.real_per_speaker, seed=cfg.seed)
    elif "real" in cfg.data:
        real = real_speakers(data_dir, sample_rate=SAMPLE_RATE, max_per_speaker=cfg.real_per_speaker,
                             seed=cfg.seed)
        if not real and cfg.data == "real":
            raise DataError("no real speaker recordings found (datasets 'speakers', 'speakers2'); "
                            "put them under DLSLAB_DATA or --data-dir, or run with --set data=synthetic")
    roles = split_speakers(real, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    utterances = list(real)
    if "synthetic" in cfg.data:
        for role, utts in _synthetic(cfg).items():
            roles |= {u.speaker: role for u in utts}
            utterances += utts
    perturbed = speed_perturbed([u for u in utterances if roles[u.speaker] == "train"], cfg.speed_perturb)
    roles |= {u.speaker: "train" for u in perturbed}
    utterances += perturbed
    for role in ("train", "val", "test"):
        if sum(r == role for r in roles.values()) < 2:
            raise DataError(f"fewer than 2 {role} speakers; use more speakers (a corpus needs 3+ "
                            "speakers to be split) or change val_fraction/test_fraction")
    data = featurize(utterances, SAMPLE_RATE, kind=cfg.features, n_mels=cfg.n_mels, n_fft=cfg.n_fft,
                     hop=cfg.hop, max_frames=int(cfg.max_seconds * SAMPLE_RATE / cfg.hop) + 1)
    return data, roles


def _role_set(data: SpeakerSet, roles: dict[str, str], role: str, corpora: list[str] | None = None) -> SpeakerSet:
    return data.subset([n for n, c in zip(data.names, data.corpus)
                        if roles[n] == role and (corpora is None or c in corpora)])


# --- model and training ------------------------------------------------------------------------------


def build_encoder(cfg: Config, n_features: int, n_centres: int = 0) -> SiameseNet:
    return SiameseNet(n_features, cfg.channels, cfg.embed_dim, tuple(cfg.dilations), cfg.mean_norm, n_centres)


def random_crops(frames: torch.Tensor, lengths: torch.Tensor, idx: torch.Tensor,
                 crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random window of `crop` frames of each utterance idx -> (x (B, F, crop), mask (B, crop));
    utterances shorter than `crop` are taken whole, padded and masked."""
    length = lengths[idx]
    start = (torch.rand(len(idx), device=frames.device) * (length - crop + 1).clamp_min(1)).long()
    t = start[:, None] + torch.arange(crop, device=frames.device)[None]  # (B, crop)
    mask = t < length[:, None]
    t = t.clamp(max=frames.shape[-1] - 1)
    x = torch.gather(frames[idx], 2, t[:, None].expand(-1, frames.shape[1], -1))  # (B, F, crop)
    return x * mask[:, None], mask.float()


@torch.no_grad()
def embed_set(model: SiameseNet, frames: torch.Tensor, lengths: torch.Tensor, batch: int = 256) -> np.ndarray:
    """Unit embeddings (N, E) of whole utterances, in eval mode."""
    was_training = model.training
    model.eval()
    mask = (torch.arange(frames.shape[-1], device=frames.device)[None] < lengths[:, None]).float()
    out = [model.embed(frames[i:i + batch], mask[i:i + batch]) for i in range(0, len(frames), batch)]
    model.train(was_training)
    return torch.cat(out).cpu().numpy()


def noise_frames(cfg: Config, data_dir: str | Path | None) -> torch.Tensor | None:
    """Log-mel frames (F, T) of the real noise recordings, each levelled to unit RMS, one
    after another; None when noise_snr is off."""
    if not cfg.noise_snr:
        return None
    loc = locate("noise", data_dir)
    if loc.status != "found":
        raise DataError("noise_snr needs the 'noise' dataset (real noise recordings); put it under "
                        "DLSLAB_DATA or --data-dir, or run with --set noise_snr=[]")
    files = sorted(f for f in Path(loc.path).iterdir() if f.suffix.lower() in (".wav", ".flac"))
    waves = [normalise_level(read_audio(f, sample_rate=SAMPLE_RATE)[0]) for f in files]
    return torch.cat([frame_features(w, SAMPLE_RATE, cfg.features, n_mels=cfg.n_mels, n_fft=cfg.n_fft, hop=cfg.hop)
                      for w in waves], dim=-1)


def add_noise(x: torch.Tensor, noise: torch.Tensor, snr_db: tuple[float, float]) -> torch.Tensor:
    """Log-power frames x (B, F, T) mixed with random windows of log-power noise frames
    (F, T_noise) at a random SNR in `snr_db` per utterance (both levelled to unit RMS, so the
    gain sets the SNR): log(exp(x) + g exp(n))."""
    b, _, t = x.shape
    start = (torch.rand(b, device=x.device) * (noise.shape[-1] - t)).long()
    n = noise[:, start[:, None] + torch.arange(t, device=x.device)].permute(1, 0, 2)  # (B, F, T)
    snr = snr_db[0] + (snr_db[1] - snr_db[0]) * torch.rand(b, 1, 1, device=x.device)
    return torch.logaddexp(x, n - snr * math.log(10) / 10)


def mask_band(x: torch.Tensor, mask: torch.Tensor, width: int) -> torch.Tensor:
    """Each utterance's frames x (B, F, T) with a random band of 0..width feature rows
    replaced by the utterance's mean over its valid frames (SpecAugment's frequency mask)."""
    b, f, _ = x.shape
    w = (torch.rand(b, 1, device=x.device) * (width + 1)).long()
    lo = (torch.rand(b, 1, device=x.device) * (f - w + 1)).long()
    rows = torch.arange(f, device=x.device)[None]
    band = ((rows >= lo) & (rows < lo + w))[..., None]  # (B, F, 1)
    return torch.where(band, masked_mean(x, mask)[..., None], x)


def make_loss(cfg: Config, loss: str, train: SpeakerSet, device: torch.device,
              noise: torch.Tensor | None = None) -> Any:
    """loss_fn(model, anchors) for `fit`: mines a positive and a negative for each anchor
    (balanced: as many same- as different-speaker pairs), crops, augments, embeds and
    scores them."""
    frames, lengths = train.frames.to(device), train.lengths.to(device)
    speaker = train.speaker.to(device)
    index = SpeakerIndex(speaker)
    noise = None if noise is None else noise.to(device)

    def loss_fn(model: SiameseNet, anchors: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        b = len(anchors)
        trio = torch.cat([anchors, index.positives(anchors), index.negatives(anchors)])  # (3B,)
        x, mask = random_crops(frames, lengths, trio, cfg.crop_frames)
        if noise is not None:
            x = add_noise(x, noise, tuple(cfg.noise_snr)) * mask[:, None]
        if cfg.band_mask:
            x = mask_band(x, mask, cfg.band_mask) * mask[:, None]
        emb = model.embed(x, mask)  # (3B, E)
        a, p, n = emb.split(b)
        if cfg.hard_negatives:
            n = emb[hardest_negatives(emb, speaker[trio], b)]
        pos_sim, neg_sim = (a * p).sum(1), (a * n).sum(1)
        if loss == "contrastive":
            value = contrastive_loss(torch.cat([pos_sim, neg_sim]),
                                     torch.cat([torch.ones_like(pos_sim), torch.zeros_like(neg_sim)]), cfg.margin)
        elif loss == "triplet":
            value = triplet_loss(a, p, n, cfg.margin)
        else:
            value = additive_margin_loss(emb, speaker[trio], model.centres, cfg.am_margin, cfg.am_scale)
        return value, {"pos_sim": pos_sim.mean().detach(), "neg_sim": neg_sim.mean().detach()}

    return loss_fn


def checkpoint_name(loss: str, member: int = 0) -> str:
    return f"encoder-{loss}" + (f"-{member}" if member else "")


def train_encoder(cfg: Config, loss: str, train: SpeakerSet, val: SpeakerSet, run: Run,
                  noise: torch.Tensor | None = None, member: int = 0) -> tuple[SiameseNet, Any]:
    """One encoder trained with `loss`; ensemble member k starts from seed + k."""
    device = run.device
    seed = cfg.seed + member
    seed_everything(seed)
    model = build_encoder(cfg, train.frames.shape[1], len(train.names) if loss == "am-softmax" else 0).to(device)
    val_frames, val_lengths = val.frames.to(device), val.lengths.to(device)
    i, j, same = verification_pairs(val.speaker.numpy(), seed=cfg.seed)

    def evaluate(m: SiameseNet) -> dict[str, float]:
        emb = embed_set(m, val_frames, val_lengths)
        return {"val_auc": roc_auc((emb[i] * emb[j]).sum(1), same)}

    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr)
    history = fit(model, (torch.arange(len(train), device=device),), make_loss(cfg, loss, train, device, noise),
                  optimizer=opt, epochs=cfg.epochs, batch_size=cfg.batch_size, evaluate=evaluate,
                  monitor="val_auc", patience=cfg.patience, restore_best=True, grad_clip=5.0,
                  seed=seed, run=run, name=checkpoint_name(loss, member), drop_last=True)
    return model.eval(), history


def train_ensemble(cfg: Config, loss: str, train: SpeakerSet, val: SpeakerSet, run: Run,
                   noise: torch.Tensor | None = None) -> tuple[SiameseNet | EncoderEnsemble, list[Any]]:
    """`cfg.ensemble` encoders trained with `loss` (seeds seed, seed + 1, ...) joined into one,
    and their training histories."""
    trained = [train_encoder(cfg, loss, train, val, run, noise, member=k) for k in range(cfg.ensemble)]
    return EncoderEnsemble.join([m for m, _ in trained]), [h for _, h in trained]


def load_encoder(run_dir: str | Path) -> tuple[SiameseNet | EncoderEnsemble, Config]:
    """The trained encoder of a finished `siamese` run (the loss chosen on validation; all
    its ensemble members)."""
    import json

    run_dir = Path(run_dir)
    metrics_path, cfg_path = run_dir / "metrics.json", run_dir / "config.yaml"
    if not metrics_path.is_file() or not cfg_path.is_file():
        raise UsageError(f"{run_dir} is not a finished run folder (no metrics.json/config.yaml); "
                         "give the folder printed as `run: PATH` by `dlslab run siamese`")
    data = config.load_yaml(cfg_path)
    if data["study"] != "siamese":
        raise UsageError(f"{run_dir} is a run of {data['study']!r}, not of 'siamese'")
    cfg = config.apply_overrides(Config(), data["config"], source=str(cfg_path))
    metrics = json.loads(metrics_path.read_text())
    members = []
    for k in range(cfg.ensemble):
        path = run_dir / "checkpoints" / f"{checkpoint_name(metrics['selected_loss'], k)}.done.pt"
        state = safe_torch_load(path)["model"]
        state.pop("centres", None)  # only used in training
        members.append(build_encoder(cfg, metrics["n_features"]))
        members[-1].load_state_dict(state)
    return EncoderEnsemble.join(members).eval(), cfg


# --- evaluation -------------------------------------------------------------------------------------


def evaluate_group(test_emb: np.ndarray, test_speaker: np.ndarray, val_emb: np.ndarray,
                   val_speaker: np.ndarray, *, rounds: int, seed: int, norm: CohortNorm | None = None) -> dict[str, Any]:
    """Verification (threshold from validation pairs) and one-shot N-way identification;
    scores are cosine similarities, cohort-normalised with `norm`."""
    vi, vj, vsame = verification_pairs(val_speaker, seed=seed)
    threshold = best_threshold(pair_scores(val_emb, vi, vj, norm), vsame)
    i, j, same = verification_pairs(test_speaker, seed=seed)
    scores = pair_scores(test_emb, i, j, norm)
    eer, _ = equal_error_rate(scores, same)
    out: dict[str, Any] = {"auc": roc_auc(scores, same), "eer": eer,
                           "acc_at_val_threshold": accuracy_at(scores, same, threshold),
                           "threshold": threshold, "scores": scores, "same": same}
    n_spk = len(np.unique(test_speaker))
    for n in sorted({n for n in N_WAYS if n < n_spk} | {n_spk}):
        ident = one_shot_identification(test_emb, test_speaker, n, rounds=rounds, seed=seed, norm=norm)
        key = "all" if n == n_spk else str(n)
        out[f"oneshot_{key}"] = {"n_way": n, "acc": ident.accuracy, "chance": ident.chance}
        if n == n_spk:
            out["confusion"] = (ident.truth, ident.predicted)
    return out


def _mfcc_embed(data: SpeakerSet, train_mean: torch.Tensor) -> np.ndarray:
    e = data.mean_mfcc - train_mean  # centred by the training speakers' mean: no learning
    return (e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)).numpy()


def _ten_way(res: dict[str, Any]) -> dict[str, Any]:
    return res.get("oneshot_10", res["oneshot_all"])


# --- choosing settings: folds of the non-test speakers -------------------------------------------------


def validation_folds(roles: dict[str, str], n_folds: int = 4, seed: int = 123) -> list[list[str]]:
    """Folds of the real speakers that are never tested: fold 0 is the study's validation
    speakers; the training speakers are dealt, per corpus (seeded), into n_folds - 1 more."""
    real = {n: r for n, r in roles.items() if "@" not in n and not n.startswith("synthetic/")}
    folds: list[list[str]] = [sorted(n for n, r in real.items() if r == "val")] + [[] for _ in range(n_folds - 1)]
    rng = np.random.default_rng(seed)
    for corpus in sorted({n.split("/", 1)[0] for n in real}):
        names = sorted(n for n, r in real.items() if r == "train" and n.startswith(corpus + "/"))
        rng.shuffle(names)
        for k, name in enumerate(names):
            folds[1 + k % (n_folds - 1)].append(name)
    return folds


def cross_validate(cfg: Config, data_dir: str | Path | None = None, n_folds: int = 4,
                   rounds: int = 30) -> dict[str, float]:
    """Settings are chosen here, never on the test speakers: each fold of `validation_folds`
    in turn is held out (with its speed-perturbed copies), the encoder(s) of cfg.losses[0]
    are trained on the other real and the synthetic training speakers (early stopping on the
    held-out fold and the synthetic validation voices), and the held-out real speakers are
    identified one-shot among all of them (`all`) and within each corpus, with cosine and
    s-norm scores. Returns the means over folds."""
    data, roles = load_sets(cfg, data_dir)
    noise = noise_frames(cfg, data_dir)
    out: dict[str, list[float]] = {}
    for fold in validation_folds(roles, n_folds):
        held = set(fold)
        r = {n: "val" if n in held else "held out" if n.split("@")[0] in held
             else "train" if roles[n] == "val" and not n.startswith("synthetic/") else roles[n] for n in roles}
        train, val = _role_set(data, r, "train"), _role_set(data, r, "val")
        with tempfile.TemporaryDirectory() as tmp:
            run = Run(Path(tmp), "siamese", cfg, quiet=True)
            model, _ = train_ensemble(cfg, cfg.losses[0], train, val, run, noise)
        test = data.subset(fold)
        emb, spk = embed_set(model, test.frames, test.lengths), test.speaker.numpy()
        corpus = test.corpus_of_utterance()
        for scoring, norm in (("cosine", None), ("s-norm", CohortNorm(embed_set(model, train.frames, train.lengths),
                                                                      cfg.cohort_top_k))):
            for group in ["all"] + sorted(set(corpus)):
                rows = np.ones(len(spk), bool) if group == "all" else corpus == group
                if len(np.unique(spk[rows])) >= 2:
                    acc = one_shot_identification(emb[rows], spk[rows], None, rounds=rounds, seed=cfg.seed,
                                                  norm=norm).accuracy
                    out.setdefault(f"{scoring} {group}", []).append(acc)
    return {k: float(np.mean(v)) for k, v in out.items()}


# --- figures --------------------------------------------------------------------------------------------


def _histograms(results: dict[str, dict[str, Any]], group: str, score_label: str) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.2), sharey=True)
    for ax, (method, res) in zip(np.atleast_1d(axes), results.items()):
        r = res[group]
        bins = np.linspace(min(r["scores"].min(), -1), max(r["scores"].max(), 1), 41)  # s-norm scores leave [-1, 1]
        ax.hist(r["scores"][r["same"]], bins, alpha=0.6, density=True, label="same speaker")
        ax.hist(r["scores"][~r["same"]], bins, alpha=0.6, density=True, label="different speakers")
        ax.axvline(r["threshold"], color="k", ls="--", lw=1, label="threshold (validation)")
        ax.set(title=f"{method}\nAUC {r['auc']:.3f}, EER {r['eer']:.3f}", xlabel=score_label)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    return fig


def _tsne(emb: np.ndarray, data: SpeakerSet, seed: int) -> Any:
    from sklearn.manifold import TSNE

    plt = pyplot()
    xy = TSNE(2, perplexity=min(30.0, (len(emb) - 1) / 3), init="pca", random_state=seed).fit_transform(emb)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    corpora = sorted(set(data.corpus))
    markers = "os^Dvx*P"
    cmap = plt.get_cmap("tab20")
    spk = data.speaker.numpy()
    for s, (name, corpus) in enumerate(zip(data.names, data.corpus)):
        pts = xy[spk == s]
        ax.scatter(pts[:, 0], pts[:, 1], s=14, color=cmap(s % 20), marker=markers[corpora.index(corpus) % len(markers)],
                   label=name if len(data.names) <= 20 else None)
    ax.set(title="t-SNE of test embeddings (colour: speaker, marker: corpus)", xticks=[], yticks=[])
    if len(data.names) <= 20:
        ax.legend(fontsize=6, ncol=2, loc="best")
    return fig


def _confusion(truth: np.ndarray, predicted: np.ndarray, names: list[str]) -> Any:
    plt = pyplot()
    m = np.zeros((len(names), len(names)))
    np.add.at(m, (truth, predicted), 1)  # speaker indices into names
    m /= m.sum(1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(0.3 * len(names) + 3, 0.3 * len(names) + 2.5))
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    short = [n.split("/", 1)[-1] for n in names]
    ax.set_xticks(range(len(names)), short, rotation=90, fontsize=6)
    ax.set_yticks(range(len(names)), short, fontsize=6)
    ax.set(xlabel="identified as", ylabel="true speaker")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


# --- the study ----------------------------------------------------------------------------------------


def _check(cfg: Config) -> None:
    if not cfg.losses:
        raise ConfigError("losses is empty; give one or more of " + ", ".join(LOSSES))
    if cfg.crop_frames < 4 or cfg.batch_size < 2:
        raise ConfigError("crop_frames must be >= 4 and batch_size >= 2")
    if not 0 <= cfg.val_fraction < 1 or not 0 < cfg.test_fraction < 1 or cfg.val_fraction + cfg.test_fraction >= 1:
        raise ConfigError("val_fraction and test_fraction must be fractions in [0, 1) summing below 1")
    if cfg.ensemble < 1:
        raise ConfigError(f"ensemble={cfg.ensemble}: train at least 1 encoder per loss")
    if cfg.noise_snr and (len(cfg.noise_snr) != 2 or cfg.noise_snr[0] > cfg.noise_snr[1]):
        raise ConfigError(f"noise_snr={cfg.noise_snr}: give [low, high] in dB, or [] for no noise")
    if any(f <= 0 for f in cfg.speed_perturb):
        raise ConfigError(f"speed_perturb={cfg.speed_perturb}: speed factors must be positive")
    if cfg.cohort_top_k is not None and cfg.cohort_top_k < 2:
        raise ConfigError(f"cohort_top_k={cfg.cohort_top_k}: use 2 or more cohort utterances, or null for all")


def run(cfg: Config, run: Run) -> dict:
    _check(cfg)
    data, roles = load_sets(cfg, run.data_dir)
    train, val = _role_set(data, roles, "train"), _role_set(data, roles, "val")
    test_corpora = sorted({c for n, c in zip(data.names, data.corpus) if roles[n] == "test"})
    real_corpora = [c for c in test_corpora if c != "synthetic"]
    groups: dict[str, SpeakerSet] = {}
    if real_corpora:
        groups["real"] = _role_set(data, roles, "test", real_corpora)
        if len(real_corpora) > 1:
            groups |= {f"within {c}": _role_set(data, roles, "test", [c]) for c in real_corpora
                       if sum(roles[n] == "test" and cc == c for n, cc in zip(data.names, data.corpus)) >= 2}
    if "synthetic" in test_corpora:
        groups["synthetic"] = _role_set(data, roles, "test", ["synthetic"])
    _record_data(run, data, roles, cfg.hop)
    run.info(f"[siamese] {len(train.names)} training speakers ({len(train)} utterances), "
             f"{len(val.names)} validation, test groups: " + ", ".join(f"{g} ({len(s.names)})" for g, s in groups.items()))

    # every method maps a SpeakerSet to unit embeddings
    torch.manual_seed(cfg.seed)
    untrained = build_encoder(cfg, data.frames.shape[1]).to(run.device).eval()
    train_mean = train.mean_mfcc.mean(0)
    methods: dict[str, Any] = {"mean MFCC (no learning)": lambda s: _mfcc_embed(s, train_mean),
                               "untrained encoder": lambda s: embed_set(untrained, s.frames.to(run.device),
                                                                        s.lengths.to(run.device))}
    histories: dict[str, list[Any]] = {}
    val_auc: dict[str, float] = {}  # of each loss's (ensemble) encoder: chooses the loss
    vi, vj, vsame = verification_pairs(val.speaker.numpy(), seed=cfg.seed)
    noise = noise_frames(cfg, run.data_dir)
    for loss in cfg.losses:
        model, histories[loss] = train_ensemble(cfg, loss, train, val, run, noise)
        methods[f"trained ({loss})"] = (lambda m: lambda s: embed_set(m, s.frames.to(run.device),
                                                                      s.lengths.to(run.device)))(model)
        val_emb = methods[f"trained ({loss})"](val)
        val_auc[loss] = roc_auc((val_emb[vi] * val_emb[vj]).sum(1), vsame)
    selected = max(cfg.losses, key=lambda loss: val_auc[loss])

    val_speaker = val.speaker.numpy()
    results: dict[str, dict[str, Any]] = {}
    for method, embed in methods.items():
        val_emb = embed(val)
        norm = CohortNorm(embed(train), cfg.cohort_top_k) if cfg.score_norm == "s-norm" else None
        results[method] = {g: evaluate_group(embed(s), s.speaker.numpy(), val_emb, val_speaker, rounds=cfg.eval_rounds,
                                             seed=cfg.seed, norm=norm) for g, s in groups.items()}
    trained_key = f"trained ({selected})"
    baselines = ["mean MFCC (no learning)", "untrained encoder"]

    _record_tables(run, results, groups)
    _record_figures(run, cfg, results, groups, histories, methods[trained_key], trained_key)
    wins = _record_conclusions(run, results, trained_key, baselines, selected, histories, val_auc)

    headline: dict[str, Any] = {"oneshot10_acc": {}, "auc": {}, "eer": {}}
    for g in groups:
        name = g.replace("within ", "within_")
        headline["oneshot10_acc"][name] = _ten_way(results[trained_key][g])["acc"]
        headline["auc"][name] = results[trained_key][g]["auc"]
        headline["eer"][name] = results[trained_key][g]["eer"]
    for label, method in (("mfcc", baselines[0]), ("untrained", baselines[1])):
        for g in ("real", "synthetic"):
            if g in groups:
                headline["oneshot10_acc"][f"{g}_{label}"] = _ten_way(results[method][g])["acc"]
    headline["wins_over_baselines"] = wins
    return {"headline": headline, "selected_loss": selected, "n_features": int(data.frames.shape[1]),
            "speakers": {role: sorted(n for n, r in roles.items() if r == role) for role in ("train", "val", "test")},
            "results": {m: {g: {k: v for k, v in r.items() if k not in ("scores", "same", "confusion")}
                            for g, r in res.items()} for m, res in results.items()},
            "val_auc": val_auc, "epochs": {loss: [h.epochs for h in hs] for loss, hs in histories.items()}}


def _record_data(run: Run, data: SpeakerSet, roles: dict[str, str], hop: int) -> None:
    rows = []
    corpus_of = data.corpus_of_utterance()
    spk = data.speaker.numpy()
    for corpus in sorted(set(data.corpus)):
        for role in ("train", "val", "test"):
            names = [k for k, (n, c) in enumerate(zip(data.names, data.corpus)) if c == corpus and roles[n] == role]
            if not names:
                continue
            rows_mask = np.isin(spk, names) & (corpus_of == corpus)
            rows.append({"corpus": corpus, "role": role, "speakers": len(names), "utterances": int(rows_mask.sum()),
                         "mean seconds": float(data.lengths.numpy()[rows_mask].mean()) * hop / SAMPLE_RATE})
    run.add_table("Data used", rows, caption="Speakers are split by speaker: no speaker is in two roles. "
                  "Real corpora: fsdd (spoken digits), arabic (Arabic speech commands, 1 s), librispeech "
                  "(read English, ~3 s); synthetic: espeak-ng voices (accent, variant, pitch, speed).")


def _record_tables(run: Run, results: dict[str, dict[str, Any]], groups: dict[str, SpeakerSet]) -> None:
    for g, s in groups.items():
        rows = []
        for method, res in results.items():
            r = res[g]
            row = {"method": method, "ROC-AUC": r["auc"], "EER": r["eer"],
                   "acc @ val threshold": r["acc_at_val_threshold"]}
            for key in sorted((k for k in r if k.startswith("oneshot_")), key=lambda k: r[k]["n_way"]):
                row[f"{r[key]['n_way']}-way acc"] = r[key]["acc"]
            rows.append(row)
        chance = {k: r[k] for k in next(iter(results.values()))[g] if k.startswith("oneshot_")}
        rows.append({"method": "chance", "ROC-AUC": 0.5, "EER": 0.5, "acc @ val threshold": 0.5,
                     **{f"{c['n_way']}-way acc": c["chance"] for c in chance.values()}})
        run.add_table(f"Unseen speakers: {g}", rows,
                      caption=f"{len(s.names)} test speakers, {len(s)} utterances. One-shot: one enrolment "
                              "utterance per speaker, every other utterance identified among N speakers.")


def _record_figures(run: Run, cfg: Config, results: dict[str, dict[str, Any]], groups: dict[str, SpeakerSet],
                    histories: dict[str, Any], trained_embed: Any, trained_key: str) -> None:
    main = "real" if "real" in groups else next(iter(groups))
    label = "cosine similarity" + (", s-normalised" if cfg.score_norm == "s-norm" else "")
    run.add_figure(_histograms(results, main, label), f"similarity_{main}",
                   title=f"Same/different-speaker scores: {label} ({main} test speakers)")
    run.add_figure(_tsne(trained_embed(groups[main]), groups[main], cfg.seed), f"tsne_{main}",
                   title=f"t-SNE of {trained_key} embeddings ({main} test speakers)")
    truth, predicted = results[trained_key][main]["confusion"]
    run.add_figure(_confusion(truth, predicted, groups[main].names), f"confusion_{main}",
                   title=f"One-shot identification among all {main} test speakers: confusion ({trained_key})")
    series = {loss + (f" #{k}" if len(hs) > 1 else ""): (list(range(1, len(h.epochs) + 1)), h.series("val_auc"))
              for loss, hs in histories.items() for k, h in enumerate(hs)}
    run.add_figure(line_plot(series, title="validation verification AUC", xlabel="epoch", ylabel="ROC-AUC"),
                   "val_auc", title="Training: validation AUC per epoch")


def _record_conclusions(run: Run, results: dict[str, dict[str, Any]], trained_key: str, baselines: list[str],
                        selected: str, histories: dict[str, list[Any]], val_auc: dict[str, float]) -> float:
    """Findings computed from the results; returns the fraction of measures the trained model wins."""
    measures = []
    for g, r in results[trained_key].items():
        for key in r:
            if key in ("auc", "acc_at_val_threshold") or key.startswith("oneshot_"):
                value = r[key]["acc"] if key.startswith("oneshot_") else r[key]
                best_base = max((results[b][g][key]["acc"] if key.startswith("oneshot_") else results[b][g][key])
                                for b in baselines)
                measures.append((g, key, value, best_base))
            elif key == "eer":
                measures.append((g, key, -r[key], max(-results[b][g][key] for b in baselines)))
    won = [m for m in measures if m[2] > m[3]]
    lost = [f"{g} {k}" for g, k, v, b in measures if v <= b]
    best_epochs = ", ".join(str(h.best_epoch) for h in histories[selected])
    text = [f"The loss chosen on validation is {selected} (validation AUC {val_auc[selected]:.3f}; "
            f"best epoch of each of its {len(histories[selected])} encoder(s): {best_epochs})."]
    text.append(f"The trained encoder beats both baselines on {len(won)} of {len(measures)} measures"
                + (f"; not on: {', '.join(lost)}." if lost else " (all of them)."))
    for g in results[trained_key]:
        r = _ten_way(results[trained_key][g])
        base = {b: _ten_way(results[b][g])["acc"] for b in baselines}
        text.append(f"{g}: one-shot {r['n_way']}-way accuracy {r['acc']:.1%} (chance {r['chance']:.1%}; "
                    + ", ".join(f"{b} {v:.1%}" for b, v in base.items()) + ").")
    if "real" in results[trained_key] and "oneshot_10" in results[trained_key]["real"]:
        acc = results[trained_key]["real"]["oneshot_10"]["acc"]
        text.append(f"Target of 90% one-shot 10-way accuracy on unseen real speakers: "
                    f"{'met' if acc >= 0.9 else 'not met'} ({acc:.1%}).")
    run.add_text("Findings", " ".join(text))
    return len(won) / max(len(measures), 1)
