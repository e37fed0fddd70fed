"""Research probe for issue 5 (QAD), kept as the starting point; not part of the package or its tests.

Minimal, verified NNCF-3.x QAT + KD recipe for a timm classifier, with export to
(a) OpenVINO IR and (b) a standard QuantizeLinear/DequantizeLinear ONNX that onnxruntime loads.

Run (torchao is NOT needed for this route):
    nice -n 19 .venv/bin/python docs/research/nncf_qat_route.py [--trt] [--out DIR]

--trt : ask NNCF for TensorRT-friendly activation quantizers (signed int8, per-tensor);
        weights are per-channel symmetric int8 (zero point 0) in both modes.
"""

import argparse
import copy
import os
import time

# NNCF JIT-compiles a C++ extension on first use with a 60 s default timeout; on a busy
# 2-core box the compile can exceed that -> raise the limit (0 = no limit).
os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "600")

import nncf
import nncf.torch
import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import timm
import torch
import torch.nn.functional as F
from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters
from nncf.torch.function_hook.wrapper import get_hook_storage
from nncf.torch.quantization.layers import BaseQuantizer, QuantizerExportMode, SymmetricQuantizer

T0 = time.perf_counter()


def tick(msg, t):
    print(f"[{time.perf_counter() - t:7.2f}s] {msg}", flush=True)


def build(num_classes=10):
    return timm.create_model("mobilevit_xxs", pretrained=False, num_classes=num_classes).eval()


def kd_loss(student_logits, teacher_logits, T=2.0):
    return F.kl_div(
        F.log_softmax(student_logits / T, -1), F.softmax(teacher_logits / T, -1), reduction="batchmean"
    ) * (T * T)


def cmp(name, y, ref):
    y, ref = np.asarray(y), np.asarray(ref)
    cos = float((y * ref).sum() / (np.linalg.norm(y) * np.linalg.norm(ref)))
    print(
        f"    {name}: max|diff|={np.abs(y - ref).max():.4g}  mean|diff|={np.abs(y - ref).mean():.3g}  "
        f"cos={cos:.5f}  top1-agree={(y.argmax(1) == ref.argmax(1)).mean():.3f}  (|logit|max={np.abs(ref).max():.3g})"
    )


@torch.no_grad()
def export_qdq_onnx(qat_model, example, path, opset=17):
    """Standard Q/DQ ONNX from an NNCF-3.x torch QAT model (TorchScript exporter)."""
    m = copy.deepcopy(qat_model).eval()
    hooks = get_hook_storage(m)
    # 1) Bake weights onto the int grid: w <- FQ(w). The QAT function is unchanged (FQ is idempotent),
    #    but it removes .5-tie rounding flips between NNCF's round((w-low)/step) and ONNX's round(w/s).
    params = {id(p): p for p in m.parameters()}
    handles = []
    for _, q in hooks.named_hooks():
        if isinstance(q, BaseQuantizer):
            handles.append(q.register_forward_hook(
                lambda mod, inp, out: params[id(inp[0])].data.copy_(out) if id(inp[0]) in params else None))
    m(example)
    for h in handles:
        h.remove()
    # 2) Switch every NNCF quantizer from the default OpenVINO 'FakeQuantize' export to Q/DQ pairs.
    for _, q in hooks.named_hooks(remove_duplicate=False):
        if isinstance(q, BaseQuantizer):
            q.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
    # 3) TorchScript exporter (dynamo=False); opset>=13 for per-channel axis, >=14 for SDPA.
    torch.onnx.export(
        m, (example,), path, dynamo=False, opset_version=opset,
        input_names=["x"], output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
    )


