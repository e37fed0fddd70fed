"""Energy meters fed recorded sysfs trees, tegrastats lines and a fake pynvml; idle subtraction; the estimate label."""

import os
import sys
import types
from pathlib import Path

import pytest

from edgekd.bench.energy import EstimateMeter, energy_result, estimate_energy, measure_energy, pick_meter
from edgekd.bench.meter import METERS, Meter, Window, counter_delta, integrate
from edgekd.bench.meter_jetson import JetsonRailMeter, TegrastatsMeter, input_rail, parse_tegrastats, sysfs_rails
from edgekd.bench.meter_nvml import NvmlMeter
from edgekd.bench.meter_rapl import RaplMeter
from edgekd.errors import BackendError, ConfigError
from edgekd.targets import load_target

DATA = Path(__file__).parent / "data" / "energy"


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text + "\n")
    return root


def _lines() -> dict[str, str]:
    rows = [ln.split("|", 1) for ln in (DATA / "tegrastats.txt").read_text().splitlines() if not ln.startswith("#")]
    return {board: line for board, line in rows}


# ---- sampling maths ---------------------------------------------------------------------------------------------

def test_counter_wraps_around_at_max_energy_range():
    assert counter_delta(100, 350, 1000) == 250
    assert counter_delta(900, 50, 1000) == 150  # 100 up to the wrap, 50 after it


def test_trapezoid_integral_of_power_samples():
    w = integrate([(0.0, 2.0), (1.0, 4.0), (3.0, 4.0)])
    assert w.joules == pytest.approx(3.0 + 8.0) and w.seconds == 3.0 and w.samples == 3
    assert w.watts == pytest.approx(11 / 3)
    assert integrate([(0.0, 5.0)]).joules == 0.0


def test_idle_is_subtracted_per_frame():
    meter = EstimateMeter(load_target("cpu-x86"))
    r = energy_result("m", meter, frames=100, idle_w=10.0, active=Window(joules=350.0, seconds=10.0, samples=3))
    assert r.active_w == 35.0 and r.gross_j_per_frame == 3.5
    assert r.j_per_frame == pytest.approx(2.5) and r.frames_per_j == pytest.approx(0.4)  # (350 - 10 x 10) / 100
    r0 = energy_result("m", meter, frames=10, idle_w=10.0, active=Window(joules=90.0, seconds=10.0, samples=3))
    assert r0.frames_per_j is None and "did not exceed idle" in r0.note


# ---- RAPL -------------------------------------------------------------------------------------------------------

def _rapl(root: Path, e0="1000000", e1="5000000") -> Path:
    return _tree(root, {
        "intel-rapl:0/name": "package-0", "intel-rapl:0/energy_uj": e0,
        "intel-rapl:0/max_energy_range_uj": "262143328850",
        "intel-rapl:0:0/name": "core", "intel-rapl:0:0/energy_uj": "7",
        "intel-rapl:0:0/max_energy_range_uj": "262143328850",
        "intel-rapl:1/name": "package-1", "intel-rapl:1/energy_uj": e1,
        "intel-rapl:1/max_energy_range_uj": "262143328850",
        "intel-rapl:2/name": "psys", "intel-rapl:2/energy_uj": "0", "intel-rapl:2/max_energy_range_uj": "1"})


def test_rapl_sums_package_domains_only_and_corrects_wrap(tmp_path):
    root = _rapl(tmp_path)
    m = RaplMeter(root)
    assert m.why_not() is None and [n for _, n, _ in m.zones()] == ["package-0", "package-1"]
    assert "package-0+package-1" in m.method and "CPU packages only" in m.method
    m.start()
    (root / "intel-rapl:0/energy_uj").write_text("3500000\n")  # +2.5 J
    (root / "intel-rapl:1/energy_uj").write_text("1000000\n")  # wrapped: 262143.32885 - 5 + 1 J
    w = m.stop()
    assert w.joules == pytest.approx(2.5 + (262143328850 - 5000000 + 1000000) / 1e6)


@pytest.mark.parametrize("files,match", [
    ({}, "does not exist"),
    ({"intel-rapl:0:0/name": "core"}, "no package zone"),
    ({"intel-rapl:0/name": "package-0", "intel-rapl:0/max_energy_range_uj": "100"}, "energy_uj is missing"),
    ({"intel-rapl:0/name": "package-0", "intel-rapl:0/energy_uj": "5"}, "wrap-around"),
])
def test_rapl_says_why_it_cannot_run(tmp_path, files, match):
    root = _tree(tmp_path / "powercap", files) if files else tmp_path / "absent"
    assert match in RaplMeter(root).why_not()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_rapl_root_only_counter_is_named(tmp_path):
    root = _rapl(tmp_path)
    (root / "intel-rapl:0/energy_uj").chmod(0o000)
    assert "root only" in RaplMeter(root).why_not()


