"""CPU kernel choices for inference: what PyTorch's defaults get wrong on our CPUs (CPU only).

1. Linear layers through oneDNN with pre-packed weights.

PyTorch's CPU `linear` goes to the BLAS it was built with (MKL for the official wheels). On
the AMD EPYC machines we develop on, MKL takes a slow path for small row counts: one T3 decode
step (one row per stream) costs as much at 2 rows as two steps at 1 row, so batching streams
gained little. oneDNN, also inside every x86 PyTorch build, with its weights reordered once at
load into its blocked layout, measured 2-4x faster on the same shapes (24 T3 MLP matrices:
20 ms -> 7 ms at 1 row, 39 -> 9 ms at 4 rows, 356 -> 135 ms at 282 rows) and stays flat from 1
to 8 rows. Results equal `F.linear` up to float summation order (relative ~1e-6).

2. Transposed 1-D convolutions (HiFT's upsampling) through PyTorch's native kernel. oneDNN
builds (JIT-compiles) a primitive for every new input length, 70-310 ms per layer, and a
streamed chunk's length is almost always new: that was most of HiFT's time per chunk. The
native kernel takes 1-4 ms at any length, with the same results up to summation order.

`prepare_for_cpu` makes both swaps in a module (the loader packs linear weights straight from
the checkpoint's tensors). Inference only: the packed weight is an opaque oneDNN tensor with no
autograd. Float32 only: layers in another dtype (`--dtype`, loading.py) are left as they are.
Never on CUDA (GPU paths keep their own kernels). The two oneDNN entry points are the
ones PyTorch's own compiler uses on the CPU; they are private, hence `packing_available` checks
for them (torch is pinned in the lock file) and the loader falls back to upstream's modules.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

PACKING_THREADS = 2

# oneDNN picks its blocked layout for an expected row count; decode steps have a few rows.
PACKING_ROWS_HINT = 4


class PackedLinear(nn.Module):
    """`y = x W^T + b` with W held in oneDNN's packed layout."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        """`weight`: (out_features, in_features), as `nn.Linear` holds it."""
        super().__init__()
        self.in_features = weight.shape[1]
        self.out_features = weight.shape[0]
        packed = torch.ops.mkldnn._reorder_linear_weight(
            weight.detach().contiguous(), PACKING_ROWS_HINT
        )
        # The packed tensor keeps shape, dtype and device, which is all callers read from a
        # linear's `weight` (e.g. upstream T3's `device` property); its values are opaque.
        self.register_buffer("weight", packed, persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().clone(), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(
            x.contiguous(), self.weight, self.bias, "none", [], ""
        )
        return out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, oneDNN"


def packing_available(device: torch.device) -> bool:
    return (
        device.type == "cpu"
        and torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    )


def prepare_for_cpu(module: nn.Module, state: dict[str, torch.Tensor] | None = None) -> int:
    """Swap the float32 linear and transposed-convolution layers inside `module` for the
    kernels above; returns how many layers were replaced.

    With `state` (the checkpoint's tensors, about to be loaded into `module`), linear weights
    are packed straight from it and their entries removed: loading then skips copying them
    into parameters that would be thrown away.
    """
    return pack_linears(module, state) + use_native_transposed_convs(module)


def pack_linears(module: nn.Module, state: dict[str, torch.Tensor] | None = None) -> int:
    from transformers.pytorch_utils import Conv1D

    # Reordering reads every weight once (from the memory-mapped checkpoint) and releases the
    # GIL: two threads keep both cores busy while loading.
    return _swap_layers(
        module, lambda child, path: _packed(child, Conv1D, path, state), PACKING_THREADS
    )


def use_native_transposed_convs(module: nn.Module) -> int:
    return _swap_layers(module, lambda child, _: _native_transposed(child))


def _swap_layers(
    module: nn.Module,
    replacement: Callable[[nn.Module, str], nn.Module | None],
    threads: int = 1,
) -> int:
    """Put `replacement(child, path)` in place of every layer inside `module` it is given for
    (path: the layer's state-dict prefix); returns how many layers were replaced."""
    places = [
        (parent, name, child, f"{prefix}.{name}" if prefix else name)
        for prefix, parent in list(module.named_modules())
        for name, child in list(parent.named_children())
    ]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        swaps = list(pool.map(lambda place: replacement(place[2], place[3]), places))
    replaced = 0
    for (parent, name, _, _), swap in zip(places, swaps, strict=True):
        if swap is not None:
            setattr(parent, name, swap)
            replaced += 1
    return replaced


class NativeConvTranspose1d(nn.Module):
    """A `ConvTranspose1d` computed by PyTorch's native kernel instead of oneDNN."""

    def __init__(self, conv: nn.ConvTranspose1d):
        super().__init__()
        # Weight norm (HiFT's) is folded: at inference the weight is a constant.
        weight = conv.weight.detach().clone()
        self.register_buffer("weight", weight.unsqueeze(2), persistent=False)
        bias = conv.bias
        self.register_buffer(
            "bias", None if bias is None else bias.detach().clone(), persistent=False
        )
        self.kernel_size = (1, conv.kernel_size[0])
        self.stride = (1, conv.stride[0])
        self.padding = (0, _int(conv.padding))
        self.output_padding = (0, conv.output_padding[0])
        self.dilation = (1, conv.dilation[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch._C._nn.slow_conv_transpose2d(  # type: ignore[attr-defined]
            x.unsqueeze(2),
            self.weight,
            self.kernel_size,
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.dilation,
        )
        return out.squeeze(2)


def _native_transposed(child: nn.Module) -> NativeConvTranspose1d | None:
    if not isinstance(child, nn.ConvTranspose1d) or child.groups != 1:
        return None
    if child.weight.dtype != torch.float32 or child.weight.device.type != "cpu":
        return None
    return NativeConvTranspose1d(child)


def _int(padding: object) -> int:
    if isinstance(padding, tuple):
        return int(padding[0])
    if isinstance(padding, int):
        return padding
    raise ValueError(f"unsupported padding {padding!r}")


def _packed(
    child: nn.Module, conv1d_type: type, path: str, state: dict[str, torch.Tensor] | None
) -> PackedLinear | None:
    if type(child) is conv1d_type:  # GPT-2's transposed linear: weight (in, out)
        transposed = True
    elif isinstance(child, nn.Linear) and _plain_linear(child):
        transposed = False
    else:
        return None
    if child.weight.dtype != torch.float32:
        # A layer that computes in another dtype (T3 and the flow under --dtype bfloat16 or
        # float16: loading.py) keeps PyTorch's kernel: packing is float32 only here.
        return None
    weight = child.weight if state is None else state.get(f"{path}.weight")
    if weight is None or weight.dtype != torch.float32 or weight.device.type != "cpu":
        return None  # left as it is (and, from a checkpoint, loaded as usual)
    bias: object = child.bias
    if state is not None:
        # Taken out of the checkpoint's tensors: the packed copy replaces the parameters.
        del state[f"{path}.weight"]
        bias = state.pop(f"{path}.bias", None)
    return PackedLinear(
        weight.t() if transposed else weight, bias if isinstance(bias, torch.Tensor) else None
    )


def _plain_linear(child: nn.Linear) -> bool:
    # diffusers' LoRACompatibleLinear is a Linear with an optional LoRA branch: only pack it
    # when no LoRA is attached, so its forward is exactly the linear map.
    return getattr(child, "lora_layer", None) is None
