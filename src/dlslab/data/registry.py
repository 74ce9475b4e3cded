"""Every dataset the studies read: its files, checksums, canonical address and licence.

`kind` says how a dataset is had: "files" (found on disk or downloaded), "built" (made
locally, e.g. the espeak-ng speech corpus), "package" (ships with an installed package, e.g.
scikit-learn's UCI tables), or "optional" (used when found; the study works without it).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DataFile:
    name: str  # path inside the dataset folder
    size: int | None = None  # bytes, of the copies we know
    sha256: tuple[str, ...] = ()  # accepted sha256 of known copies (canonical first)
    content_md5: str | None = None  # md5 of the decompressed content (any gzip of it is fine)
    url: str | None = None  # canonical download address


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    kind: str  # files | built | package | optional
    folder: str = ""  # folder name under a data root
    files: tuple[DataFile, ...] = ()
    system_paths: tuple[str, ...] = ()  # known install locations (Debian packages)
    licence: str = ""
    note: str = ""
    rebuild_sha256: tuple[str, ...] = field(default=())  # known non-canonical rebuilds


_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

DATASETS: dict[str, Dataset] = {d.name: d for d in [
    Dataset(
        "mnist", "MNIST handwritten digits (60k/10k, 28x28)", "files", "mnist",
        files=(
            DataFile("train-images-idx3-ubyte.gz", 9630610,
                     ("71524e2cd1ad2968737f7f2f2ff69cbfc32df8ccddff51593f7cb2d4e0eb5b64",),
                     "6bbc9ace898e44ae57da46a324031adb", _MNIST_URL + "train-images-idx3-ubyte.gz"),
            DataFile("train-labels-idx1-ubyte.gz", 28878,
                     ("fe03b8bd7915f70bf5aa08be480aa413fbd85afcaa58b35d230d335f284fd88e",),
                     "a25bea736e30d166cdddb491f175f624", _MNIST_URL + "train-labels-idx1-ubyte.gz"),
            DataFile("t10k-images-idx3-ubyte.gz", 1602050,
                     ("5634745efa576a17e7d4cf5cd9d09123c75e6538e5114267c2d156edaf519341",),
                     "2646ac647ad5339dbf082846283269ea", _MNIST_URL + "t10k-images-idx3-ubyte.gz"),
            DataFile("t10k-labels-idx1-ubyte.gz", 4517,
                     ("ae18e77e031ccde52407f794d123116439864147d33ac992975f85dd4dc42af6",),
                     "27ae3e4e09519cfbb04c329615203637", _MNIST_URL + "t10k-labels-idx1-ubyte.gz"),
        ),
        licence="Y. LeCun, C. Cortes, C. Burges; CC BY-SA 3.0",
    ),
    Dataset(
        "fashion-mnist", "Fashion-MNIST (Zalando; 60k/10k, 28x28)", "files", "fashion-mnist",
        files=(
            DataFile("train-images-idx3-ubyte.gz", 26421880,
                     ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                      "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
                     None, _FASHION_URL + "train-images-idx3-ubyte.gz"),
            DataFile("train-labels-idx1-ubyte.gz", 29515,
                     ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                      "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
                     None, _FASHION_URL + "train-labels-idx1-ubyte.gz"),
            DataFile("t10k-images-idx3-ubyte.gz", 4422102,
                     ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                      "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
                     None, _FASHION_URL + "t10k-images-idx3-ubyte.gz"),
            DataFile("t10k-labels-idx1-ubyte.gz", 5148,
                     ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                      "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
                     None, _FASHION_URL + "t10k-labels-idx1-ubyte.gz"),
        ),
        system_paths=("/usr/share/datasets/fashion-mnist",),
        licence="MIT, Copyright 2017 Zalando SE",
        note="Debian: apt-get install dataset-fashion-mnist",
    ),
    Dataset(
        "cifar10", "CIFAR-10 (50k/10k, 32x32 colour), python-pickle batches", "files", "cifar10",
        files=(
            DataFile("cifar-10-python.tar.gz", 170498071,
                     ("6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",),
                     None, "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
        ),
        rebuild_sha256=("e54440e264d51ae636713b1aee365ab89e6f5924239a307b47f63460e07929e5",),
        licence="A. Krizhevsky, V. Nair, G. Hinton (University of Toronto)",
        note="a known rebuild from JPEG files is accepted after a structure check and reported as such",
    ),
    Dataset("noise", "real noise recordings (flac/wav) for mixing", "optional", "noise",
            note="without it the speech corpus uses generated noise only (white, pink, brown, babble)"),
    Dataset("speakers", "spoken digits, 6 speakers (FSDD)", "optional", "speakers",
            licence="CC BY-SA 4.0 (Free Spoken Digit Dataset)"),
    Dataset("speakers2", "40 real speakers: Arabic Speech Commands (30) and LibriSpeech (10)",
            "optional", "speakers2", licence="CC BY 4.0"),
    Dataset("speech-corpus", "synthetic speech corpus (espeak-ng voices mixed with noise)", "built",
            note="built locally by `dlslab data speech` (needs the espeak-ng program)"),
    Dataset("uci", "UCI tables shipped with scikit-learn (breast cancer, wine, digits, "
            "California housing)", "package",
            note="breast cancer, wine and digits ship inside scikit-learn; California housing "
                 "is downloaded by scikit-learn on first use"),
]}
