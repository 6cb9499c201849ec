"""Low-rank factorization: each encoder Linear ``W (out x in)`` becomes ``B (out x r) . A (r x in)``.

The factors come from the truncated SVD ``W ~ U_r diag(S_r) Vh_r``, the best rank-r approximation in the
Frobenius norm (Eckart-Young); distillation then repairs what the truncation lost.

The rank is given either absolutely (an int, the same r for every layer) or as a fraction of each layer's full
rank ``min(in, out)`` (a float in (0, 1): the knob table's ``valid_rank``), see ``resolve_rank``.  Each layer is
then checked on its own and only replaced where its rank saves multiply-adds (``saves_flops``): with one rank for
a 384 x 384 attention projection and a 384 -> 1536 FFN layer, r = 200 factorizes the FFN layers (r < 307) but
leaves the projections dense (r >= 192).

Interaction with pruning: the SVD is taken of the pruned (effective) weight, but the two factors are dense and
carry no mask.  Where both knobs act on a layer, the rank decides its size and its zeros are gone.
"""

from __future__ import annotations

import torch
from torch import nn

from latencysolver.compression.pruning import effective_weight, encoder_linears
from latencysolver.config.knobs import RANK_RULE, valid_rank


class LowRankLinear(nn.Module):
    """``up(down(x))``: a rank-``rank`` stand-in for an ``nn.Linear(in_features, out_features)``.

    The plain constructor makes a skeleton with arbitrary initial weights, meant to receive a saved state dict;
    ``from_linear`` makes one that approximates a trained Linear.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        full_rank = min(in_features, out_features)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= full_rank:
            raise ValueError(
                f"rank must be an integer in [1, min(in_features, out_features)] = [1, {full_rank}], "
                f"but got {rank!r} for in_features={in_features}, out_features={out_features}"
            )
        self.in_features = in_features
        self.out_features = out_features
        self.rank = rank
        self.down = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)  # A: r x in
        self.up = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)  # B: out x r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, rank: int) -> LowRankLinear:
        """The rank-``rank`` truncated SVD of ``linear``'s effective weight, with its bias copied."""
        weight = effective_weight(linear)
        low_rank = cls(
            linear.in_features,
            linear.out_features,
            rank,
            bias=linear.bias is not None,
            device=weight.device,
            dtype=weight.dtype,
        )
        # SVD in float32 at least: half-precision SVD is unsupported on CPU and inaccurate anyway.
        u, s, vh = torch.linalg.svd(weight.detach().float(), full_matrices=False)
        # Split each singular value as sqrt(s) on both sides, so the two factors have comparable scale
        # (better conditioned for the gradient steps of distillation than putting all of S on one side).
        root = s[:rank].sqrt()
        low_rank.up.weight.copy_(u[:, :rank] * root)  # out x r: columns of U scaled
        low_rank.down.weight.copy_(root[:, None] * vh[:rank])  # r x in: rows of Vh scaled
        if linear.bias is not None:
            low_rank.up.bias.copy_(linear.bias)
        low_rank.train(linear.training)
        return low_rank


def saves_flops(in_features: int, out_features: int, rank: int) -> bool:
    """Whether the factorized layer needs fewer multiply-adds than the dense one.

    Per token a dense layer costs in * out multiply-adds; the factorized one costs r * in (down) plus
    r * out (up) = r * (in + out).  For a BERT-base FFN (768 -> 3072) that means r < 614; for a square
    768 x 768 attention projection r < 384.  The parameter count follows the same arithmetic.
    """
    return rank * (in_features + out_features) < in_features * out_features


def _replace_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child_name = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child_name, new)


def _check_rank_spec(rank: float) -> None:
    if not valid_rank(rank):  # the knob table's rule, so a rank the search space accepts is one this pass takes
        raise ValueError(f"rank must be {RANK_RULE}, but got {rank!r}")


def resolve_rank(rank: float, in_features: int, out_features: int) -> int:
    """The rank ``rank`` stands for in a Linear of this shape, between 1 and full rank ``min(in, out)``.

    An int is absolute, capped at full rank.  A float is a fraction of full rank, rounded, at least 1: 0.25 of
    a 768 -> 3072 layer is 192, 0.01 of a 32 x 32 one is 1.  Whether that rank is worth using is ``saves_flops``.
    """
    _check_rank_spec(rank)
    full_rank = min(in_features, out_features)
    if isinstance(rank, int):
        return min(rank, full_rank)
    return max(1, round(rank * full_rank))


def factorize_(model: nn.Module, rank: float) -> dict[str, int]:
    """Replace every encoder Linear whose rank saves FLOPs; return ``{qualified name: rank}`` of those replaced.

    ``rank`` is an absolute int or a fraction of each layer's full rank, see ``resolve_rank``; layers where the
    factorization would cost at least as many multiply-adds as the dense layer stay ``nn.Linear``.  The returned
    dict is what ``restore_low_rank_structure_`` needs to rebuild the same shape before loading saved weights.
    Linears that are already factors of a ``LowRankLinear`` are left alone.
    """
    _check_rank_spec(rank)
    factors = {
        f"{name}.{child}"
        for name, module in model.named_modules()
        if isinstance(module, LowRankLinear)
        for child in ("down", "up")
    }
    replaced: dict[str, int] = {}
    for name, linear in encoder_linears(model, "low-rank factorization"):
        layer_rank = resolve_rank(rank, linear.in_features, linear.out_features)
        if name in factors or not saves_flops(linear.in_features, linear.out_features, layer_rank):
            continue
        # A new module carries no pruning hook or mask: the pruned weight is baked into the (dense) factors.
        _replace_submodule(model, name, LowRankLinear.from_linear(linear, layer_rank))
        replaced[name] = layer_rank
    return replaced


def restore_low_rank_structure_(model: nn.Module, ranks: dict[str, int]) -> None:
    """Swap the named Linears for uninitialised ``LowRankLinear`` skeletons, so a saved state dict loads strictly."""
    for name, rank in ranks.items():
        try:
            linear = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"cannot restore low-rank layer {name!r}: the model has no such module") from None
        if not isinstance(linear, nn.Linear):
            raise ValueError(
                f"cannot restore low-rank layer {name!r}: expected an nn.Linear, but it is a {type(linear).__name__}"
            )
        skeleton = LowRankLinear(
            linear.in_features,
            linear.out_features,
            rank,
            bias=linear.bias is not None,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        skeleton.train(linear.training)
        _replace_submodule(model, name, skeleton)
