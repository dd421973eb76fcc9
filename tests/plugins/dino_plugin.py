"""A DINO-style plug-in (Caron et al., 2021) of the momentum template: two global and k
local crops; a momentum teacher sees the global crops, the student every crop; lightly's
DINO loss with its centre (a buffer, so it lives in the checkpoint)."""

from dataclasses import dataclass

from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from torch import nn

from solo_rgbd.augment.paired import PairedAugment
from solo_rgbd.methods.momentum import MomentumMethod, MomentumStreamKwargs


@dataclass
class DINOKwargs(MomentumStreamKwargs):
    proj_hidden_dim: int = 2048
    proj_output_dim: int = 4096  # the prototypes
    bottleneck_dim: int = 256
    local_crops: int = 4
    local_size: int = 16


class DINOLike(MomentumMethod):
    method_name = "dino_like"
    Kwargs = DINOKwargs

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        out = int(self.kwargs["proj_output_dim"])
        self.criterion = nn.ModuleDict(
            {s: DINOLoss(out, warmup_teacher_temp_epochs=0) for s in self.streams}
        )

    def make_augment(self, cfg) -> PairedAugment:
        kw = self.kwargs
        return PairedAugment(cfg, int(kw["local_crops"]), int(kw["local_size"]))

    def make_projector(self, in_dim: int) -> nn.Module:
        dims = (
            int(self.kwargs[k]) for k in ("proj_hidden_dim", "bottleneck_dim", "proj_output_dim")
        )
        return DINOProjectionHead(in_dim, *dims)

    def make_momentum_projector(self, student: nn.Module) -> nn.Module:
        # the teacher head: a twin loaded with the student's weights (weight_norm'd layers do
        # not deepcopy)
        teacher = self.make_projector(next(student.parameters()).shape[1])
        teacher.load_state_dict(student.state_dict())
        return teacher.requires_grad_(False)

    def training_step(self, batch, batch_idx):
        views = [self.streams.inputs(rgb, depth) for rgb, depth in batch["views"]]
        loss = 0.0
        for s in self.streams:
            teacher = [self.embed_momentum(s, v[s]) for v in views[:2]]  # global crops only
            student = [self.project(s, v[s]) for v in views]
            loss = loss + self.criterion[s](teacher, student, epoch=self.current_epoch)
        self.log("loss", loss.detach())  # Lightning's self.log lands in metrics.csv
        return loss
