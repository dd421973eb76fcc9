"""The SOD task as data (see :class:`solo_rgbd.tasks.base.TaskSpec`)."""

from solo_rgbd.data.cache import SALIENCY
from solo_rgbd.evaluation.fast import FastSODScores
from solo_rgbd.evaluation.report import SOD_REPORT
from solo_rgbd.tasks.base import TaskSpec

#: soft 0..255 saliency masks, resized bilinearly; maxF / MAE on device; best by MAE; tables
#: of maxF, E^max, MAE, S, wF
SOD = TaskSpec("sod", "sod", SALIENCY, FastSODScores, ("MAE", "min"), SOD_REPORT)
