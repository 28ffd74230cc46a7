"""CircularDenoiser: the network sees its latent as a circle, so a loop has no seam to close."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from jen1cli.modules.circular_denoiser import CircularDenoiser, circular_indices


class LocalNet(nn.Module):
    """A U-Net stand-in with a 5-frame receptive field and zero padding: it sees an edge. Its
    output scales with the timestep and the text context, so each must reach the right item."""

    def __init__(self, kernel: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv1d(3 + 3 + 1, 3, kernel, padding=kernel // 2)

    def forward(self, sample, timestep, masked_latent, mask, context=None, *, causal=False):
        out = self.conv(torch.cat([sample, masked_latent, mask], dim=1)) * timestep[:, None, None]
        return out if context is None else out * context[:, :1, None]


def inputs(batch: int = 2, frames: int = 40):
    torch.manual_seed(1)
    x, known = torch.randn(batch, 3, frames), torch.randn(batch, 3, frames)
    mask = (torch.rand(batch, 1, frames) > 0.5).float()
    return x, torch.tensor([0.5, 2.0]), known, mask


def circular_reference(net: LocalNet, x, t, known, mask) -> torch.Tensor:
    pad = net.conv.padding[0]
    stacked = F.pad(torch.cat([x, known, mask], dim=1), (pad, pad), mode="circular")
    return F.conv1d(stacked, net.conv.weight, net.conv.bias) * t[:, None, None]


def test_circular_indices_wrap_both_ways():
    assert circular_indices(5, 2, 3).tolist() == [3, 4, 0, 1, 2, 3, 4, 0, 1, 2]
    assert circular_indices(2, 3, 0).tolist() == [1, 0, 1, 0, 1]  # more padding than frames


def test_one_window_padded_as_wide_as_the_receptive_field_makes_the_network_circular():
    net, (x, t, known, mask) = LocalNet(), inputs()
    wrapped = CircularDenoiser(net, 40, 44, 2)
    assert wrapped.windows == 1
    out = wrapped(x, t, known, mask)
    torch.testing.assert_close(out, circular_reference(net, x, t, known, mask))
    # the wrap is like any other place: rolling the input rolls the output, frame for frame
    rolled = wrapped(x.roll(7, -1), t, known.roll(7, -1), mask.roll(7, -1))
    torch.testing.assert_close(rolled, out.roll(7, -1))
    # the plain network sees an edge there, and the reference above tells it apart
    plain = net(x, t, known, mask)
    assert not torch.allclose(plain[..., :2], out[..., :2])
    torch.testing.assert_close(plain[..., 2:-2], out[..., 2:-2])


def test_a_loop_longer_than_the_window_is_covered_by_a_ring_of_windows():
    net, (x, t, known, mask) = LocalNet(), inputs()
    wrapped = CircularDenoiser(net, 40, 16, 2)  # each window speaks for its middle 12 frames
    assert wrapped.windows == 5  # 8 apart: plateaus of 4 frames, crossfades of 4
    weight = wrapped.weight
    # a frame's weights over its windows sum to one; no window speaks for its 2 edge frames
    total = torch.zeros(40).index_add_(0, wrapped.index.flatten(), weight.flatten())
    torch.testing.assert_close(total, torch.ones(40))
    assert not weight[:, :2].any() and not weight[:, -2:].any()
    assert int((weight == 1).sum()) == 5 * 4  # most frames come from one window alone
    # so a network that sees no further than the context is exactly circular, as in one window
    out = wrapped(x, t, known, mask)
    torch.testing.assert_close(out, circular_reference(net, x, t, known, mask))
    # the windows sit around the circle alike: a roll by their spacing rolls the output
    rolled = wrapped(x.roll(8, -1), t, known.roll(8, -1), mask.roll(8, -1))
    torch.testing.assert_close(rolled, out.roll(8, -1))
    # a wider network does see the windows' edges, but only where it weighs little
    wide = LocalNet(kernel=9)
    reference = circular_reference(wide, x, t, known, mask)
    ring_error = (CircularDenoiser(wide, 40, 16, 2)(x, t, known, mask) - reference).abs().max()
    edge_error = (wide(x, t, known, mask) - reference).abs().max()
    assert 0 < ring_error < 0.5 * edge_error
    with pytest.raises(ValueError, match="leaves no room"):
        CircularDenoiser(net, 40, 16, 4)


def test_other_arguments_reach_every_window_of_their_own_item():
    net, (x, t, known, mask) = LocalNet(), inputs()
    context = torch.tensor([[1.0, 0.0], [-3.0, 0.0]])  # [B, L]: scales item b's output
    for window, context_frames in ((44, 2), (16, 2)):
        wrapped = CircularDenoiser(net, 40, window, context_frames)
        scaled = wrapped(x, t, known, mask, context, causal=False)
        torch.testing.assert_close(scaled, wrapped(x, t, known, mask) * context[:, :1, None])
    assert [p.data_ptr() for p in wrapped.parameters()] == [p.data_ptr() for p in net.parameters()]
    with pytest.raises(ValueError, match="built for 40 frames"):
        wrapped(x[..., :39], t, known[..., :39], mask[..., :39])
    with pytest.raises(ValueError, match="context >= 0"):
        CircularDenoiser(net, 40, 16, -1)
