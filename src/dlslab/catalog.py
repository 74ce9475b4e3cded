"""The study table: the twelve studies by CLI name, and how to load each one's recipe module.

The runner and this table are the only code that imports `dlslab.studies`. Each study is a
module `dlslab.studies.<module>` that defines:

- `Config`: a dataclass subclassing `dlslab.config.StudyConfig`, one comment per field;
- `PRESETS`: {"smoke": {...}, "quick": {...}, "full": {...}} named overrides;
- `data_needs(cfg) -> list[str]`: names from `dlslab.data.registry.DATASETS` it will read;
- optionally `check(cfg) -> None`: range checks that a type cannot express (sizes >= 1,
  learning rates > 0, fractions in (0, 1]); raises `ConfigError`. The runner calls it when it
  plans the run, so `run all` refuses a bad value before any study starts;
- `run(cfg, run: dlslab.runs.Run) -> dict`: trains, evaluates, records tables, plots
  and samples in `run`, and returns the metrics, with a `headline` dict of its key numbers
  (nested dicts of numbers: `{"snr_db": {"mlp": 10.9, "cnn2d": 11.2}}`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from dlslab.errors import UsageError, did_you_mean


@dataclass(frozen=True)
class StudyInfo:
    number: int
    name: str  # CLI name
    module: str  # module under dlslab.studies
    question: str

    def load(self) -> ModuleType:
        return importlib.import_module(f"dlslab.studies.{self.module}")


STUDIES: dict[str, StudyInfo] = {s.name: s for s in [
    StudyInfo(1, "mlp-hparams", "mlp_hparams",
              "how optimizer, initializer, activation, learning rate, width and depth change an MLP"),
    StudyInfo(2, "layer-embeddings", "layer_embeddings",
              "how each hidden layer separates the classes (PCA, t-SNE, separation scores)"),
    StudyInfo(3, "denoise", "denoise", "speech denoising on STFT magnitudes: MLP vs 1-D CNN vs 2-D CNN"),
    StudyInfo(4, "augment", "augment", "how much data augmentation buys on CIFAR-10 as the training set shrinks"),
    StudyInfo(5, "transfer", "transfer", "transfer learning with and without augmentation on CIFAR-10"),
    StudyInfo(6, "lstm-denoise", "lstm_denoise",
              "LSTM denoising of variable-length utterances; chunks vs padding vs packing"),
    StudyInfo(7, "compress", "compress", "pruning, weight sharing, quantisation, entropy coding, low rank"),
    StudyInfo(8, "siamese", "siamese", "one-shot speaker identification with a Siamese network"),
    StudyInfo(9, "pixel-lstm", "pixel_lstm", "an LSTM that writes the lower half of an image row by row"),
    StudyInfo(10, "vae", "vae", "a VAE's latent space: samples, realism, which dimension rotates the digit"),
    StudyInfo(11, "outpaint", "outpaint", "a conditional GAN that draws the whole image from its centre patch"),
    StudyInfo(12, "gan-impute", "gan_impute", "GAN imputation of missing values (GAIN) on images and tables"),
]}


def get_study(name: str) -> StudyInfo:
    if name not in STUDIES:
        raise UsageError(f"unknown study {name!r}{did_you_mean(name, list(STUDIES))}; "
                         f"valid studies: {', '.join(STUDIES)}")
    return STUDIES[name]