# ---- Jetson rails -----------------------------------------------------------------------------------------------

ORIN_NANO_HWMON = {  # JetPack 5/6 mainline ina3221 hwmon layout (channels 1-3, in7 = sum of shunt voltages)
    "ina3221/1-0040/hwmon/hwmon3/in1_label": "VDD_IN", "ina3221/1-0040/hwmon/hwmon3/in1_input": "5000",
    "ina3221/1-0040/hwmon/hwmon3/curr1_input": "960",
    "ina3221/1-0040/hwmon/hwmon3/in2_label": "VDD_CPU_GPU_CV", "ina3221/1-0040/hwmon/hwmon3/in2_input": "5000",
    "ina3221/1-0040/hwmon/hwmon3/curr2_input": "120",
    "ina3221/1-0040/hwmon/hwmon3/in3_label": "VDD_SOC", "ina3221/1-0040/hwmon/hwmon3/in3_input": "5000",
    "ina3221/1-0040/hwmon/hwmon3/curr3_input": "260",
    "ina3221/1-0040/hwmon/hwmon3/in7_label": "sum of shunt voltages", "ina3221/1-0040/hwmon/hwmon3/in7_input": "80",
}
AGX_ORIN_HWMON = {
    "ina3221/1-0040/hwmon/hwmon1/in1_label": "VDD_GPU_SOC", "ina3221/1-0040/hwmon/hwmon1/in1_input": "19000",
    "ina3221/1-0040/hwmon/hwmon1/curr1_input": "124",
    "ina3221/1-0040/hwmon/hwmon1/in2_label": "VDD_CPU_CV", "ina3221/1-0040/hwmon/hwmon1/in2_input": "19000",
    "ina3221/1-0040/hwmon/hwmon1/curr2_input": "41",
    "ina3221/1-0041/hwmon/hwmon2/in1_label": "NC", "ina3221/1-0041/hwmon/hwmon2/in1_input": "0",
    "ina3221/1-0041/hwmon/hwmon2/curr1_input": "0",
    "ina3221/1-0041/hwmon/hwmon2/in2_label": "VDDQ_VDD2_1V8AO", "ina3221/1-0041/hwmon/hwmon2/in2_input": "5000",
    "ina3221/1-0041/hwmon/hwmon2/curr2_input": "100",
}
NANO_IIO = {  # JetPack 4 (L4T 32) NVIDIA ina3221x iio layout, power in mW
    "ina3221x/6-0040/iio:device0/rail_name_0": "POM_5V_IN", "ina3221x/6-0040/iio:device0/in_power0_input": "2345",
    "ina3221x/6-0040/iio:device0/rail_name_1": "POM_5V_GPU", "ina3221x/6-0040/iio:device0/in_power1_input": "0",
    "ina3221x/6-0040/iio:device0/rail_name_2": "POM_5V_CPU", "ina3221x/6-0040/iio:device0/in_power2_input": "326",
}


def test_orin_nano_uses_vdd_in_never_the_sum_of_rails(tmp_path):
    root = _tree(tmp_path, ORIN_NANO_HWMON)
    rails = sysfs_rails(root)
    assert sorted(rails) == ["VDD_CPU_GPU_CV", "VDD_IN", "VDD_SOC"]  # in7, the shunt-voltage sum, is no rail
    assert rails["VDD_IN"]() == pytest.approx(4.8)  # 5000 mV x 960 mA
    m = JetsonRailMeter(root, interval_s=0.01)
    assert m.why_not() is None and "rail VDD_IN (board input)" in m.method
    m.start()
    w = m.stop()
    assert w.watts == pytest.approx(4.8) and w.samples >= 2  # constant rail: any window integrates to 4.8 W


def test_a_rail_that_vanishes_mid_window_is_an_error_not_a_number(tmp_path):
    root = _tree(tmp_path, ORIN_NANO_HWMON)
    m = JetsonRailMeter(root, interval_s=0.001)
    m.start()
    (root / "ina3221/1-0040/hwmon/hwmon3/curr1_input").unlink()
    with pytest.raises(BackendError, match="read failed"):
        m._sampler._thread.join()  # the sampler thread stops at its first failed read
        m.stop()


def test_jetpack4_iio_layout_reads_pom_5v_in(tmp_path):
    root = _tree(tmp_path, NANO_IIO)
    assert input_rail(sysfs_rails(root)) == "POM_5V_IN"
    assert sysfs_rails(root)["POM_5V_IN"]() == pytest.approx(2.345)


