"""EMA of weights and the warm-up + linear-decay LR schedule."""

import pytest
import torch
from torch import nn

from jen1cli.training.ema import EMA
from jen1cli.training.schedule import warmup_linear_decay, warmup_linear_decay_factor


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.register_buffer("scale", torch.tensor([1.0]))
        self.register_buffer("count", torch.tensor([0], dtype=torch.long))


def _set(model, value):
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)
        model.scale.fill_(value)
        model.count.fill_(int(value))


def test_ema_math_and_copy_to():
    model = Tiny()
    _set(model, 0.0)
    ema = EMA(model, decay=0.9, warmup=False)
    assert set(ema.shadow) == {"linear.weight", "linear.bias", "scale"}  # no integer buffer
    _set(model, 1.0)
    ema.update(model)
    ema.update(model)
    # 0 -> 0.1 -> 0.19 towards a constant 1.
    for value in ema.shadow.values():
        torch.testing.assert_close(value, torch.full_like(value, 0.19))
    _set(model, 5.0)
    ema.copy_to(model)
    assert torch.allclose(model.linear.weight, torch.tensor(0.19))
    assert model.scale.item() == pytest.approx(0.19)
    assert model.count.item() == 5  # non-float buffers are left alone


def test_ema_warmup_decay_and_float32_shadow():
    model = Tiny().to(torch.bfloat16)
    ema = EMA(model, decay=0.999)
    assert all(v.dtype == torch.float32 for v in ema.shadow.values())
    assert ema.current_decay() == pytest.approx(1 / 10)
    ema.num_updates = 10_000
    assert ema.current_decay() == 0.999


def test_ema_state_dict_round_trip():
    model = Tiny()
    _set(model, 0.0)
    ema = EMA(model, decay=0.5, warmup=False)
    _set(model, 2.0)
    ema.update(model)
    state = ema.state_dict()
    resumed = EMA(Tiny(), decay=0.9)
    resumed.load_state_dict(state)
    assert resumed.num_updates == 1 and resumed.decay == 0.5 and not resumed.warmup
    assert all(torch.equal(resumed.shadow[k], v) for k, v in ema.shadow.items())
    resumed.update(model)
    ema.update(model)
    assert all(torch.equal(resumed.shadow[k], v) for k, v in ema.shadow.items())
    with pytest.raises(KeyError, match="missing"):
        EMA(nn.Linear(2, 1)).load_state_dict(state)


def test_schedule_values():
    assert warmup_linear_decay_factor(0, 10, 110) == 0.0
    assert warmup_linear_decay_factor(5, 10, 110) == 0.5
    assert warmup_linear_decay_factor(10, 10, 110) == 1.0
    assert warmup_linear_decay_factor(60, 10, 110) == 0.5
    assert warmup_linear_decay_factor(110, 10, 110) == 0.0
    assert warmup_linear_decay_factor(500, 10, 110) == 0.0
    assert warmup_linear_decay_factor(0, 0, 100) == 1.0  # no warm-up: start at the peak


def test_lambda_lr_steps_and_resumes():
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=3e-5)
    sched = warmup_linear_decay(opt, warmup_steps=4, total_steps=20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[4] == pytest.approx(3e-5)  # peak at the end of warm-up
    assert lrs[12] == pytest.approx(1.5e-5) and opt.param_groups[0]["lr"] == 0.0  # 0 at the end

    # Resume from step 12 with a freshly built scheduler.
    opt2 = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=3e-5)
    first = warmup_linear_decay(opt2, 4, 20)
    for _ in range(12):
        opt2.step()
        first.step()
    state = first.state_dict()
    opt3 = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=3e-5)
    again = warmup_linear_decay(opt3, 4, 20)
    again.load_state_dict(state)
    assert again.get_last_lr()[0] == pytest.approx(lrs[12])
    opt3.step()
    again.step()
    assert opt3.param_groups[0]["lr"] == pytest.approx(lrs[13])
    with pytest.raises(ValueError):
        warmup_linear_decay(opt3, warmup_steps=30, total_steps=20)


def test_ema_skips_derived_buffers_and_resumes_old_checkpoints_that_hold_them():
    class WithTable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.register_buffer("table", torch.linspace(0, 1, 5, dtype=torch.float64), False)

    model = WithTable()
    ema = EMA(model)
    assert set(ema.shadow) == {"lin.weight", "lin.bias"}  # the derived table is not averaged
    old = ema.state_dict()
    old["shadow"] = {**old["shadow"], "table": torch.zeros(5)}  # as earlier checkpoints held it
    EMA(model).load_state_dict(old)
    ema.copy_to(model)
    torch.testing.assert_close(model.table, torch.linspace(0, 1, 5, dtype=torch.float64))
