"""`dlslab data speech OUT_DIR`: build a synthetic speech corpus (espeak-ng voices + noise)."""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from dlslab.errors import UsageError


def _pair(text: str) -> tuple[float, float]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}")
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers LOW,HIGH, got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise argparse.ArgumentTypeError(f"LOW and HIGH must be finite numbers, got {text!r}")
    if lo > hi:
        raise argparse.ArgumentTypeError(f"LOW must not exceed HIGH, got {text!r}")
    return lo, hi


def cmd_speech(args: argparse.Namespace) -> int:
    from dlslab.audio.corpus import CorpusSpec, build_corpus, read_pairs
    from dlslab.data.locate import locate

    noise_dir = args.noise_dir
    if noise_dir is None:
        loc = locate("noise", args.data_dir)
        noise_dir = loc.path if loc.status == "found" else None
    if args.train < 0 or args.test < 0 or args.long_seconds < 0:
        raise UsageError("--train, --test and --long-seconds must not be negative")
    if args.rate < 1000:
        raise UsageError(f"--rate {args.rate}: give a sample rate in Hz (e.g. 16000)")
    spec = CorpusSpec(n_train=args.train, n_test=args.test, seed=args.seed, sample_rate=args.rate,
                      snr_range_db=args.snr, min_seconds=args.seconds[0], max_seconds=args.seconds[1],
                      noise_types=tuple(t.strip() for t in args.noise.split(",") if t.strip()),
                      long_seconds=args.long_seconds, long_voice=args.long_voice,
                      long_noise=args.long_noise)
    t0 = time.perf_counter()
    out = build_corpus(args.out_dir, spec, noise_dir=noise_dir)
    counts = {s: len(read_pairs(out, s)) for s in ("train", "test", "long")}
    print(f"built {counts['train']} train, {counts['test']} test and {counts['long']} long pairs "
          f"in {time.perf_counter() - t0:.1f} s (real noise from {noise_dir or 'nowhere: generated only'})")
    print(f"corpus: {out}")
    return 0


def register(subparsers: Any, groups: dict[str, Any]) -> None:
    p = groups["data"].add_parser(
        "speech", help="build a synthetic speech corpus (espeak-ng voices mixed with noise)",
        description="Synthesise utterances from many espeak-ng voices and mix them with real and "
                    "generated noise. Writes train|test/{clean,noise,noisy}/NNNN.wav and pairs.csv.")
    p.add_argument("out_dir", metavar="OUT_DIR", help="new (or empty) folder to write the corpus into")
    p.add_argument("--train", type=int, default=200, help="training utterances (default 200)")
    p.add_argument("--test", type=int, default=40, help="test utterances (default 40)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--rate", type=int, default=16000, help="sample rate in Hz (default 16000)")
    p.add_argument("--snr", type=_pair, default=(0.0, 10.0), metavar="LOW,HIGH",
                   help="SNR range in dB, drawn per utterance (default 0,10)")
    p.add_argument("--seconds", type=_pair, default=(1.5, 4.0), metavar="MIN,MAX",
                   help="utterance length range in seconds (default 1.5,4)")
    p.add_argument("--noise", default="real,white,pink,brown,babble",
                   help="noise types, comma-separated: real (any recording), a recording's name, "
                        "white, pink, brown, babble (default: all)")
    p.add_argument("--noise-dir", help="folder of real noise recordings (wav/flac); default: the "
                   "'noise' dataset under --data-dir or $DLSLAB_DATA, if found")
    p.add_argument("--data-dir", help="data root to look for the 'noise' dataset in first")
    p.add_argument("--long-seconds", type=float, default=0.0,
                   help="also write one long paired recording of one voice, this many seconds")
    p.add_argument("--long-voice", default="en-us+m3", help="voice of the long recording (default en-us+m3)")
    p.add_argument("--long-noise", default="babble",
                   help="noise of the long recording: a generated type or a recording's name")
    p.set_defaults(func=cmd_speech)
