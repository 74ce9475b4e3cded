"""`dlslab speakers enrol DIR --model RUN` and `dlslab speakers identify FILE --gallery G`.

A gallery is a JSON file: the run whose encoder made it, and for each speaker the one
enrolment utterance and its embedding. Identification embeds a new recording with the same
encoder and ranks the enrolled speakers by cosine similarity.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from dlslab import atomic
from dlslab.audio.speaker_encoder import embed_files, load_encoder
from dlslab.audio.speakers import speaker_files
from dlslab.errors import DataError, UsageError

GALLERY_VERSION = 1


def enrol(folder: str | Path, run_dir: str | Path, out: str | Path) -> Path:
    """Write a gallery with one utterance per speaker folder of `folder` (the first by name)."""
    model, spec = load_encoder(run_dir)
    speakers = speaker_files(folder, min_per_speaker=1)
    files = [paths[0] for paths in speakers.values()]
    emb = embed_files(model, spec, files)
    gallery = {"version": GALLERY_VERSION, "model": str(Path(run_dir).resolve()),
               "speakers": [{"name": name, "file": str(f), "embedding": [round(float(v), 6) for v in e]}
                            for name, f, e in zip(speakers, files, emb)]}
    atomic.write_json(out, gallery)
    return Path(out)


def identify(file: str | Path, gallery_path: str | Path) -> list[tuple[str, float]]:
    """The gallery's speakers ranked by cosine similarity to `file`, most similar first."""
    try:
        gallery = json.loads(Path(gallery_path).read_text())
        names = [s["name"] for s in gallery["speakers"]]
        enrolled = np.array([s["embedding"] for s in gallery["speakers"]], dtype=np.float64)
        run_dir = gallery["model"]
    except FileNotFoundError:
        raise UsageError(f"gallery {gallery_path} does not exist; make one with `dlslab speakers enrol`") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{gallery_path} is not a speaker gallery written by `dlslab speakers enrol` ({exc})") from None
    model, spec = load_encoder(run_dir)
    query = embed_files(model, spec, [Path(file)])[0]
    if enrolled.ndim != 2 or enrolled.shape[1] != len(query):
        raise DataError(f"{gallery_path}: its embeddings do not match the encoder of {run_dir}; enrol again")
    sims = enrolled @ query / np.maximum(np.linalg.norm(enrolled, axis=1) * np.linalg.norm(query), 1e-12)
    order = np.argsort(-sims, kind="stable")
    return [(names[i], float(sims[i])) for i in order]


def cmd_enrol(args: argparse.Namespace) -> int:
    path = enrol(args.folder, args.model, args.out)
    n = len(json.loads(path.read_text())["speakers"])
    print(f"enrolled {n} speakers (one utterance each) with the encoder of {args.model}")
    print(f"gallery: {path}")
    return 0


def cmd_identify(args: argparse.Namespace) -> int:
    ranked = identify(args.file, args.gallery)
    print(f"{'rank':>4}  {'similarity':>10}  speaker")
    for k, (name, sim) in enumerate(ranked[: args.top], 1):
        print(f"{k:>4}  {sim:>10.4f}  {name}")
    return 0


def register(subparsers: Any, groups: dict[str, Any]) -> None:
    p = subparsers.add_parser("speakers", help="one-shot speaker identification with a trained siamese run")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    q = sub.add_parser("enrol", help="build a gallery from one utterance per speaker",
                       description="DIR holds one folder per speaker (SPEAKER/utterance.wav|flac); the "
                                   "first utterance of each (by name) is enrolled.")
    q.add_argument("folder", metavar="DIR")
    q.add_argument("--model", required=True, metavar="RUN", help="a finished `dlslab run siamese` folder")
    q.add_argument("--out", default="gallery.json", help="gallery file to write (default gallery.json)")
    q.set_defaults(func=cmd_enrol)
    q = sub.add_parser("identify", help="rank the enrolled speakers for a recording")
    q.add_argument("file", metavar="FILE")
    q.add_argument("--gallery", required=True, metavar="G", help="a gallery written by `speakers enrol`")
    q.add_argument("--top", type=int, default=10, help="how many speakers to print (default 10)")
    q.set_defaults(func=cmd_identify)
