"""Downstream tasks on frozen (or fine-tuned) pretrained encoders, one folder each; see
:mod:`solo_rgbd.tasks.base` for the interface and ``sod/`` for the first implementation."""