def test_agx_orin_has_no_input_rail_and_is_not_summed(tmp_path):
    root = _tree(tmp_path, AGX_ORIN_HWMON)
    reason = JetsonRailMeter(root).why_not()
    assert "no board input rail" in reason and "never sums" in reason and "NC" not in sysfs_rails(root)
    assert JetsonRailMeter(root, rail="VDD_GPU_SOC").why_not() is None  # an explicit rail is the user's choice
    assert "not among" in JetsonRailMeter(root, rail="VDD_IN").why_not()


def test_missing_rail_files(tmp_path):
    assert "does not exist" in JetsonRailMeter(tmp_path / "absent").why_not()
    files = {k: v for k, v in ORIN_NANO_HWMON.items() if not k.endswith("curr1_input")}
    root = _tree(tmp_path / "t", files)
    assert "VDD_IN" not in sysfs_rails(root) and "no board input rail" in JetsonRailMeter(root).why_not()


# ---- tegrastats -------------------------------------------------------------------------------------------------

def test_tegrastats_lines_of_each_jetpack_parse_to_rails():
    lines = _lines()
    nano = parse_tegrastats(lines["orin-nano"])
    assert nano == {"VDD_IN": (4832, 4832), "VDD_CPU_GPU_CV": (565, 565), "VDD_SOC": (1335, 1335)}  # no RAM/SWAP
    assert input_rail(nano) == "VDD_IN"
    nano4 = parse_tegrastats(lines["nano-jp4"])
    assert input_rail(nano4) == "POM_5V_IN" and nano4["POM_5V_IN"] == (1750, 1628)  # current, average
    assert parse_tegrastats(lines["agx-xavier"])["SYS5V"] == (3306, 3306)
    for board in ("agx-orin", "agx-xavier"):
        assert input_rail(parse_tegrastats(lines[board])) is None


def _fake_tegrastats(tmp_path, board):
    script = tmp_path / "tegrastats.py"
    script.write_text(f"import sys, time\nline = {_lines()[board]!r}\n"
                      "while True:\n    print(line, flush=True)\n    time.sleep(0.01)\n")
    return [sys.executable, str(script)]


def test_tegrastats_meter_reads_the_input_rail_from_a_running_process(tmp_path):
    m = TegrastatsMeter(cmd=_fake_tegrastats(tmp_path, "orin-nano"), first_line_timeout_s=60)
    try:
        m.start()
        w = m.stop()
    finally:
        m.close()
    assert w.watts == pytest.approx(4.832) and "tegrastats rail VDD_IN" in m.method


def test_tegrastats_meter_refuses_a_board_without_input_rail(tmp_path):
    m = TegrastatsMeter(cmd=_fake_tegrastats(tmp_path, "agx-orin"), first_line_timeout_s=60)
    with pytest.raises(BackendError, match="no board input rail"):
        m.start()
    assert "not found" in TegrastatsMeter(cmd=[str(tmp_path / "tegrastats")]).why_not()


# ---- NVML (a fake pynvml module) --------------------------------------------------------------------------------

def _fake_pynvml(monkeypatch, counter=True):
    nv = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    state = {"mj": 1_000_000, "shutdown": 0}
    nv.NVMLError = NVMLError
    nv.nvmlInit = lambda: None
    nv.nvmlShutdown = lambda: state.__setitem__("shutdown", state["shutdown"] + 1)
    nv.nvmlDeviceGetCount = lambda: 1
    nv.nvmlDeviceGetHandleByIndex = lambda i: f"gpu{i}"
    nv.nvmlDeviceGetName = lambda h: b"NVIDIA H100"
    nv.nvmlDeviceGetPowerUsage = lambda h: 250_000  # mW

    def energy(h):
        if not counter:
            raise NVMLError("Not Supported")
        return state["mj"]

    nv.nvmlDeviceGetTotalEnergyConsumption = energy
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    return state


def test_nvml_energy_counter_in_millijoules(monkeypatch):
    state = _fake_pynvml(monkeypatch)
    m = NvmlMeter()
    assert m.why_not() is None and "total energy counter" in m.method and "H100" in m.method
    m.start()
    state["mj"] += 12_500
    w = m.stop()
    m.close()
    assert w.joules == pytest.approx(12.5) and state["shutdown"] == 1


def test_nvml_falls_back_to_power_sampling(monkeypatch):
    _fake_pynvml(monkeypatch, counter=False)
    m = NvmlMeter(interval_s=0.01)
    assert m.why_not() is None and "nvmlDeviceGetPowerUsage" in m.method
    m.start()
    assert m.stop().watts == pytest.approx(250.0)


