"""Cross-entropy through the vocabulary projection, chunk by chunk, without the full logits.

A language model's last step, ``F.cross_entropy(hidden @ W.T, labels)``, materialises the
(N, V) logits, their float32 copy, the log-softmax and its gradient: four N x V tensors (for
N = 4096 positions and V = 8192, 134 MB each in float32), whose memory traffic costs more than
the softmax arithmetic. ``linear_cross_entropy`` computes the same loss and gradients from
row chunks: each chunk's logits are made, turned into the loss and straight into the gradient
(softmax - one-hot), multiplied back into the hidden states' and the weight's gradients, and
dropped. Only (chunk, V) is ever alive, beside one transposed copy of W. (The idea of
Liger-Kernel's fused linear cross-entropy and Apple's Cut Cross-Entropy, here in plain torch.)

The gradients are computed in the forward pass when autograd will want them, so the backward
pass only scales them by the incoming gradient. The logits of a chunk are made in the autocast
dtype (bf16 matmuls) when autocast is on and reduced in float32, as ``F.cross_entropy`` on
autocast logits would be.
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK_ROWS = 256  # rows of logits alive at a time (256 x 30522 float32: 31 MB); fastest on CPU


def _compute_dtype(tensor: Tensor) -> torch.dtype:
    device = tensor.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else tensor.dtype


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        labels: Tensor,
        ignore_index: int,
        label_smoothing: float,
        chunk_rows: int,
        backward: bool,
    ) -> Tensor:
        dtype = _compute_dtype(hidden)
        reduced = torch.promote_types(dtype, torch.float32)  # softmax and sums: >= float32
        h, w = hidden.to(dtype), weight.to(dtype)
        w_t = w.T.contiguous()  # (E, V): chunk logits by a plain matmul, ~20% faster on CPU
        b = None if bias is None else bias.to(dtype)
        valid = labels != ignore_index
        count = valid.sum().clamp(min=1)
        grad_h = torch.empty_like(h) if backward else None
        grad_w = torch.zeros(weight.shape, dtype=reduced, device=weight.device)
        grad_b = None if bias is None else torch.zeros(bias.shape, dtype=reduced, device=b.device)
        total = torch.zeros((), dtype=reduced, device=hidden.device)
        total_nll = torch.zeros((), dtype=reduced, device=hidden.device)
        for start in range(0, h.size(0), chunk_rows):
            rows = slice(start, start + chunk_rows)
            keep, targets = valid[rows], labels[rows].clamp(min=0)
            logits = h[rows] @ w_t if b is None else torch.addmm(b, h[rows], w_t)
            log_p = torch.log_softmax(logits.to(reduced), dim=-1)  # one fused pass over the chunk
            del logits
            nll = -log_p.gather(1, targets[:, None]).squeeze(1)  # -log p(target)
            total_nll += (nll * keep).sum()
            if label_smoothing:  # (1 - eps) of it, plus eps of the mean -log p over the vocabulary
                nll = (1 - label_smoothing) * nll - label_smoothing * log_p.mean(-1)
            total += (nll * keep).sum()
            if backward:  # d(mean loss)/d logits = (softmax - smoothed one-hot) / count
                grad = log_p.exp_()
                grad[torch.arange(len(targets), device=grad.device), targets] -= 1 - label_smoothing
                if label_smoothing:
                    grad -= label_smoothing / grad.size(-1)
                grad *= (keep.to(reduced) / count)[:, None]
                if grad_b is not None:
                    grad_b += grad.sum(0)
                grad = grad.to(dtype)
                grad_h[rows] = grad @ w
                grad_w += grad.T @ h[rows]
        if backward:
            ctx.save_for_backward(grad_h, grad_w, grad_b)
            ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        nll = total_nll / count
        ctx.mark_non_differentiable(nll)
        return total / count, nll

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_loss: Tensor, _: Tensor) -> tuple:
        grads = [
            None if grad is None else (grad * grad_loss).to(dtype)
            for grad, dtype in zip(ctx.saved_tensors, ctx.dtypes, strict=True)
        ]
        return (*grads, None, None, None, None, None)


def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    ignore_index: int = -100,
    bias: Tensor | None = None,
    label_smoothing: float = 0.0,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[Tensor, Tensor]:
    """``F.cross_entropy(F.linear(hidden, weight, bias), labels, ignore_index=...,
    label_smoothing=...)`` (mean over the kept labels) for hidden (N, D), weight (V, D), bias
    (V,), labels (N,), computed ``chunk_rows`` at a time; and beside it the mean -log p(label)
    without smoothing, which perplexity needs (the loss itself when ``label_smoothing`` is 0)."""
    needs = [hidden, weight] if bias is None else [hidden, weight, bias]
    backward = torch.is_grad_enabled() and any(t.requires_grad for t in needs)
    return _LinearCrossEntropy.apply(
        hidden, weight, bias, labels, ignore_index, label_smoothing, chunk_rows, backward
    )
