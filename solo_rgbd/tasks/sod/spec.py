"""The SOD task as data (see :class:`solo_rgbd.tasks.base.TaskSpec`); its workflows are
added where the engine is wired in (:data:`solo_rgbd.commands.sod.TASK`)."""

from solo_rgbd.data.decode import SALIENCY
from solo_rgbd.evaluation.fast import FastSODScores
from solo_rgbd.evaluation.report import TABLE_METRICS, Report
from solo_rgbd.tasks.base import TaskSpec

#: RGB-D SOD: the paper's maxF, E^max and MAE, plus S-measure and weighted F as the field reports
SOD_REPORT = Report(
    metrics=tuple(TABLE_METRICS),
    main=("maxF", "maxE", "MAE", "S", "wF"),
    headline="maxF",
    bars=("maxF", "maxE", "MAE"),
)

#: soft 0..255 saliency masks, resized bilinearly; maxF / MAE on device; best by MAE (or maxF);
#: tables of maxF, E^max, MAE, S, wF
SOD = TaskSpec(
    name="sod",
    config_name="sod",
    labels=SALIENCY,
    metrics=FastSODScores,
    select_by={"MAE": "min", "maxF": "max"},
    report=SOD_REPORT,
)
