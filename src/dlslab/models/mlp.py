"""Multilayer perceptrons: one network (`MLP`), and many same-shape networks run as one
batched network (`StackedMLP`) so a sweep trains them together.

`MLP` takes images (B, C, H, W) or flat vectors (B, D). Each hidden layer is
Linear -> activation; `layer_outputs` returns what every hidden layer computes, with the input
pixels as layer 0, for the layer-embeddings study.

`StackedMLP` holds M member MLPs as one network: each layer's weights of all members are one
(M, out, in) parameter, so a forward is one batched matmul per layer and an optimizer updates
a layer of every member at once. For narrow networks this removes the per-model launch
overhead that dominates training them one at a time. Members can be taken out as MLPs, and
the stack keeps, per member, a copy of the weights at its best validation accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from dlslab.models import register_model

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU,
    "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
}
INITS: tuple[str, ...] = ("default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
                          "orthogonal", "normal", "zeros")

# Each activation with an `out=` forward and an `out=` backward kernel: (x, out) -> out and
# (grad, x, y, out) -> out, where y = act(x). `StackedMLP` writes each member's activation
# straight into its slice of one output, so mixed activations cost no concatenation.
_NN, _ATEN = torch._C._nn, torch.ops.aten
_FORWARD_INTO = {
    "relu": lambda x, o: torch.clamp_min(x, 0, out=o),
    "leaky_relu": lambda x, o: _NN.leaky_relu(x, 0.01, out=o),
    "elu": lambda x, o: _NN.elu(x, out=o),
    "gelu": lambda x, o: _NN.gelu(x, out=o),
    "silu": lambda x, o: _NN.silu(x, out=o),
    "tanh": lambda x, o: torch.tanh(x, out=o),
    "sigmoid": lambda x, o: torch.sigmoid(x, out=o),
}
_BACKWARD_INTO = {
    "relu": lambda g, x, y, o: _ATEN.threshold_backward.grad_input(g, y, 0, grad_input=o),
    "leaky_relu": lambda g, x, y, o: _ATEN.leaky_relu_backward.grad_input(g, x, 0.01, False, grad_input=o),
    "elu": lambda g, x, y, o: _ATEN.elu_backward.grad_input(g, 1.0, 1, 1, False, x, grad_input=o),
    "gelu": lambda g, x, y, o: _ATEN.gelu_backward.grad_input(g, x, grad_input=o),
    "silu": lambda g, x, y, o: _ATEN.silu_backward.grad_input(g, x, grad_input=o),
    "tanh": lambda g, x, y, o: _ATEN.tanh_backward.grad_input(g, y, grad_input=o),
    "sigmoid": lambda g, x, y, o: _ATEN.sigmoid_backward.grad_input(g, y, grad_input=o),
}


def zero_preserving(activation: str) -> bool:
    """True when act(0) == 0. Zero-padding a network with such an activation with extra
    hidden units (zero weights in and out) changes neither its outputs nor its gradients, and
    the padded weights get zero gradients, so they stay zero under any of our optimizers."""
    return ACTIVATIONS[activation]()(torch.zeros(1)).item() == 0.0


def resize_hidden(state: dict[str, torch.Tensor], widths: Sequence[int]) -> dict[str, torch.Tensor]:
    """An `MLP` state dict with hidden layer i cut to, or zero-padded to, widths[i] units
    (the first units are kept; new weights and biases are zero)."""
    out = dict(state)
    layers = sorted({k.split(".")[1] for k in state if k.startswith("hidden.")}, key=int)
    if len(layers) != len(widths):
        raise ValueError(f"resize_hidden: {len(layers)} hidden layers, {len(widths)} widths")
    sizes = [state["hidden.0.weight"].shape[1], *widths]
    names = [f"hidden.{i}" for i in layers] + ["head"]
    for i, name in enumerate(names):
        w, b = state[f"{name}.weight"], state[f"{name}.bias"]
        rows = sizes[i + 1] if name != "head" else w.shape[0]
        new_w, new_b = w.new_zeros(rows, sizes[i]), b.new_zeros(rows)
        r, c = min(rows, w.shape[0]), min(sizes[i], w.shape[1])
        new_w[:r, :c], new_b[:r] = w[:r, :c], b[:r]
        out[f"{name}.weight"], out[f"{name}.bias"] = new_w, new_b
    return out


def _gain_name(activation: str) -> str:
    """The `nn.init.calculate_gain` name that fits an activation (ReLU-like ones use 'relu')."""
    return {"relu": "relu", "leaky_relu": "leaky_relu", "tanh": "tanh", "sigmoid": "sigmoid"}.get(activation, "relu")


@torch.no_grad()
def init_linear(layer: nn.Linear, init: str, activation: str) -> None:
    """Re-initialise `layer` by name. 'default' keeps PyTorch's (uniform +-1/sqrt(fan_in) weights
    and biases); every other scheme sets the biases to zero. 'zeros' sets the weights to zero
    too, so all hidden units of a layer stay identical (the symmetry is never broken)."""
    w = layer.weight
    if init == "default":
        return
    if init == "xavier_uniform":
        nn.init.xavier_uniform_(w)
    elif init == "xavier_normal":
        nn.init.xavier_normal_(w)
    elif init == "kaiming_uniform":
        nn.init.kaiming_uniform_(w, a=0.01 if activation == "leaky_relu" else 0.0, nonlinearity=_gain_name(activation))
    elif init == "kaiming_normal":
        nn.init.kaiming_normal_(w, a=0.01 if activation == "leaky_relu" else 0.0, nonlinearity=_gain_name(activation))
    elif init == "orthogonal":
        nn.init.orthogonal_(w)
    elif init == "normal":
        nn.init.normal_(w, 0.0, 0.01)
    elif init == "zeros":
        nn.init.zeros_(w)
    else:
        raise ValueError(f"unknown initializer {init!r}; valid: {', '.join(INITS)}")
    nn.init.zeros_(layer.bias)


class MLP(nn.Module):
    """in -> [Linear -> activation] x len(widths) -> Linear -> logits."""

    def __init__(self, in_features: int = 784, widths: Sequence[int] = (256, 256), num_classes: int = 10,
                 activation: str = "relu", init: str = "default"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        sizes = [in_features, *widths]
        self.activation, self.init = activation, init
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(sizes[-1], num_classes)
        self.act = ACTIVATIONS[activation]()
        for layer in self.linears:
            init_linear(layer, init, activation)

    @property
    def linears(self) -> list[nn.Linear]:
        return [*self.hidden, self.head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, D)
        for layer in self.hidden:
            x = self.act(layer(x))  # (B, width)
        return self.head(x)  # (B, classes)

    def resized(self, width: int) -> MLP:
        """A copy with every hidden layer cut or zero-padded to `width` units (`resize_hidden`)."""
        net = MLP(self.linears[0].in_features, [width] * len(self.hidden), self.head.out_features, self.activation)
        net.init = self.init
        net.load_state_dict(resize_hidden(self.state_dict(), [width] * len(self.hidden)))
        return net.to(self.head.weight.device)

    @torch.no_grad()
    def layer_outputs(self, x: torch.Tensor, pre_activation: bool = False) -> list[torch.Tensor]:
        """[input (B, D), hidden 1 (B, w1), ...]: post-activation outputs, or the
        pre-activations (Linear outputs) with `pre_activation`."""
        x = x.flatten(1)
        outs = [x]
        for layer in self.hidden:
            z = layer(x)
            x = self.act(z)
            outs.append(z if pre_activation else x)
        return outs


class _SegmentedActivation(torch.autograd.Function):
    """Activation segments[k] = (name, start, end) on members start..end-1 of x (M, width, B),
    each written into its slice of one output (forward) or one gradient (backward)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, segments: list[tuple[str, int, int]]) -> torch.Tensor:
        y = torch.empty_like(x)
        for name, a, b in segments:
            _FORWARD_INTO[name](x[a:b], y[a:b])
        ctx.save_for_backward(x, y)
        ctx.segments = segments
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, y = ctx.saved_tensors
        grad = grad.contiguous()
        out = torch.empty_like(grad)
        for name, a, b in ctx.segments:
            _BACKWARD_INTO[name](grad[a:b], x[a:b], y[a:b], out[a:b])
        return out, None


