"""Choose how the siamese study joins its encoders (issue 22; docs/studies/siamese.md,
"2026-12-06: fusion chosen on validation") on validation speakers only.

`train` trains the full preset's encoders on its training speakers exactly as the study does
(from scratch: each loss, `ensemble` members; fine-tuned from the pretrained GE2E encoder:
each loss, the given seeds and epoch cap) and stores, after every fine-tuning epoch and for
every finished encoder, the unit embeddings of the training utterances (the s-norm cohort) and
of the validation utterances, with the encoder's weights. `score` then measures, from those
files alone, one-shot identification among the 7 real validation speakers (the study's
criterion, 20 enrolments; cosine and s-norm) for single encoders, ensembles over seeds and
losses, and weighted joins of the GE2E side with the from-scratch ensemble. `from-run` stores
the same embeddings for a finished full-preset run's chosen encoders, and `weights` scores the
join of each folder's fine-tuned and from-scratch encoders at each weight with criteria that do
not saturate (AUC, EER, calibrated Cllr of the real validation pairs) and three scorings
(cosine, s-norm of the joined embedding, s-norm part by part), with their mean over the
folders. The test speakers are never featurised, embedded or scored.

    OMP_NUM_THREADS=1 DLSLAB_DATA=DATA python scripts/siamese_fusion_grid.py train OUT --jobs scratch:contrastive ft:am-softmax:0:6
    OMP_NUM_THREADS=1 python scripts/siamese_fusion_grid.py score OUT
    OMP_NUM_THREADS=1 DLSLAB_DATA=DATA python scripts/siamese_fusion_grid.py from-run RUN_EMB --run RUN
    OMP_NUM_THREADS=1 python scripts/siamese_fusion_grid.py weights OUT RUN_EMB --weights 0 0.1 0.2 0.3 0.4 0.5
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dlslab import config
from dlslab.audio import pretrained
from dlslab.audio.speaker_encoder import (EncoderSpec, FusedCohortNorm, build_encoder, embed_set, featurize_utterances,
                                          load_encoder, role_set)
from dlslab.metrics.verification import (CohortNorm, equal_error_rate, one_shot_identification, roc_auc,
                                         verification_pairs)
from dlslab.models.siamese import GE2EEncoder
from dlslab.runs import Run
from dlslab.studies.siamese import PRESETS, Config, load_utterances
from dlslab.train.engine import fit, seed_everything
from dlslab.train.optim import make_optimizer
from dlslab.train.pairs import CRITERION, VAL_ROUNDS, PairTraining, calibrated_cllr, pair_loss, validation_measure


def _sets(cfg: Config, data_dir: str | None) -> dict[str, dict[str, object]]:
    utterances, roles = load_utterances(cfg, data_dir)
    untested = [u for u in utterances if roles[u.speaker] != "test"]
    out = {}
    for source, spec in (("tdnn", EncoderSpec.of(cfg)), ("ge2e", EncoderSpec.pretrained(cfg.max_seconds))):
        data = featurize_utterances(untested, spec)
        out[source] = {"spec": spec, "train": role_set(data, roles, "train"), "val": role_set(data, roles, "val")}
    return out


def _saved_sets(a: argparse.Namespace) -> tuple[Config, dict]:
    """The full preset's config and speaker sets; each front end's speaker labels saved in `a.out`."""
    cfg = config.resolve(Config, PRESETS, "full", {})
    sets = _sets(cfg, a.data_dir)
    a.out.mkdir(parents=True, exist_ok=True)
    for s in ("tdnn", "ge2e"):
        tr, va = sets[s]["train"], sets[s]["val"]
        np.savez(a.out / f"sets-{s}.npz", train_speaker=tr.speaker.numpy(), val_speaker=va.speaker.numpy(),
                 val_real=va.corpus_of_utterance() != "synthetic", val_corpus=va.corpus_of_utterance())
    return cfg, sets


def train(a: argparse.Namespace) -> None:
    cfg, sets = _saved_sets(a)
    for job in a.jobs:
        kind, loss, *rest = job.split(":")
        source = "tdnn" if kind == "scratch" else "ge2e"
        spec, tr, va = sets[source]["spec"], sets[source]["train"], sets[source]["val"]
        training = PairTraining.of(cfg)
        if kind == "ft":
            seed, cap = int(rest[0]), int(rest[1])
            training = replace(training, lr=cfg.finetune_lr, epochs=cap, patience=cap, crop_frames=GE2EEncoder().window)
            members = [seed]
        else:
            members = list(range(cfg.ensemble))
        for member in members:
            name = f"{kind}-{loss}-{member}"
            if (a.out / f"{name}.npz").exists():
                continue
            start, cpu = time.time(), time.process_time()
            seed_everything(cfg.seed + member)
            model = build_encoder(spec, tr.frames.shape[1], len(tr.names) if loss == "am-softmax" else 0)
            measure = validation_measure(va, cfg.seed)
            per_epoch: dict[str, np.ndarray] = {}

            def evaluate(m, per_epoch=per_epoch, measure=measure, tr=tr, va=va, kind=kind, name=name):
                v = embed_set(m, va.frames, va.lengths)
                if kind == "ft":  # every epoch's embeddings and weights: any cap up to this one can be scored
                    e = len(per_epoch) // 2 + 1
                    per_epoch[f"val_{e}"], per_epoch[f"train_{e}"] = v, embed_set(m, tr.frames, tr.lengths)
                    torch.save({k: t for k, t in m.state_dict().items() if k != "centres"}, a.out / f"{name}-e{e}.pt")
                return measure(v)

            opt = make_optimizer(training.optimizer, model.parameters(), training.lr)
            history = fit(model, (torch.arange(len(tr)),), pair_loss(training, loss, tr, torch.device("cpu")),
                          optimizer=opt, epochs=training.epochs, batch_size=training.batch_size, evaluate=evaluate,
                          monitor=CRITERION, patience=training.patience, restore_best=True,
                          grad_clip=training.grad_clip, seed=cfg.seed + member, progress=False, verbose=False,
                          drop_last=True)
            model.eval()
            np.savez(a.out / f"{name}.npz", val=embed_set(model, va.frames, va.lengths),
                     train=embed_set(model, tr.frames, tr.lengths), best_epoch=history.best_epoch,
                     val_oneshot=np.array(history.series("val_oneshot")), **per_epoch)
            if kind == "scratch":
                torch.save(model.state_dict(), a.out / f"{name}.pt")
            print(f"{name}: best epoch {history.best_epoch}, val one-shot per epoch "
                  + " ".join(f"{x:.3f}" for x in history.series("val_oneshot"))
                  + f"  ({time.time() - start:.0f} s wall, {time.process_time() - cpu:.0f} s CPU)", flush=True)


# --- scoring on the validation speakers ------------------------------------------------------------


def _unit(e: np.ndarray) -> np.ndarray:
    return e / np.linalg.norm(e, axis=1, keepdims=True).clip(1e-12)


def join(parts: list[tuple[dict[str, np.ndarray], float]]) -> dict[str, np.ndarray]:
    """Weighted join of unit embeddings: sqrt(w_k) * e_k side by side (weights summing to 1), so
    the cosine of two joined embeddings is the weighted mean of the parts' cosines."""
    total = sum(w for _, w in parts)
    return {k: np.concatenate([np.sqrt(w / total) * p[k] for p, w in parts if w > 0], axis=1) for k in ("train", "val")}


