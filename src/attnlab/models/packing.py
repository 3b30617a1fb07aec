"""The real tokens of a padded batch, packed: position-wise layers skip the padding.

A batch of sentence pairs is (B, T) with padding after each sequence, and every position-wise
layer (the Q/K/V and output projections, the feed-forward, LayerNorm) computes its padded
positions too, for outputs nothing reads. Packed, those layers run on the N real tokens as one
(N, D) matrix; attention scatters them back to (B, T) and attends within each sequence under
the padding mask (HF's ``unpad_input``/``pad_input`` around flash attention, with torch's
attention kernels on (B, T)). The real tokens' outputs and every gradient are the padded
path's; padded positions come out as zeros.
"""

from __future__ import annotations

from torch import Tensor


class Packing:
    """Where the real tokens of a (B, T) batch are, to pack (B, T, ...) rows into (N, ...) and
    back."""

    def __init__(self, mask: Tensor) -> None:
        """mask (B, T), True on real tokens."""
        self.mask = mask.bool()
        self.batch, self.length = mask.shape
        self.index = self.mask.flatten().nonzero().squeeze(1)

    def pack(self, x: Tensor) -> Tensor:
        """(B, T, ...) -> (N, ...): the real tokens' rows, in row-major order."""
        return x.flatten(0, 1).index_select(0, self.index)

    def unpack(self, x: Tensor) -> Tensor:
        """(N, ...) -> (B, T, ...), zeros at the padding."""
        padded = x.new_zeros(self.batch * self.length, *x.shape[1:])
        return padded.index_copy(0, self.index, x).view(self.batch, self.length, *x.shape[1:])
