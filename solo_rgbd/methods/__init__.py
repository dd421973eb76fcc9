"""Pretraining methods. ``METHODS[name]`` is the class behind ``method=name``."""

from solo_rgbd.methods.registry import METHODS, register_method, registered_methods

__all__ = ["METHODS", "register_method", "registered_methods"]