def val_figures(e: dict[str, np.ndarray], sets: dict[str, np.ndarray], seed: int = 0,
                top_k: tuple[int, ...] = ()) -> dict[str, float]:
    real, spk = sets["val_real"], sets["val_speaker"]
    out = {}
    for scoring, norm in [("cosine", None), ("s-norm", CohortNorm(e["train"]))] + [
            (f"s-norm top {k}", CohortNorm(e["train"], k)) for k in top_k]:
        out[scoring] = one_shot_identification(e["val"][real], spk[real], None, rounds=VAL_ROUNDS, seed=seed,
                                               norm=norm).accuracy
        arab = sets["val_corpus"] == "arabic"
        out[f"{scoring} arabic"] = one_shot_identification(e["val"][arab], spk[arab], None, rounds=VAL_ROUNDS,
                                                           seed=seed, norm=norm).accuracy
    return out


def score(a: argparse.Namespace) -> None:
    sets = sets_of(a.out)
    enc = {p.stem: dict(np.load(p)) for p in sorted(a.out.glob("*-*-*.npz")) if not p.stem.startswith("sets")}
    rows: list[tuple[str, dict[str, float]]] = []

    def show(label: str, e: dict[str, np.ndarray], source: str = "ge2e") -> None:
        f = val_figures(e, sets[source], top_k=tuple(a.top_k))
        rows.append((label, f))
        print(f"{label:<60} " + " ".join(f"{v:.4f}" for v in f.values()), flush=True)

    print(f"{'encoder (validation: 7 real speakers; arabic: 4)':<60} cosine arabic s-norm arabic"
          + "".join(f" top{k} arabic" for k in a.top_k))
    frozen = {k: np.load(a.out / "frozen.npz")[k] for k in ("train", "val")} if (a.out / "frozen.npz").exists() else None
    if frozen is not None:
        show("pretrained, frozen", frozen)
    ft = {k: v for k, v in enc.items() if k.startswith("ft-")}
    for name, e in ft.items():
        for ep in range(1, 99):
            if f"val_{ep}" in e:
                show(f"{name} epoch {ep}", {"train": e[f"train_{ep}"], "val": e[f"val_{ep}"]})
        show(f"{name} best (epoch {int(e['best_epoch'])})", e)
    scratch: dict[str, list[dict]] = {}
    for name, e in enc.items():
        if name.startswith("scratch-"):
            scratch.setdefault(name.rsplit("-", 1)[0], []).append(e)
    ens = {loss: join([(e, 1.0) for e in es]) for loss, es in scratch.items()}
    for loss, e in ens.items():
        show(f"{loss} ({len(scratch[loss])} members)", e, "tdnn")
    if len(ens) > 1:
        show("scratch, all losses", join([(e, 1.0) for e in ens.values()]), "tdnn")
    # GE2E side: the fine-tuned encoders joined over seeds / losses, and with the frozen one
    sides = {name: e for name, e in ft.items()}
    by_loss: dict[str, list[dict]] = {}
    for name, e in ft.items():
        by_loss.setdefault(name.split("-")[1] if not name.startswith("ft-am") else "am-softmax", []).append(e)
    for loss, es in by_loss.items():
        if len(es) > 1:
            sides[f"ft {loss} x{len(es)}"] = join([(e, 1.0) for e in es])
            show(f"ft {loss} x{len(es)} seeds", sides[f"ft {loss} x{len(es)}"])
    if len(by_loss) > 1:
        sides["ft all"] = join([(e, 1.0) for es in by_loss.values() for e in es])
        show("ft all losses and seeds", sides["ft all"])
    if frozen is not None:
        for name in list(sides):
            show(f"{name} + frozen (1:1)", join([(sides[name], 1.0), (frozen, 1.0)]))
        sides["frozen"] = frozen
    for (side, e), (loss, s) in itertools.product(sides.items(), ens.items()):
        for w in a.weights:
            show(f"{side} + scratch {loss}, w_scratch {w}", join([(e, 1 - w), (s, w)]))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


