"""solo-rgbd: self-supervised pretraining for paired RGB-D images.

Import what you need from the submodules (``solo_rgbd.methods``, ``solo_rgbd.data``, ...);
this package ``__init__`` deliberately imports nothing heavy.
"""

__version__ = "0.1.0"