def test_nvml_source_picks_the_method_and_a_missing_counter_is_named(monkeypatch):
    _fake_pynvml(monkeypatch)
    m = NvmlMeter(interval_s=0.01, source="power")  # the counter exists, power sampling was asked for
    assert m.why_not() is None and "nvmlDeviceGetPowerUsage" in m.method
    m.start()
    assert m.stop().watts == pytest.approx(250.0)
    _fake_pynvml(monkeypatch, counter=False)
    assert "has no energy counter: Not Supported" in NvmlMeter(source="counter").why_not()
    with pytest.raises(ValueError, match="expected auto, counter or power"):
        NvmlMeter(source="rails")


def test_nvml_without_pynvml_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert "pynvml is not installed" in NvmlMeter().why_not()


# ---- choosing a meter, measuring a loop -------------------------------------------------------------------------

def _no_meters(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    return {"rapl": {"root": tmp_path / "powercap"}, "jetson-rails": {"root": tmp_path / "i2c"},
            "tegrastats": {"cmd": [str(tmp_path / "no-tegrastats")]}}


def test_without_counters_auto_selection_falls_back_to_the_labelled_estimate(tmp_path, monkeypatch):
    opts = _no_meters(tmp_path, monkeypatch)
    m = pick_meter(target=load_target("cpu-x86"), options=opts)
    assert isinstance(m, EstimateMeter) and m.estimated
    assert m.method.startswith("estimated: power model of cpu-x86") and "rapl:" in m.method and "nvml:" in m.method
    with pytest.raises(ConfigError, match="no energy meter here"):
        pick_meter(target=None, options=opts)


def test_auto_selection_prefers_jetson_rails_then_the_device_meter(tmp_path, monkeypatch):
    opts = _no_meters(tmp_path, monkeypatch)
    opts["rapl"] = {"root": _rapl(tmp_path / "powercap")}
    assert pick_meter(target=load_target("cpu-x86"), options=opts).name == "rapl"
    opts["jetson-rails"] = {"root": _tree(tmp_path / "i2c", ORIN_NANO_HWMON)}
    assert pick_meter(target=load_target("jetson-orin-nano"), options=opts).name == "jetson-rails"


def test_a_named_meter_that_cannot_run_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="energy meter 'rapl' cannot run here: .*does not exist"):
        pick_meter("rapl", options={"rapl": {"root": tmp_path / "none"}})
    with pytest.raises(ConfigError, match="Did you mean 'rapl'"):
        pick_meter("rapll")
    assert set(METERS.names()) == {"estimate", "jetson-rails", "nvml", "rapl", "tegrastats"}


class _Scripted(Meter):
    """A meter whose windows are given: idle 10 W, active 30 W, whatever the wall time."""

    name = "scripted"

    def __init__(self):
        self.windows = [Window(20.0, 2.0, 5), Window(60.0, 2.0, 5)]
        self.closed = False

    def why_not(self):
        return None

    @property
    def method(self):
        return "scripted"

    def start(self):
        pass

    def stop(self):
        return self.windows.pop(0)

    def close(self):
        self.closed = True


def test_measure_energy_runs_warmup_idle_then_frames_and_subtracts_idle():
    calls = []
    m = _Scripted()
    r = measure_energy(lambda: calls.append(1), frames=8, meter=m, idle_s=0.0, warmup=2, model="int8")
    assert len(calls) == 10 and m.closed
    assert r.measured and r.estimated is None and r.idle_w == 10.0 and r.active_w == 30.0
    assert r.j_per_frame == pytest.approx((60 - 10 * 2) / 8) and r.frames_per_j == pytest.approx(8 / 40)


def test_estimated_loop_is_labelled_and_uses_the_power_models_idle():
    r = measure_energy(lambda: None, frames=5, meter="estimate", target=load_target("cpu-x86"), warmup=0)
    assert not r.measured and r.estimated == r.method and r.method.startswith("estimated: power model of cpu-x86")
    assert r.idle_w == 10 and r.active_w == pytest.approx(35)


def test_estimate_energy_from_an_estimated_fps():
    r = estimate_energy(398.0, load_target("fpga-zu"), model="unet", how="FINN-style dataflow")
    assert r.frames_per_j == pytest.approx(398 / 1.94) and r.estimated.endswith("at an estimated 398.0 FPS "
                                                                                 "(FINN-style dataflow)")
    nano = estimate_energy(100.0, load_target("jetson-orin-nano"))
    assert nano.j_per_frame == pytest.approx((15 - 5) / 100) and nano.gross_j_per_frame == pytest.approx(0.15)
