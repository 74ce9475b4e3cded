"""The twelve studies, by CLI name.

Each study is a module `dlslab.studies.<module>` that defines:

- `Config`: a dataclass subclassing `dlslab.config.StudyConfig`, one comment per field;
- `PRESETS`: {"smoke": {...}, "quick": {...}, "full": {...}} named overrides;
- `data_needs(cfg) -> list[str]`: names from `dlslab.data.registry.DATASETS` it will read;
- `run(cfg, run: dlslab.report.run.Run) -> dict`: trains, evaluates, records tables, plots
  and samples in `run`, and returns the metrics, with a `headline` dict of its key numbers.

A study whose module does not exist yet is listed as "not built yet".
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

from dlslab.errors import UsageError


@dataclass(frozen=True)
class StudyInfo:
    number: int
    name: str  # CLI name
    module: str  # module under dlslab.studies
    question: str

    @property
    def built(self) -> bool:
        return importlib.util.find_spec(f"dlslab.studies.{self.module}") is not None

    def load(self) -> ModuleType:
        if not self.built:
            raise UsageError(f"study {self.name!r} is not built yet")
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
        raise UsageError(f"unknown study {name!r}; valid studies: {', '.join(STUDIES)}, all")
    return STUDIES[name]
