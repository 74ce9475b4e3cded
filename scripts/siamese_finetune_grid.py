"""Choose how the siamese study fine-tunes the pretrained GE2E encoder (`finetune_lr`,
`finetune_epochs`, and which losses are worth training) on validation speakers only
(issue 22; docs/studies/siamese.md, "Fine-tuning chosen on validation").

The speakers are the study's: the real corpora split per corpus and by speaker exactly as the
study splits them (same fractions and seed), and espeak-ng voices (the quick preset's sizes by
default). For each loss and learning rate the pretrained encoder is fine-tuned on the training
speakers for up to `--epochs` epochs (crops of one 160-frame window, the study's other
training settings), and after every epoch the figures of `train.pairs.validation_measure`
are printed: one-shot accuracy among all the real validation speakers (the criterion), the
AUC of their pairs, and the AUC of all validation pairs (real and synthetic). Epoch 0 is the
frozen encoder. The test speakers are never featurised, embedded or scored.

The rule, fixed before the run: the cell (loss, learning rate, epoch) with the highest
criterion gives the learning rate; `finetune_epochs` is the latest best epoch among the
losses at that learning rate (every loss keeps its own best epoch, so a larger cap only costs
time).

    OMP_NUM_THREADS=1 DLSLAB_DATA=DATA python scripts/siamese_finetune_grid.py
    python scripts/siamese_finetune_grid.py --losses triplet --lrs 3e-5 --epochs 6 --json grid.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from dlslab.audio import pretrained
from dlslab.audio.speaker_encoder import SAMPLE_RATE, EncoderSpec, build_encoder, embed_set, featurize_utterances, role_set
from dlslab.audio.speakers import real_speakers, split_speakers, synthetic_sets
from dlslab.models.siamese import GE2EEncoder
from dlslab.runs import Run
from dlslab.train.pairs import CRITERION, LOSSES, PairTraining, train_encoder, validation_measure


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES))
    p.add_argument("--lrs", nargs="+", type=float, default=[1e-5, 3e-5, 1e-4])
    p.add_argument("--epochs", type=int, default=4, help="epochs of each fine-tuning (every one measured)")
    p.add_argument("--synth-train", type=int, default=30, help="espeak-ng training voices (quick preset: 30)")
    p.add_argument("--synth-utterances", type=int, default=8, help="utterances per voice (quick preset: 8)")
    p.add_argument("--synth-val", type=int, default=10)
    p.add_argument("--synth-test", type=int, default=20, help="only so that the voice ranges match the study's")
    p.add_argument("--real-per-speaker", type=int, default=20)
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--test-fraction", type=float, default=0.4)
    p.add_argument("--max-seconds", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", type=Path, default=None, help="also write every row here")
    a = p.parse_args(argv)
    if not pretrained.installed():
        raise SystemExit(f"the pretrained encoder is {pretrained.NOT_INSTALLED}")

    real = real_speakers(a.data_dir, sample_rate=SAMPLE_RATE, max_per_speaker=a.real_per_speaker, seed=a.seed)
    roles = split_speakers(real, a.val_fraction, a.test_fraction, a.seed)
    synth = synthetic_sets(a.synth_train, a.synth_val, a.synth_test, a.synth_utterances, a.seed, SAMPLE_RATE)
    roles |= {u.speaker: role for role in ("train", "val") for u in synth[role]}
    untested = [u for u in real if roles[u.speaker] != "test"] + synth["train"] + synth["val"]
    spec = EncoderSpec.pretrained(a.max_seconds)
    data = featurize_utterances(untested, spec)
    train, val = role_set(data, roles, "train"), role_set(data, roles, "val")
    measure = validation_measure(val, a.seed)
    print(f"{len(train.names)} training speakers ({len(train)} utterances), {len(val.names)} validation speakers "
          f"({sum(c != 'synthetic' for c in val.corpus)} real)", flush=True)

    rows = [{"loss": "frozen", "lr": 0.0, "epoch": 0, "cpu_s": 0.0}
            | measure(embed_set(build_encoder(spec, pretrained.N_MELS), val.frames, val.lengths))]
    header = f"{'loss':<12} {'lr':>7} {'epoch':>5} {'oneshot':>8} {'auc real':>8} {'auc all':>8} {'cpu s':>7}"

    def show(r: dict) -> None:
        print(f"{r['loss']:<12} {r['lr']:>7.0e} {r['epoch']:>5} {r['val_oneshot']:>8.4f} {r['val_auc_real']:>8.4f} "
              f"{r['val_auc']:>8.4f} {r['cpu_s']:>7.0f}", flush=True)
    print(header)
    show(rows[0])
    for loss in a.losses:
        for lr in a.lrs:
            training = PairTraining(crop_frames=GE2EEncoder().window, lr=lr, epochs=a.epochs, patience=a.epochs)
            cpu = time.process_time()
            with tempfile.TemporaryDirectory() as tmp:
                _, history = train_encoder(training, spec, loss, train, val, Run(Path(tmp), "grid", training, quiet=True),
                                           seed=a.seed)
            per_epoch = (time.process_time() - cpu) / max(len(history.epochs), 1)
            for e in history.epochs:
                rows.append({"loss": loss, "lr": lr, "epoch": int(e["epoch"]), "cpu_s": per_epoch}
                            | {k: e[k] for k in ("val_oneshot", "val_auc_real", "val_auc", CRITERION)})
                show(rows[-1])
    tuned = [r for r in rows if r["epoch"] > 0]
    best = max(tuned, key=lambda r: r[CRITERION])
    at_lr = [r for r in tuned if r["lr"] == best["lr"]]
    cap = max(max((r for r in at_lr if r["loss"] == loss), key=lambda r: r[CRITERION])["epoch"]
              for loss in {r["loss"] for r in at_lr})
    print(f"best cell: {best['loss']} at lr {best['lr']:.0e}, epoch {best['epoch']} (one-shot {best['val_oneshot']:.4f}; "
          f"frozen {rows[0]['val_oneshot']:.4f}) -> finetune_lr={best['lr']:g} finetune_epochs={cap}")
    if a.json:
        a.json.write_text(json.dumps({"rows": rows, "finetune_lr": best["lr"], "finetune_epochs": cap}, indent=1))
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    raise SystemExit(main())
