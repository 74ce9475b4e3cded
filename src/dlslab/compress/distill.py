"""Knowledge distillation (Hinton et al., 2015): a compressed student is retrained towards the
soft outputs of the uncompressed teacher as well as the labels.

The teacher's softened distribution carries how it ranks the wrong classes, which a one-hot
label does not; matching it helps a quantised or pruned student recover its teacher's
accuracy. The KL term is scaled by T^2 so its gradients keep their size as T changes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      alpha: float, temperature: float) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy(student, targets),
    where x_T = softmax(logits / T). Logits are (B, classes), targets (B,)."""
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
        raise ValueError(f"distillation needs 0 <= alpha <= 1 and temperature > 0; got {alpha}, {temperature}")
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.log_softmax(teacher_logits.detach() / temperature, dim=1),
                    reduction="batchmean", log_target=True)
    hard = F.cross_entropy(student_logits, targets)
    return alpha * temperature**2 * soft + (1.0 - alpha) * hard


def distillation_objective(teacher: nn.Module, alpha: float, temperature: float
                           ) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]:
    """A `fit` loss (model, x, y) -> loss that distils `teacher` into the model. The teacher is
    copied and frozen in evaluation mode, so the caller's model is left as it was."""
    teacher = copy.deepcopy(teacher).eval().requires_grad_(False)

    def loss(student: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = teacher(x)  # (B, classes)
        return distillation_loss(student(x), teacher_logits, y, alpha, temperature)

    return loss