class StackedMLP(nn.Module):
    """M MLPs of one shape, trained as one batched network (activations may differ).

    Layer l's weights of all members live in one parameter `weights[l]` (M, out, in) and its
    biases in `biases[l]` (M, out), copied from the member MLPs it is built from: no per-step
    stacking, and an optimizer updates a whole layer of every member in one fused call (see
    `train.sweep.StackedOptimizer`). Activations are kept feature-major, (M, features, B), so
    every layer is one batched matmul and no transposes are needed.

    forward takes (B, D), one batch shared by all members -- the first layer is then a single
    (M * width, D) x (D, B) matmul -- or (M, B, D), each member its own batch; it returns
    logits (M, classes, B). `alive` marks members whose loss stayed finite; `best_weights` and
    `best_biases` hold each member's weights at its best validation accuracy (`best_val`,
    `best_epoch`); `loss_sum` accumulates each member's training loss until `take_train_loss`
    reads it. `member(i)` gives member i back as a standalone MLP.

    Members may be shallower than the stack (same width): a member of depth d skips hidden
    layers d+1... (their outputs are its inputs, unchanged), so it computes exactly its own
    network and its weights in those layers (held at zero) get no gradient.
    """

    def __init__(self, members: Sequence[MLP]):
        super().__init__()
        if not members:
            raise ValueError("StackedMLP needs at least one member")
        deepest = max(members, key=lambda m: len(m.hidden))
        def shape(m: MLP) -> tuple[int, int, set[int]]:  # input size, classes, hidden widths
            return m.linears[0].in_features, m.head.out_features, {h.out_features for h in m.hidden}

        if any(shape(m) != shape(deepest) for m in members) or len(shape(deepest)[2]) != 1:
            raise ValueError("StackedMLP members must share input size, classes and one hidden width")
        self.in_features, self.num_classes = deepest.linears[0].in_features, deepest.head.out_features
        self.widths = [layer.out_features for layer in deepest.hidden]
        self.depths = [len(m.hidden) for m in members]
        self.activations = [m.activation for m in members]
        self.inits = [m.init for m in members]

        def layer(m: MLP, i: int) -> nn.Linear | None:  # layer i of the stack in member m (None: skipped)
            return m.head if i == len(self.widths) else m.hidden[i] if i < len(m.hidden) else None

        def stacked(kind: str, i: int) -> torch.Tensor:
            like = getattr(deepest.linears[i], kind)
            return torch.stack([getattr(lin, kind) if (lin := layer(m, i)) is not None else torch.zeros_like(like)
                                for m in members]).clone()

        with torch.no_grad():
            layers = range(len(deepest.linears))
            self.weights = nn.ParameterList(stacked("weight", i) for i in layers)  # (M, out, in) each
            self.biases = nn.ParameterList(stacked("bias", i) for i in layers)  # (M, out) each
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            self.register_buffer(f"best_weight{i}", w.detach().clone())
            self.register_buffer(f"best_bias{i}", b.detach().clone())
        self.segments = self._segments()
        m = len(members)
        self.register_buffer("alive", torch.ones(m, dtype=torch.bool))
        self.register_buffer("best_val", torch.full((m,), -math.inf))
        self.register_buffer("best_epoch", torch.zeros(m, dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("loss_sum", torch.zeros(m))
        self.register_buffer("loss_count", torch.zeros(()))
        self._set_skips()

    def __len__(self) -> int:
        return len(self.activations)

    @property
    def best_weights(self) -> list[torch.Tensor]:
        return [getattr(self, f"best_weight{i}") for i in range(len(self.weights))]

    @property
    def best_biases(self) -> list[torch.Tensor]:
        return [getattr(self, f"best_bias{i}") for i in range(len(self.biases))]

    def activate(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's own activation on its slice of x (M, width, B)."""
        if len(self.segments) == 1:
            return self.segments[0][0](x)
        return _SegmentedActivation.apply(x, [(self.activations[a], a, b) for _, a, b in self.segments])

    def forward(self, x: torch.Tensor, *, best: bool = False, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Logits (M, classes, B). `dtype` (e.g. bfloat16) runs the matmuls in that type while
        the weights stay float32 (the casts are differentiable: gradients come back float32)."""
        ws, bs = (self.best_weights, self.best_biases) if best else (list(self.weights), list(self.biases))
        if dtype is not None:
            ws, bs, x = [w.to(dtype) for w in ws], [b.to(dtype) for b in bs], x.to(dtype)
        m = len(self)
        if x.dim() == 2:  # shared batch: one wide matmul for every member's first layer
            w0 = ws[0].reshape(-1, ws[0].shape[-1])  # (M * out, D)
            x = torch.addmm(bs[0].reshape(-1, 1), w0, x.flatten(1).T).view(m, -1, len(x))  # (M, out, B)
        else:  # (M, B, D): each member its own batch
            x = torch.baddbmm(bs[0].unsqueeze(-1), ws[0], x.transpose(1, 2))  # (M, out, B)
        h = self.activate(x)
        for i in range(1, len(ws) - 1):
            h_next = self.activate(torch.baddbmm(bs[i].unsqueeze(-1), ws[i], h))  # (M, width, B)
            skip = getattr(self, f"skip{i}")
            h = h_next if skip is None else torch.where(skip, h, h_next)  # shallower members pass h on
        x = torch.baddbmm(bs[-1].unsqueeze(-1), ws[-1], h)
        return x if dtype is None else x.float()  # (M, classes, B)

    def _set_skips(self) -> None:
        """Buffer `skip{i}` per hidden layer i: (M, 1, 1), True for members shallower than
        i + 1; None where every member has layer i."""
        device = self.weights[0].device
        for i in range(len(self.widths)):
            mask = torch.tensor([d <= i for d in self.depths], device=device).view(-1, 1, 1)
            self.register_buffer(f"skip{i}", mask if mask.any() else None, persistent=False)

    def member(self, i: int, *, best: bool = False) -> MLP:
        """Member i as a standalone MLP (a copy of its current or best weights)."""
        depth = self.depths[i]
        net = MLP(self.in_features, self.widths[:depth], self.num_classes, self.activations[i], "default")
        net.init = self.inits[i]
        ws, bs = (self.best_weights, self.best_biases) if best else (self.weights, self.biases)
        own = [*range(depth), len(self.widths)]  # the member's hidden layers, then the head
        with torch.no_grad():
            for layer, w, b in zip(net.linears, [ws[j] for j in own], [bs[j] for j in own]):
                layer.weight.copy_(w[i])
                layer.bias.copy_(b[i])
        return net.to(ws[0].device)

    @torch.no_grad()
    def keep_(self, index: Sequence[int]) -> StackedMLP:
        """Keep only the members at `index` (in that order), in place; parameters are replaced,
        so an optimizer over them must follow (`StackedOptimizer.keep_`)."""
        idx = torch.as_tensor(list(index), dtype=torch.long, device=self.alive.device)
        for params in (self.weights, self.biases):
            for i, p in enumerate(params):
                params[i] = nn.Parameter(p.detach()[idx].clone())
        for name, buf in list(self.named_buffers()):
            if buf.dim() > 0:  # per-member buffers; `steps` and `loss_count` are shared
                setattr(self, name, buf[idx].clone())
        self.activations = [self.activations[i] for i in index]
        self.inits = [self.inits[i] for i in index]
        self.depths = [self.depths[i] for i in index]
        self._set_skips()
        self.segments = self._segments()
        return self

    def _segments(self) -> list[tuple[nn.Module, int, int]]:
        """Runs of consecutive members with the same activation: (activation, start, end)."""
        segments: list[tuple[nn.Module, int, int]] = []
        for i, act in enumerate(self.activations):
            if segments and self.activations[segments[-1][1]] == act:
                segments[-1] = (segments[-1][0], segments[-1][1], i + 1)
            else:
                segments.append((ACTIVATIONS[act](), i, i + 1))
        return segments

    @torch.no_grad()
    def add_train_loss(self, losses: torch.Tensor, count: int) -> None:
        self.loss_sum += losses * count
        self.loss_count += count

    @torch.no_grad()
    def take_train_loss(self) -> torch.Tensor:
        """Each member's mean training loss since the last call (M,); resets the sums."""
        mean = self.loss_sum / self.loss_count.clamp_min(1)
        self.loss_sum.zero_()
        self.loss_count.zero_()
        return mean

    @torch.no_grad()
    def keep_best(self, val_acc: torch.Tensor, epoch: int) -> None:
        """Snapshot the members whose validation accuracy `val_acc` (M,) improved."""
        better = (val_acc > self.best_val) & self.alive
        if better.any():
            for src, dst in zip([*self.weights, *self.biases], [*self.best_weights, *self.best_biases]):
                dst[better] = src[better]
        self.best_epoch[better] = epoch
        self.best_val[better] = val_acc[better]


@register_model("mlp", example=lambda: torch.randn(4, 1, 28, 28))
def mlp(in_features: int = 784, widths: Sequence[int] = (256, 256), num_classes: int = 10,
        activation: str = "relu", init: str = "default") -> nn.Module:
    return MLP(in_features, widths, num_classes, activation, init)

