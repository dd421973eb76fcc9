"""Are these tensors all finite? One fused reduction and one host sync, whatever their number.

Checking a model tensor by tensor costs one ``isfinite`` + ``all`` kernel pair per tensor (about
300 for two ResNet encoders and their momentum copies). Here the floating tensors are grouped by
device and dtype and reduced by ``torch._foreach_norm`` (a handful of multi-tensor kernels): the
L2 norm of a tensor holding a NaN or an infinity is not finite. A finite tensor whose norm
overflows (entries near 1e19 in float32) would read as non-finite, so a negative answer is
confirmed tensor by tensor before it is returned: the answer is exact, and the slow path runs
only when something is wrong.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import torch


def finite_flag(tensors: Iterable[torch.Tensor]) -> torch.Tensor | None:
    """A 0-d bool tensor (on the first tensor's device): True if every floating tensor is
    finite by the fused norm test; no host sync. None when there is no floating tensor."""
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = defaultdict(list)
    for t in tensors:
        if t.is_floating_point() and t.numel() > 0:
            groups[(t.device, t.dtype)].append(t.detach())
    if not groups:
        return None
    flags = []
    for (device, _), group in groups.items():
        norms = torch._foreach_norm(group)
        flags.append(torch.stack(norms).isfinite().all().to(device))
    first = flags[0].device
    return torch.stack([f.to(first) for f in flags]).all()


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """True when every floating tensor is finite (exact; one host sync when they are)."""
    tensors = list(tensors)
    flag = finite_flag(tensors)
    if flag is None or bool(flag):
        return True
    # a norm may overflow for finite entries: confirm tensor by tensor (only on this path)
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())
