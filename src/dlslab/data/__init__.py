"""Datasets: find on disk, verify, download, load as tensors.

- `registry.DATASETS`: every dataset with files, checksums, addresses, licences.
- `locate.locate/require`: the search order (--data-dir, $DLSLAB_DATA, cache, system, download).
- `images.load_images`: MNIST, Fashion-MNIST, CIFAR-10 as uint8 tensors.
"""
