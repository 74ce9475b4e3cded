"""`dlslab speakers`: verify, enrol and identify speakers with a trained `siamese` run.

    dlslab speakers verify A.wav B.wav --model RUN        same speaker or not, with the score
    dlslab speakers enrol DIR --model RUN --out G.json    one mean embedding per speaker folder
    dlslab speakers identify FILE... --gallery G.json     the closest enrolled speaker per file

Scores are cosine similarities of the encoder's unit embeddings. The threshold is the
equal-error-rate threshold on the run's validation speakers (computed on first use and stored
in the run folder; `--threshold` overrides it): below it, `identify` says "unknown speaker".
A gallery is a JSON file: the run whose encoder made it, and for each speaker its enrolment
files and their mean embedding.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dlslab.errors import DataError, UsageError

GALLERY_VERSION = 2


def _encoder(run: str, data_dir: str | None, init: str = "scratch") -> Any:
    from dlslab.audio.speaker_encoder import SpeakerEncoder

    return SpeakerEncoder.from_run(run, data_dir, init)


def _threshold(encoder: Any, given: float | None) -> float:
    if given is not None:
        if not -1 <= given <= 1:
            raise UsageError(f"--threshold {given}: a cosine similarity threshold must be in [-1, 1]")
        return given
    return encoder.threshold


def enrol(folder: str | Path, run_dir: str | Path, out: str | Path, *, per_speaker: int | None = None,
          data_dir: str | None = None, init: str = "scratch") -> dict[str, Any]:
    """Write a gallery: each speaker folder of `folder` enrolled from its utterances (at most
    `per_speaker`, the first by name) as their mean embedding."""
    import numpy as np

    from dlslab import atomic
    from dlslab.audio.speakers import speaker_files

    encoder = _encoder(str(run_dir), data_dir, init)
    speakers = {name: files[:per_speaker] for name, files in speaker_files(folder, min_per_speaker=1).items()}
    model = "pretrained" if str(run_dir) == "pretrained" else str(Path(run_dir).resolve())
    gallery = {"version": GALLERY_VERSION, "model": model, "init": init, "speakers": [
        {"name": name, "files": [str(f) for f in files],
         "embedding": np.round(encoder.enrol(files), 6).tolist()} for name, files in speakers.items()]}
    atomic.write_json(out, gallery)
    return gallery


def read_gallery(path: str | Path) -> tuple[list[str], Any, str, str]:
    """(speaker names, their embeddings (S, E), the run folder or `pretrained`, its init) of a gallery file."""
    import numpy as np

    from dlslab import atomic

    try:
        gallery = json.loads(atomic.read_capped(path, 64 << 20, "a speaker gallery"))
        names = [str(s["name"]) for s in gallery["speakers"]]
        enrolled = np.array([s["embedding"] for s in gallery["speakers"]], dtype=np.float64)
        run_dir, init = str(gallery["model"]), str(gallery.get("init", "scratch"))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a speaker gallery written by `dlslab speakers enrol` ({exc})") from None
    if enrolled.ndim != 2 or not len(names) or not np.all(np.isfinite(enrolled)):
        raise DataError(f"{path} is not a speaker gallery written by `dlslab speakers enrol` (no usable embeddings)")
    return names, enrolled, run_dir, init


def identify(files: list[str], gallery_path: str | Path, *, threshold: float | None = None,
             data_dir: str | None = None) -> tuple[list[list[tuple[str, float]]], float]:
    """For each file, the gallery's speakers ranked by cosine similarity (most similar first),
    and the threshold below which the best is "unknown speaker"."""
    import numpy as np

    names, enrolled, run_dir, init = read_gallery(gallery_path)
    encoder = _encoder(run_dir, data_dir, init)
    threshold = _threshold(encoder, threshold)
    queries = encoder.embed_files(files)  # all files in one pass: one model load, one batch
    if enrolled.shape[1] != queries.shape[1]:
        raise DataError(f"{gallery_path}: its embeddings do not match the encoder of {run_dir}; enrol again")
    enrolled = enrolled / np.maximum(np.linalg.norm(enrolled, axis=1, keepdims=True), 1e-12)
    sims = queries @ enrolled.T  # (files, speakers)
    order = np.argsort(-sims, axis=1, kind="stable")
    return [[(names[k], float(sims[i, k])) for k in order[i]] for i in range(len(files))], threshold


def cmd_verify(args: argparse.Namespace) -> int:
    from dlslab.audio.io import AudioWarning
    from dlslab.commands import warnings_to_stderr

    encoder = _encoder(args.model, args.data_dir, args.init)
    with warnings_to_stderr(AudioWarning):
        result = encoder.verify(args.a, args.b, threshold=_threshold(encoder, args.threshold))
    verdict = "same speaker" if result.same else "different speakers"
    print(f"{verdict}: score {result.score:.4f} {'>=' if result.same else '<'} threshold {result.threshold:.4f} "
          "(cosine similarity; threshold: equal error rate on the run's validation speakers)")
    return 0


def cmd_enrol(args: argparse.Namespace) -> int:
    from dlslab.audio.io import AudioWarning
    from dlslab.commands import warnings_to_stderr, writable_output

    if args.per_speaker is not None and args.per_speaker < 1:
        raise UsageError(f"--per-speaker {args.per_speaker}: must be >= 1")
    writable_output(args.out)
    with warnings_to_stderr(AudioWarning):
        gallery = enrol(args.folder, args.model, args.out, per_speaker=args.per_speaker, data_dir=args.data_dir,
                        init=args.init)
    counts = [len(s["files"]) for s in gallery["speakers"]]
    print(f"enrolled {len(counts)} speakers from {sum(counts)} utterances ({min(counts)} to {max(counts)} each, "
          f"mean embedding) with the encoder of {args.model}")
    print(f"gallery: {args.out}")
    return 0


def cmd_identify(args: argparse.Namespace) -> int:
    from dlslab.audio.io import AudioWarning
    from dlslab.commands import warnings_to_stderr

    if args.top < 1:
        raise UsageError(f"--top {args.top}: must be >= 1")
    with warnings_to_stderr(AudioWarning):
        ranked, threshold = identify(args.files, args.gallery, threshold=args.threshold, data_dir=args.data_dir)
    print(f"{'file':<40} {'speaker':<30} {'score':>7}" + ("  next" if args.top > 1 else ""))
    for file, ranks in zip(args.files, ranked):
        name, score = ranks[0]
        shown = name if score >= threshold else "unknown speaker"
        rest = ", ".join(f"{n} {s:.3f}" for n, s in ranks[1:args.top])
        print(f"{file:<40} {shown:<30} {score:>7.4f}" + (f"  {rest}" if rest else ""))
    print(f"(threshold {threshold:.4f}: below it, the closest speaker is reported as unknown)", file=sys.stderr)
    return 0


def register(subparsers: Any, groups: dict[str, Any]) -> None:
    p = subparsers.add_parser("speakers", help="verify, enrol and identify speakers with a trained siamese run")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True

    def encoder_option(q: argparse.ArgumentParser) -> None:
        q.add_argument("--encoder", "--model", dest="model", required=True, metavar="pretrained|RUN",
                       help="a finished `dlslab run siamese` folder, or `pretrained`: the GE2E encoder "
                            "pretrained on other data (needs dlslab[pretrained])")
        q.add_argument("--init", choices=("scratch", "pretrained"), default="scratch", help="with RUN: its "
                       "encoder trained from scratch (default) or fine-tuned from the pretrained one")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--threshold", type=float, help="same-speaker threshold on the cosine similarity "
                       "(default: the equal-error-rate threshold on the run's validation speakers)")
        q.add_argument("--data-dir", help="where the run's validation speakers are (for the threshold)")

    q = sub.add_parser("verify", help="are two recordings the same speaker?")
    q.add_argument("a", metavar="A", help="a recording (wav or flac)")
    q.add_argument("b", metavar="B", help="another recording")
    encoder_option(q)
    common(q)
    q.set_defaults(func=cmd_verify)

    q = sub.add_parser("enrol", help="build a gallery: one mean embedding per speaker folder",
                       description="DIR holds one folder per speaker (SPEAKER/utterance.wav|flac); each "
                                   "speaker is enrolled from the mean embedding of its utterances.")
    q.add_argument("folder", metavar="DIR")
    encoder_option(q)
    q.add_argument("--out", default="gallery.json", help="gallery file to write (default gallery.json)")
    q.add_argument("--per-speaker", type=int, help="enrol at most this many utterances per speaker (first by name)")
    q.add_argument("--data-dir", help=argparse.SUPPRESS)
    q.set_defaults(func=cmd_enrol)

    q = sub.add_parser("identify", help="the closest enrolled speaker of each recording (or unknown)")
    q.add_argument("files", nargs="+", metavar="FILE")
    q.add_argument("--gallery", required=True, metavar="G", help="a gallery written by `speakers enrol`")
    q.add_argument("--top", type=int, default=1, help="also show the next closest speakers (default 1)")
    common(q)
    q.set_defaults(func=cmd_identify)
