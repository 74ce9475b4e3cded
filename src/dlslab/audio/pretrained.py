"""A speaker encoder pretrained on other data: the GE2E encoder whose weights ship in the
`resemblyzer` wheel (0.1.4, Apache-2.0; `pip install dlslab[pretrained]`).

Only the weight file is used: it is found with `importlib.util.find_spec` (the package itself
is never imported: it pulls in librosa and webrtcvad) and read with `weights_only=True`, so
nothing in it can run code. The front end is ours, with the package's parameters:

- the waveform at 16 kHz, levelled to -30 dBFS (RMS);
- mel power frames (not log): a 25 ms periodic Hann window (400 samples), 10 ms hop (160),
  centred with zero padding, |STFT|^2 through 40 Slaney-scale mel filters with Slaney
  (area) normalisation, 0-8 kHz;
- the utterance is cut into partial windows of 160 frames (1.6 s), 1.3 per second; each is
  embedded by the LSTM (the last layer's final state -> linear -> ReLU -> unit length) and
  the utterance's embedding is their mean, made unit length again (`models.siamese.GE2EEncoder`).

The package also trims long silences with a voice-activity detector; we do not (our corpora
are short, already trimmed clips).
"""

from __future__ import annotations

import importlib.util
import io
import pickle
from functools import cache
from pathlib import Path

import numpy as np
import torch

from dlslab.atomic import read_capped
from dlslab.audio.speakers import Utterance, normalise_level
from dlslab.errors import BadFileError, UnsafeFileError
from dlslab.models.siamese import GE2EEncoder

PACKAGE = "resemblyzer"  # the PyPI package whose wheel holds the weights
WEIGHTS = "pretrained.pt"  # the weight file inside the package
MAX_WEIGHTS_BYTES = 64 << 20  # the file is 17 MB; anything much larger is not it
SAMPLE_RATE = 16000  # Hz
N_MELS = 40  # mel bands
WINDOW = 400  # STFT window in samples (25 ms)
HOP = 160  # STFT hop in samples (10 ms)
LEVEL_DBFS = -30.0  # RMS level every waveform is scaled to
NOT_INSTALLED = "not installed (pip install dlslab[pretrained])"


def weights_path() -> Path | None:
    """The installed package's weight file, or None when the package is not installed."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / WEIGHTS


def installed() -> bool:
    return weights_path() is not None


def load_state(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The encoder's weights, named as in `GE2EEncoder`. A missing, corrupt, unsafe or
    different file is a BadFileError (exit 2) that names it."""
    path = Path(path) if path is not None else weights_path()
    if path is None:
        raise BadFileError(f"the pretrained speaker encoder is {NOT_INSTALLED}")
    if not path.is_file():
        raise BadFileError(f"{path}: the pretrained encoder's weight file is missing; "
                           f"reinstall the package ({NOT_INSTALLED.split('(')[1].rstrip(')')})")
    raw = read_capped(path, MAX_WEIGHTS_BYTES, "a pretrained encoder's weight file")
    try:  # torch's legacy (non-zip) format: read from memory, tensors and plain values only
        checkpoint = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UnsafeFileError(f"{path}: refused to load: it holds something other than tensors and "
                              "plain values (or is corrupt); reinstall the package") from None
    except Exception as exc:  # torch fails in many ways on a damaged file; all mean the same
        raise BadFileError(f"{path}: not a readable weight file (truncated or corrupt: "
                           f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}); "
                           "reinstall the package") from None
    state = checkpoint.get("model_state") if isinstance(checkpoint, dict) else None
    expected = GE2EEncoder().state_dict()
    if not isinstance(state, dict):
        raise BadFileError(f"{path}: not the GE2E encoder's weights (no 'model_state' in it)")
    wrong = [k for k, v in expected.items()
             if not isinstance(state.get(k), torch.Tensor) or state[k].shape != v.shape]
    if wrong:
        raise BadFileError(f"{path}: not the GE2E encoder's weights ({len(wrong)} tensors missing or "
                           f"of another shape, e.g. {wrong[0]})")
    return {k: state[k].float() for k in expected}


def pretrained_encoder(path: str | Path | None = None) -> GE2EEncoder:
    """The GE2E encoder with the pretrained weights, in eval mode."""
    encoder = GE2EEncoder()
    encoder.load_state_dict(load_state(path))
    return encoder.eval()


# --- the front end --------------------------------------------------------------------------------


def _slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Hz -> Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    step = np.log(6.4) / 27.0
    return np.where(hz < 1000.0, hz * 3.0 / 200.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / step)


def _slaney_hz(mel: np.ndarray) -> np.ndarray:
    step = np.log(6.4) / 27.0
    return np.where(mel < 15.0, mel * 200.0 / 3.0, 1000.0 * np.exp(step * (mel - 15.0)))


@cache
def _filterbank(n_mels: int, n_fft: int, sample_rate: int) -> torch.Tensor:
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = _slaney_hz(np.linspace(0.0, _slaney_mel(sample_rate / 2), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    tri = np.maximum(0.0, np.minimum((freqs - lower) / (centre - lower), (upper - freqs) / (upper - centre)))
    return torch.from_numpy(tri * (2.0 / (upper - lower))).float()  # (n_mels, F), each of equal area


def slaney_filterbank(n_mels: int = N_MELS, n_fft: int = WINDOW, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Triangular mel filters (n_mels, n_fft // 2 + 1) on Slaney's scale, area-normalised."""
    return _filterbank(n_mels, n_fft, sample_rate).clone()


def mel_power(waves: torch.Tensor) -> torch.Tensor:
    """Mel power frames (B, N_MELS, 1 + samples // HOP) of waveforms (B, samples) at 16 kHz."""
    spec = torch.stft(waves, WINDOW, hop_length=HOP, window=torch.hann_window(WINDOW, device=waves.device),
                      center=True, pad_mode="constant", return_complex=True)  # (B, F, frames)
    return _filterbank(N_MELS, WINDOW, SAMPLE_RATE).to(waves.device) @ spec.abs().square()


def levelled(wave: np.ndarray) -> torch.Tensor:
    """The waveform at LEVEL_DBFS RMS."""
    return normalise_level(wave) * 10 ** (LEVEL_DBFS / 20)


def mel_frames(utterances: list[Utterance], max_seconds: float,
               batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's input: mel power frames (N, N_MELS, T), zero beyond each utterance's
    length, and the lengths (N,); each utterance cut to its first max_seconds."""
    waves = [levelled(u.wave)[: int(max_seconds * SAMPLE_RATE)] for u in utterances]
    lengths = torch.tensor([len(w) // HOP + 1 for w in waves])  # frames of a centred STFT
    frames = torch.zeros(len(waves), N_MELS, int(lengths.max()))
    order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
    for start in range(0, len(order), batch):  # similar lengths together: little padding
        rows = order[start:start + batch]
        mel = mel_power(torch.nn.utils.rnn.pad_sequence([waves[i] for i in rows], batch_first=True))
        for k, i in enumerate(rows):
            frames[i, :, : int(lengths[i])] = mel[k, :, : int(lengths[i])]
    return frames, lengths
