"""Streams: which modalities a model sees, one value instead of two_stream / early_fusion
branches."""

import pytest
import torch

from solo_rgbd.nn.streams import Streams


def test_each_mode_names_its_streams_channels_and_inputs():
    rgb, depth = torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8)
    two = Streams.of_mode("two_stream")
    assert two.channels == {"rgb": 3, "depth": 1} and len(two) == 2 and "rgb" in two
    x = two.inputs(rgb, depth)
    assert x["rgb"] is rgb and x["depth"] is depth
    early = Streams.of_mode("early_fusion")
    assert early.channels == {"rgbd": 4}
    assert torch.equal(early.inputs(rgb, depth)["rgbd"], torch.cat([rgb, depth], 1))
    assert list(Streams.of_mode("rgb_only").inputs(rgb, depth)) == ["rgb"]
    assert Streams.of_mode("depth_only").channels == {"depth": 1}


def test_streams_from_an_exports_names_in_canonical_order():
    assert Streams.of_names({"depth", "rgb"}).names == ("rgb", "depth")
    assert Streams.of_names(["rgbd"]).mode == "early_fusion"
    assert Streams.of_names(["depth"]).mode == "depth_only"
    with pytest.raises(ValueError, match="do not form streams"):
        Streams.of_names(["rgb", "rgbd"])
    with pytest.raises(ValueError, match="rgbd_mode 'three' is unknown"):
        Streams.of_mode("three")
