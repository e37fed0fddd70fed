"""Helpers for the bundle tamper tests: a signed copy of the tiny run's bundle, foreign models, manifest rewrites
and a snapshot to check that a refusal changed nothing."""

import hashlib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from edgekd.integrity import DIGEST, MANIFEST, keygen, manifest_digest, plain_name, sha256


def signed_bundle(tiny_run, tmp: Path) -> SimpleNamespace:
    """tiny_run's run folder copied and rerun with ``compress --sign``: every stage is reused and the bundle (and
    its tarball) signed with a key pair made here."""
    priv, pub = keygen(tmp / "builder")
    _, other = keygen(tmp / "other")
    run = tmp / "runs" / "tiny"
    shutil.copytree(tiny_run["out"], run)
    cmd = [*tiny_run["cmd"][:-1], str(run), "--sign", str(priv)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    bundle = run / "bundle"
    digest = manifest_digest(read(bundle))
    return SimpleNamespace(bundle=bundle, tarball=run / "tiny.tar.gz", priv=priv, pub=pub, other=other,
                           digest=digest, stdout=res.stdout, foreign=foreign_models(tmp / "foreign", bundle),
                           cmd=cmd[:-2])


def foreign_models(out: Path, bundle: Path) -> dict[str, Path]:
    """Models that are not the bundle's but fit its input and output: ``{"onnx": .onnx, "xml": .xml}`` (+ .bin)."""
    import onnx
    import openvino as ov
    from onnx import TensorProto, helper, numpy_helper

    out.mkdir()
    m = read(bundle)
    classes = m["output"]["shape"][1]
    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((3, classes)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["f"]),
         helper.make_node("MatMul", ["f", "w"], ["logits"])], "foreign",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, m["input"]["shape"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, out / "foreign.onnx")
    ov.save_model(ov.convert_model(str(out / "foreign.onnx")), str(out / "foreign.xml"), compress_to_fp16=False)
    return {"onnx": out / "foreign.onnx", "xml": out / "foreign.xml"}


def copy(built: SimpleNamespace, dest: Path) -> Path:
    """A copy of the signed bundle at ``dest/dev/tiny`` (so ``../../x`` from inside it is ``dest/x``)."""
    b = dest / "dev" / "tiny"
    shutil.copytree(built.bundle, b)
    return b


def read(b: Path) -> dict:
    return json.loads((b / MANIFEST).read_text())


def write(b: Path, m: dict, digest: bool = False, files: bool = False) -> None:
    """Rewrite manifest.json, as an attacker without the builder's key can: ``files=True`` recomputes the sha256
    of each listed file, ``digest=True`` rewrites manifest.sha256 to match (manifest.sig is left as it was)."""
    if files:
        m["files"] = {n: sha256(b / n) if plain_name(n) and (b / n).is_file() else h for n, h in m["files"].items()}
    (b / MANIFEST).write_text(json.dumps(m, indent=2))
    if digest:
        (b / DIGEST).write_text(manifest_digest(m) + "\n")


def swap_model(b: Path, name: str, foreign: dict[str, Path]) -> None:
    """Replace the bundle's model ``name`` (and an OpenVINO model's .bin) with a foreign one."""
    src = foreign["xml" if name.endswith(".xml") else "onnx"]
    shutil.copyfile(src, b / name)
    if name.endswith(".xml"):
        shutil.copyfile(src.with_suffix(".bin"), (b / name).with_suffix(".bin"))


class Evil:
    """Loading a pickle of this prints 'pwned': the refusal tests check it never appears."""

    def __reduce__(self):
        return (print, ("pwned",))


def pickled_samples(path: Path, m: dict) -> None:
    np.savez(path, input=np.array([Evil()], dtype=object),
             **{f"output:{x['file']}": np.zeros((1, 10), np.float32) for x in m["models"]})


def snapshot(root: Path) -> dict:
    """Every entry under ``root`` (links not followed): kind, size, mtime and content hash."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None
            snap[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, digest)
    return snap
