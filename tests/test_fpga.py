"""The cpu-arm64 and fpga-zu targets, and the FINN-style dataflow estimate on hand-countable graphs."""

import math

import pytest
import torch
import yaml

from edgekd.bench.fpga import allocate_dsps, fpga_estimate
from edgekd.errors import ConfigError
from edgekd.targets import Target, list_targets, load_target

from .conftest import ROOT


def test_new_targets_load_and_every_target_still_loads():
    for name in list_targets():
        load_target(name)
    arm = load_target("cpu-arm64")
    assert arm.arch == "aarch64" and arm.runtimes == ["onnxruntime"] and arm.threads == 4 and arm.power.idle_w > 0
    zu = load_target("fpga-zu")
    assert zu.device == "fpga" and zu.formats == ["qonnx"] and zu.runtimes == ["finn"]
    assert zu.fpga.dsp_slices == 1728 and zu.fpga.rate(8) == 2 and zu.fpga.rate(6) == 2 and zu.fpga.rate(4) == 4
    assert math.isclose(398 / (zu.power.active_w - zu.power.idle_w), 205.2, rel_tol=1e-3)


def _raw(name):
    return yaml.safe_load((ROOT / "targets" / f"{name}.yaml").read_text())


def test_fpga_section_required_for_fpga_and_refused_elsewhere(tmp_path):
    raw = _raw("fpga-zu")
    del raw["fpga"]
    with pytest.raises(ValueError, match="fpga"):
        Target.model_validate(raw)
    raw = _raw("cpu-x86")
    raw["fpga"] = _raw("fpga-zu")["fpga"]
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="fpga"):
        load_target(str(p))


def test_fpga_bits_without_a_dsp_rate_are_refused():
    raw = _raw("fpga-zu")
    raw["fpga"]["weight_bits"] = 16
    with pytest.raises(ValueError, match="16 bits"):
        Target.model_validate(raw)
    with pytest.raises(ConfigError, match="no DSP packing rate for 12-bit"):
        load_target("fpga-zu").fpga.rate(12)


def _target(dsps=10, clock_mhz=100, bram=11.0, idle=0.5, active=2.5):
    raw = _raw("fpga-zu")
    raw["fpga"].update(dsp_slices=dsps, clock_mhz=clock_mhz, bram_mbit=bram, uram_mbit=0.0)
    raw["power"].update(idle_w=idle, active_w=active)
    return Target.model_validate(raw)


def _export(model, shape, path):
    torch.onnx.export(model.eval(), torch.zeros(*shape), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["out"])
    return path


def test_one_conv_layer_exact_macs_cycles_fps_and_memory(tmp_path):
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.ReLU())
    p = _export(conv, (1, 3, 16, 16), tmp_path / "c.onnx")
    est = fpga_estimate(p, _target(dsps=10, clock_mhz=100))
    macs = 8 * 16 * 16 * 3 * 9  # out elements x (Cin x 3 x 3) = 55296
    assert est.macs == macs and est.dsps_used == 10
    assert est.ii_cycles == math.ceil(macs / (10 * 2)) == 2765  # 2 int8 MACs per DSP per cycle
    assert [x.op for x in est.layers] == ["Conv"]  # the ReLU is fused into the conv's thresholds
    assert est.fps == pytest.approx(100e6 / 2765) and est.latency_ms == pytest.approx(2765 / 100e6 * 1e3)
    assert est.weights == 8 * 3 * 9 and est.weight_mbit == pytest.approx(216 * 8 / 1e6)
    assert est.line_buffer_mbit == pytest.approx(((3 - 1) * 16 * 3 + 3 * 3) * 8 / 1e6)  # 2 rows + 1 window
    assert est.skip_buffer_mbit == 0 and est.fits_onchip and not est.notes
    assert est.power_w == 2.0 and est.frames_per_j == pytest.approx(est.fps / 2.0)  # idle subtracted
    assert est.estimated.startswith("estimated: FINN-style dataflow") and "2 MACs/DSP/cycle at 8 bit" in est.estimated
    # 4 bit packs 4 MACs per DSP: twice the rate on the same 10 DSPs
    est4 = fpga_estimate(p, _target(dsps=10, clock_mhz=100), weight_bits=4, activation_bits=4)
    assert est4.ii_cycles == math.ceil(macs / 40) and est4.weight_mbit == pytest.approx(est.weight_mbit / 2)


def test_a_layer_never_goes_faster_than_one_output_pixel_per_cycle(tmp_path):
    p = _export(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), (1, 3, 16, 16), tmp_path / "c.onnx")
    est = fpga_estimate(p, load_target("fpga-zu"))  # 1728 DSPs, but one pixel needs only 216 MACs = 108 DSPs
    assert est.dsps_used == 108 and est.ii_cycles == 16 * 16


def test_allocation_is_proportional_capped_and_whole():
    assert allocate_dsps([100, 300], [1e9, 1e9], 8) == [2, 6]
    assert allocate_dsps([100, 300], [1e9, 3], 8) == [5, 3]  # the capped layer's DSPs go to the other
    assert allocate_dsps([100, 0, 1], [1e9, 1e9, 1e9], 10) == [9, 0, 1]  # at least one DSP per MAC layer


class _TinyUNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.mid = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.dec = torch.nn.Conv2d(12, 4, 3, padding=1)
        self.head = torch.nn.Conv2d(4, 1, 1)

    def forward(self, x):
        s = torch.relu(self.enc(x))
        y = torch.relu(self.mid(torch.nn.functional.max_pool2d(s, 2)))
        y = torch.nn.functional.interpolate(y, scale_factor=2.0, mode="nearest")
        return self.head(torch.relu(self.dec(torch.cat([y, s], 1))))


def test_unet_skip_is_buffered_and_a_too_small_part_is_reported(tmp_path):
    p = _export(_TinyUNet(), (1, 3, 32, 32), tmp_path / "u.onnx")
    est = fpga_estimate(p, _target(dsps=100))
    assert est.skip_buffer_mbit == pytest.approx(4 * 32 * 32 * 8 / 1e6)  # the encoder map waits for the decoder
    assert {"MaxPool", "Resize"} <= {x.op for x in est.layers}  # streaming layers: a pixel per cycle
    small = fpga_estimate(p, _target(dsps=100, bram=0.01))
    assert not small.fits_onchip and "does not fit on chip" in small.notes[0]
    assert small.fps == est.fps  # the estimate still answers; the note says what it ignores


def test_fpga_estimate_refuses_a_target_without_an_fpga_section(tmp_path):
    p = _export(torch.nn.Conv2d(3, 4, 1), (1, 3, 8, 8), tmp_path / "c.onnx")
    with pytest.raises(ConfigError, match="no `fpga:` section"):
        fpga_estimate(p, load_target("cpu-x86"))