def frozen(a: argparse.Namespace) -> None:
    """The frozen encoder's embeddings (train, val), for `score`."""
    cfg = config.resolve(Config, PRESETS, "full", {})
    ge2e = _sets(cfg, a.data_dir)["ge2e"]
    model = build_encoder(ge2e["spec"], pretrained.N_MELS).eval()
    for window, step in a.windows:
        model.encoder.window, model.encoder.step = window, step
        embedded = {k: embed_set(model, ge2e[k].frames, ge2e[k].lengths) for k in ("train", "val")}
        np.savez(a.out / ("frozen.npz" if (window, step) == (160, 77) else f"frozen-{window}-{step}.npz"), **embedded)
        print(f"window {window}, step {step}:", val_figures(embedded, sets_of(a.out)["ge2e"]), flush=True)


def from_run(a: argparse.Namespace) -> None:
    """A finished full-preset run's chosen encoders (fine-tuned and from scratch, as
    `load_encoder` reads them back), embedded like `train` stores them: another realisation
    of the encoders to score on the validation speakers (the run's test figures are not read)."""
    _, sets = _saved_sets(a)
    losses = json.loads((a.run / "metrics.json").read_text())["selected_loss_of"]
    for init, kind, source in (("pretrained", "ft", "ge2e"), ("scratch", "scratch", "tdnn")):
        model, _ = load_encoder(a.run, init)
        tr, va = sets[source]["train"], sets[source]["val"]
        np.savez(a.out / f"{kind}-{losses[init]}-run.npz", val=embed_set(model, va.frames, va.lengths),
                 train=embed_set(model, tr.frames, tr.lengths), best_epoch=-1)
        print(f"{kind}-{losses[init]}: embedded", flush=True)


WEIGHT_CRITERIA = ("1-shot cos", "1-shot s-norm", "1-shot fused", "arabic s-norm", "arabic fused", "AUC cos",
                   "AUC s-norm", "AUC fused", "EER s-norm", "EER fused", "Cllr s-norm", "Cllr fused")


