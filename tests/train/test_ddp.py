"""Data-parallel training on 2 CPU processes (gloo) matches single-process training."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from dlslab.models.resnet import SmallCNN
from dlslab.train.ddp import fit_data_parallel, init_process_group
from dlslab.train.engine import fit


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(256) % 4
    x = torch.randn(256, 3, 32, 32, generator=g) * 0.5 + y.view(-1, 1, 1, 1).float() / 4  # learnable
    return x, y


def _model() -> nn.Module:
    torch.manual_seed(1)
    return SmallCNN(num_classes=4, width=4, hidden=16)  # no batch norm: no per-process statistics


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x), y)


def _train(model: nn.Module, train_fn, seen: list[int]) -> nn.Module:
    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(len(x))
        return _loss(model, x, y)

    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train_fn(model, _data(), loss, optimizer=opt, epochs=2, batch_size=32, seed=3, drop_last=True,
             progress=False, verbose=False)
    return model


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    init_process_group(torch.device("cpu"), rank, world)
    try:
        seen: list[int] = []
        model = _train(_model(), fit_data_parallel, seen)
        if rank == 0:
            torch.save({"state": {k: v.clone() for k, v in model.state_dict().items()},
                        "seen": torch.tensor(seen)}, out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_matches_single_process(tmp_path):
    out = tmp_path / "ddp.pt"
    # fork: the children get this test module as it is (spawned ones could not import it)
    mp.start_processes(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True, start_method="fork")
    saved = torch.load(out, weights_only=True)
    ddp_state = saved["state"]
    seen: list[int] = []
    single = _train(_model(), fit, seen)
    assert saved["seen"].tolist() == [16] * 16 and seen == [32] * 16  # each process saw half of every batch
    start = _model().state_dict()
    for name, value in single.state_dict().items():
        moved = (value - start[name]).abs().max()
        assert moved > 1e-3, f"{name} did not train"
        assert torch.allclose(ddp_state[name], value, atol=1e-4, rtol=1e-3), name