def inspect_qdq(path):
    mo = onnx.load(path)
    init = {i.name: onnx.numpy_helper.to_array(i) for i in mo.graph.initializer}
    const = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in mo.graph.node
             if n.op_type == "Constant"}

    def val(n):
        return init.get(n, const.get(n))

    custom = [n.op_type for n in mo.graph.node if n.domain not in ("", "ai.onnx")]
    stats = {}
    for n in mo.graph.node:
        if n.op_type != "QuantizeLinear":
            continue
        s, z = val(n.input[1]), val(n.input[2])
        kind = "weight" if n.input[0] in init else "activation"
        gran = "per-channel" if s.size > 1 else "per-tensor"
        key = (kind, gran, str(z.dtype), "zp=0" if not np.any(z) else "zp!=0")
        stats[key] = stats.get(key, 0) + 1
    print(f"    custom-domain ops: {sorted(set(custom)) or 'none'}; "
          f"Q={sum(n.op_type == 'QuantizeLinear' for n in mo.graph.node)} "
          f"DQ={sum(n.op_type == 'DequantizeLinear' for n in mo.graph.node)}; opset={mo.opset_import[0].version}")
    for k, v in sorted(stats.items()):
        print(f"      {v:4d} x QuantizeLinear {k}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/qat-probe")
    ap.add_argument("--trt", action="store_true", help="signed, per-tensor activation quantizers")
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    print(f"torch {torch.__version__} timm {timm.__version__} nncf {nncf.__version__} onnx {onnx.__version__} "
          f"onnxruntime {ort.__version__} openvino {ov.__version__}")

    # ---- 0. C++ extension (JIT-compiled on first use; cached in $TORCH_EXTENSIONS_DIR or ~/.cache/torch_extensions)
    t = time.perf_counter()
    from nncf.torch.quantization.extensions import QuantizedFunctionsCPU
    QuantizedFunctionsCPU.get("Quantize_forward")
    tick("NNCF CPU extension compile/load", t)

    # ---- 1. model, frozen FP32 teacher, random data
    t = time.perf_counter()
    student = build()
    teacher = copy.deepcopy(student).eval().requires_grad_(False)  # copy BEFORE nncf.quantize
    images = torch.randn(64, 3, 64, 64)
    calib = nncf.Dataset([images[i:i + 8] for i in range(0, 64, 8)])  # items are passed straight to model()
    tick("build model + data", t)

    # ---- 2. QAT init = PTQ (min-max ranges, fast bias correction) -> model with trainable FakeQuantizers
    t = time.perf_counter()
    adv = None
    if args.trt:  # per-tensor activations (signedness_to_force=True is rejected by NNCF's HW config, see below)
        adv = AdvancedQuantizationParameters(activations_quantization_params=QuantizationParameters(per_channel=False))
    qat = nncf.quantize(student, calib, subset_size=64, advanced_parameters=adv)
    if args.trt:  # TensorRT wants int8 Q/DQ only: flip unsigned (uint8) quantizers to signed before fine-tuning
        n = 0
        for _, q in get_hook_storage(qat).named_hooks():
            if isinstance(q, SymmetricQuantizer) and not q.signed:
                q.signed = True  # keeps the scale; range becomes [-s*128/127, s] -> QAT re-adapts
                n += 1
        print(f"    flipped {n} unsigned quantizers to signed")
    tick(f"nncf.quantize (PTQ init) -> {type(qat).__name__}, same object as input: {qat is student}", t)

    # ---- 3. a couple of KD fine-tuning steps (student = QAT model, teacher = frozen FP32)
    t = time.perf_counter()
    opt = torch.optim.AdamW(qat.parameters(), lr=1e-5)  # includes quantizer scales (learnable ranges)
    qat.train()
    for step in range(args.steps):
        x = images[step * 8:(step + 1) * 8]
        with torch.no_grad():
            tl = teacher(x)
        loss = kd_loss(qat(x), tl)
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"    step {step} kd_loss {loss.item():.5f}")
    qat.eval()
    tick(f"{args.steps} QAT+KD steps", t)

    # ---- 4. checkpoint (for resume after a kill) and reload into a fresh model
    t = time.perf_counter()
    ckpt = os.path.join(args.out, "qat_ckpt.pt")
    torch.save({"state_dict": qat.state_dict(), "nncf_config": nncf.torch.get_config(qat),
                "optimizer": opt.state_dict(), "step": args.steps}, ckpt)
    ck = torch.load(ckpt, weights_only=False)  # nncf_config is a plain dict, but keep weights_only=False
    resumed = nncf.torch.load_from_config(build(), ck["nncf_config"])  # NB: no example_input arg in 3.4
    resumed.load_state_dict(ck["state_dict"])
    resumed.eval()
    opt2 = torch.optim.AdamW(resumed.parameters(), lr=1e-5)
    opt2.load_state_dict(ck["optimizer"])
    with torch.no_grad():
        d = (resumed(images[:16]) - qat(images[:16])).abs().max().item()
    tick(f"save+reload QAT checkpoint ({os.path.getsize(ckpt) / 1e6:.1f} MB): max|diff| reloaded vs live = {d:.3g}", t)

    x_test = images[:32]
    with torch.no_grad():
        ref = qat(x_test).numpy()
        fp32 = teacher(x_test).numpy()
        noisy = qat(x_test + 1e-6 * torch.randn_like(x_test)).numpy()
    print("  reference points (torch):")
    cmp("FP32 teacher vs QAT", fp32, ref)
    cmp("QAT(x+1e-6 noise) vs QAT(x)  [sensitivity floor of this random net]", noisy, ref)

    # ---- 5a. OpenVINO IR straight from the torch QAT model
    t = time.perf_counter()
    ov_model = ov.convert_model(qat, example_input=images[:1])
    xml = os.path.join(args.out, "qat_int8.xml")
    ov.save_model(ov_model, xml)  # compress_to_fp16=True by default (only float consts; FQ stays)
    n_fq = sum(op.get_type_name() == "FakeQuantize" for op in ov_model.get_ops())
    tick(f"OpenVINO IR -> {xml} ({n_fq} FakeQuantize)", t)
    compiled = ov.Core().compile_model(xml, "CPU")
    cmp("OpenVINO CPU (int8) vs torch QAT", compiled(x_test.numpy())[0], ref)
    req = compiled.create_infer_request()
    x1 = images[:1].numpy()
    for _ in range(10):
        req.infer({0: x1})
    t = time.perf_counter()
    for _ in range(50):
        req.infer({0: x1})
    print(f"    OpenVINO CPU latency bs1 64x64: {(time.perf_counter() - t) / 50 * 1e3:.2f} ms")

    # ---- 5b. standard Q/DQ ONNX
    t = time.perf_counter()
    onnx_path = os.path.join(args.out, "qat_qdq.onnx")
    export_qdq_onnx(qat, images[:1], onnx_path)
    tick(f"Q/DQ ONNX -> {onnx_path} ({os.path.getsize(onnx_path) / 1e6:.1f} MB)", t)
    inspect_qdq(onnx_path)
    t = time.perf_counter()
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": x_test.numpy()})[0]
    tick("onnxruntime load+run (32 imgs)", t)
    cmp("onnxruntime Q/DQ vs torch QAT", y, ref)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    y0 = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"]).run(None, {"x": x_test.numpy()})[0]
    cmp("onnxruntime (no graph opts, pure float Q/DQ) vs torch QAT", y0, ref)
    tick("TOTAL", T0)


if __name__ == "__main__":
    main()
