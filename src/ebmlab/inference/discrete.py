"""``eb.argmin_discrete``: exhaustive search over a finite candidate set."""

from __future__ import annotations

import torch
from torch import Tensor

from ebmlab._checks import check_positive_int, check_same_device, check_tensor
from ebmlab.energy import Energy, check_energy_output
from ebmlab.inference.result import Inference

__all__ = ["argmin_discrete"]


@torch.no_grad()
def argmin_discrete(
    energy: Energy,
    candidates: Tensor,
    x: Tensor | None = None,
    *,
    top_k: int = 1,
    chunk_size: int = 4096,
) -> Inference:
    r"""Return the ``top_k`` lowest-energy candidates for each input, by exhaustive search.

    The B inputs are batched and the C candidates are streamed in chunks, keeping a running
    top-k, so peak memory is O(B × (chunk_size + top_k) × |y|) whatever C is.

    Args:
        energy: the energy F.
        candidates: (C, *y_shape) the finite set of answers.
        x: conditioning inputs (B, *x_shape) or ``None`` (B = 1).
        top_k: how many answers to keep per input (at most C).
        chunk_size: candidates evaluated per chunk.

    Returns:
        An :class:`ebmlab.Inference` with K = min(top_k, C) slots, all valid and converged.

    Example:
        >>> import torch, ebmlab as eb
        >>> f = eb.FunctionEnergy(lambda y, x: ((y - x) ** 2).sum(-1))
        >>> cands = torch.arange(10.0).unsqueeze(-1)
        >>> eb.argmin_discrete(f, cands, x=torch.tensor([[2.2], [6.9]])).best
        tensor([[2.],
                [7.]])
    """
    if not isinstance(energy, Energy):
        raise TypeError(f"energy must be an ebmlab.Energy; got {type(energy).__name__}")
    check_tensor(candidates, "candidates")
    if candidates.shape[0] == 0:
        raise ValueError("candidates is empty; expected at least one candidate (C >= 1)")
    energy.check_y_shape(candidates, "candidates")
    check_positive_int(top_k, "top_k")
    check_positive_int(chunk_size, "chunk_size")
    b = 1
    if x is not None:
        check_tensor(x, "x")
        check_same_device(candidates, x, "candidates", "x")
        b = x.shape[0]
    c = candidates.shape[0]
    k = min(top_k, c)
    best_e = candidates.new_full((b, 0), float("inf"))
    best_i = torch.zeros((b, 0), dtype=torch.long, device=candidates.device)
    for start in range(0, c, chunk_size):
        chunk = candidates[start : start + chunk_size]
        n = chunk.shape[0]
        y = chunk.unsqueeze(0).expand(b, *chunk.shape).reshape(b * n, *chunk.shape[1:])
        xr = None if x is None else x.repeat_interleave(n, dim=0)  # (B, ..) -> (B*n, ..)
        e = energy.forward(y, xr)
        if start == 0:
            check_energy_output(e, b * n, f"{type(energy).__name__}.forward")
        e = e.reshape(b, n)
        idx = torch.arange(start, start + n, device=candidates.device).expand(b, n)
        all_e, all_i = torch.cat([best_e, e], 1), torch.cat([best_i, idx], 1)
        best_e, pos = torch.topk(all_e, min(k, all_e.shape[1]), dim=1, largest=False, sorted=True)
        best_i = torch.gather(all_i, 1, pos)
    y = candidates[best_i]  # (B, K, *y_shape)
    valid = torch.isfinite(best_e)
    count = valid.sum(1)
    return Inference(
        y=y,
        energy=torch.where(valid, best_e, torch.full_like(best_e, float("inf"))),
        valid=valid,
        count=count,
        converged=valid.clone(),
        num_steps=0,
        num_unconverged=torch.zeros_like(count),
        num_diverged=(~valid).sum(1),
    )