def weight_figures(side: dict[str, np.ndarray], scratch: dict[str, np.ndarray], w: float,
                   sets: dict[str, np.ndarray], seed: int = 0) -> dict[str, float]:
    """Validation figures of the join (1 - w) side + w scratch: one-shot 7-way accuracy among
    the real validation speakers (cosine, s-norm of the joined embedding, and each part
    s-normed before the fusion), within Arabic (s-norm), ROC-AUC and EER of the real
    validation pairs, and their Cllr after an affine calibration (`calibrated_cllr`: a figure
    that does not saturate at 100%)."""
    e = join([(side, 1 - w), (scratch, w)]) if 0 < w < 1 else (side if w == 0 else scratch)
    dims = [side["val"].shape[1], scratch["val"].shape[1]] if 0 < w < 1 else [e["val"].shape[1]]
    real, spk = sets["val_real"], sets["val_speaker"]
    v, s = e["val"][real], spk[real]
    snorm = CohortNorm(e["train"])
    cuts = np.cumsum([0] + dims)
    fused = FusedCohortNorm([CohortNorm(e["train"][:, a:b]) for a, b in zip(cuts[:-1], cuts[1:])], dims,
                            [1 - w, w] if 0 < w < 1 else [1.0])
    i, j, same = verification_pairs(s, seed=seed)
    out = {}
    for name, norm in (("cos", None), ("s-norm", snorm), ("fused", fused)):
        out[f"1-shot {name}"] = one_shot_identification(v, s, None, rounds=VAL_ROUNDS, seed=seed, norm=norm).accuracy
        scores = (v[i] * v[j]).sum(1) if norm is None else norm.pairs(v[i], v[j])
        out[f"AUC {name}"] = roc_auc(scores, same)
        out[f"EER {name}"] = equal_error_rate(scores, same)[0]
        out[f"Cllr {name}"] = calibrated_cllr(scores, same)
    arab = sets["val_corpus"] == "arabic"
    for name, norm in (("s-norm", snorm), ("fused", fused)):
        out[f"arabic {name}"] = one_shot_identification(e["val"][arab], spk[arab], None, rounds=VAL_ROUNDS, seed=seed,
                                                        norm=norm).accuracy
    return {k: out[k] for k in WEIGHT_CRITERIA}


def weights(a: argparse.Namespace) -> None:
    """The join's validation figures at each weight, for each folder's fine-tuned (GE2E side)
    and from-scratch encoders, and their mean over the folders (realisations of the training)."""
    curves: dict[str, np.ndarray] = {}
    for out in a.dirs:
        sets = sets_of(out)["ge2e"]
        enc = {p.stem: dict(np.load(p)) for p in sorted(out.glob("*-*-*.npz"))}
        scratch = join([(e, 1.0) for n, e in enc.items() if n.startswith(f"scratch-{a.scratch}-")])
        for name in sorted(n for n in enc if n.startswith(f"ft-{a.side}-")):
            label = f"{out.name}/{name}"
            curves[label] = np.array([list(weight_figures(enc[name], scratch, w, sets).values()) for w in a.weights])
            print(f"\n{label} + scratch {a.scratch}\n{'w':>5} " + " ".join(f"{c:>13}" for c in WEIGHT_CRITERIA))
            for w, row in zip(a.weights, curves[label]):
                print(f"{w:>5.2f} " + " ".join(f"{x:>13.4f}" for x in row), flush=True)
    mean = np.mean(list(curves.values()), axis=0)
    print(f"\nmean over {len(curves)}\n{'w':>5} " + " ".join(f"{c:>13}" for c in WEIGHT_CRITERIA))
    for w, row in zip(a.weights, mean):
        print(f"{w:>5.2f} " + " ".join(f"{x:>13.4f}" for x in row))
    if a.json:
        a.json.write_text(json.dumps({"weights": a.weights, "criteria": WEIGHT_CRITERIA,
                                      "curves": {k: v.tolist() for k, v in curves.items()}}, indent=1))


def sets_of(out: Path) -> dict[str, dict[str, np.ndarray]]:
    return {s: dict(np.load(out / f"sets-{s}.npz")) for s in ("tdnn", "ge2e")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("phase", choices=["train", "frozen", "score", "from-run", "weights"])
    p.add_argument("out", type=Path, help="the folder of embeddings (weights: the first of them)")
    p.add_argument("dirs", type=Path, nargs="*", help="weights: more folders of embeddings")
    p.add_argument("--run", type=Path, help="from-run: a finished full-preset run folder")
    p.add_argument("--side", default="am-softmax", help="weights: the fine-tuned loss joined")
    p.add_argument("--scratch", default="contrastive", help="weights: the from-scratch loss joined")
    p.add_argument("--jobs", nargs="+", default=[], help="scratch:LOSS (the ensemble) or ft:LOSS:SEED:EPOCHS")
    p.add_argument("--weights", nargs="+", type=float, default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    p.add_argument("--windows", nargs="+", default=[(160, 77)], type=lambda v: tuple(map(int, v.split(":"))),
                   help="frozen: WINDOW:STEP of the GE2E windows (160:77 is the package's)")
    p.add_argument("--top-k", nargs="*", type=int, default=[], help="score: also s-norm with these cohort sizes")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    a.dirs = [a.out, *a.dirs]
    {"train": train, "frozen": frozen, "score": score, "from-run": from_run, "weights": weights}[a.phase](a)
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    raise SystemExit(main())
