"""Bundle integrity (issue 17): a tamper matrix over every manifest field, every file and every model, each refused
by both `edgekd verify-bundle` and the runner (`python -m edgekd.device_runner`'s main, the code inside run.pyz)
with exit code 9 and one line naming the file or field, leaving the bundle exactly as it was."""

import base64
import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from edgekd.errors import IntegrityError
from edgekd.integrity import DIGEST, MANIFEST, SIGNATURE, load_private_key, manifest_digest

from .bundle_tamper import copy, pickled_samples, read, signed_bundle, snapshot, swap_model, write

pytestmark = pytest.mark.slow  # the module needs the tiny run (a real compress) and re-signs its bundle

FIELDS = ("schema_version", "created", "task", "target", "input", "output", "preprocess", "labels", "models",
          "recommended", "deploy", "metrics", "student", "teacher", "versions", "quantization", "samples", "runner",
          "files")
FILES = ("report.md", "run.pyz", "samples.npz", "student-int8.bin", "student-int8.onnx", "student-int8.xml")
MODELS = ("student-int8.onnx", "student-int8.xml")


@pytest.fixture(scope="module")
def built(tiny_run, tmp_path_factory):
    return signed_bundle(tiny_run, tmp_path_factory.mktemp("integrity"))


def verify_cli(target, *args, monkeypatch, capsys):
    """`edgekd verify-bundle` through the CLI's own entry point (its error handling and exit codes)."""
    from edgekd import cli

    monkeypatch.setattr(sys, "argv", ["edgekd", "verify-bundle", str(target), *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def runner(target, *args, capsys):
    from edgekd.device_runner import main

    code = main([str(target), "--bench", "--iters", "1", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def refused(target, args, texts, monkeypatch, capsys, code=9, root=None, tools=("verify-bundle", "runner")):
    """Each tool exits ``code`` with exactly one line on stderr (nothing on stdout) that contains one of
    ``texts``, and nothing under ``root`` (default: the bundle) changes."""
    texts = (texts,) if isinstance(texts, str) else texts
    root = root or target
    before = snapshot(root)
    for tool in tools:
        if tool == "verify-bundle":
            rc, out, err = verify_cli(target, *args, monkeypatch=monkeypatch, capsys=capsys)
        else:
            rc, out, err = runner(target, *args, capsys=capsys)
        lines = err.strip().splitlines()
        prefix = "edgekd: error: " if tool == "verify-bundle" else "edgekd.device_runner: error: "
        assert rc == code, (tool, err)
        assert len(lines) == 1 and lines[0].startswith(prefix), (tool, err)
        assert any(t in lines[0] for t in texts), (tool, lines[0])
        assert out == "" and "Traceback" not in err, (tool, out, err)
    assert snapshot(root) == before


def changed(v):
    """A different value of the same kind (lists reversed: the issue's reversed labels)."""
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return v + 1
    if isinstance(v, str):
        return v + "x"
    if isinstance(v, list):
        return v[::-1] if len(v) > 1 and v != v[::-1] else [*v, "x"]
    if isinstance(v, dict):
        return {**v, "x": "1"}
    return "x"


def edit(m, field, how):
    if how == "removed":
        del m[field]
    else:
        m[field] = changed(m[field])


def test_a_rerun_after_signing_reuses_the_signed_bundle(built):
    """Signing changes the tarball after the bundle stage ran; edgekd re-hashes its record, so the next rerun
    reuses the bundle (verified) instead of rebuilding it unsigned."""
    res = subprocess.run(built.cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "bundle: reused (options unchanged, outputs verified)" in res.stderr
    assert (built.bundle / SIGNATURE).is_file() and f"manifest sha256 {built.digest}" in res.stdout


def test_untouched_signed_bundle_passes_both_with_expect_and_key(built, monkeypatch, capsys):
    assert f"manifest sha256 {built.digest} (signed" in built.stdout
    assert set(read(built.bundle)) == set(FIELDS)  # the matrix below covers every field
    assert sorted(p.name for p in built.bundle.iterdir()) == sorted((*FILES, MANIFEST, DIGEST, SIGNATURE))
    with tarfile.open(built.tarball) as tf:
        assert {"tiny/manifest.sig", "tiny/manifest.sha256"} <= set(tf.getnames())
    before = snapshot(built.bundle)
    for target in (built.bundle, built.tarball):
        rc, out, err = verify_cli(target, "--expect", built.digest.upper(), "--key", built.pub,
                                  monkeypatch=monkeypatch, capsys=capsys)
        assert rc == 0, err
        assert "signature verified" in out and built.digest in out and "reproduces its 4 stored" in out
        rc, out, err = runner(target, "--expect", f"sha256:{built.digest}", "--key", built.pub, "--json",
                              capsys=capsys)
        assert rc == 0 and json.loads(out)["fps"] > 0, err
    assert snapshot(built.bundle) == before


@pytest.mark.parametrize("how", ["changed", "removed"])
@pytest.mark.parametrize("field", FIELDS)
def test_every_manifest_field_edited_is_refused(built, tmp_path, monkeypatch, capsys, field, how):
    b = copy(built, tmp_path)
    m = read(b)
    edit(m, field, how)
    write(b, m)
    refused(b, (), (f"'{field}'", "manifest.json does not match manifest.sha256"), monkeypatch, capsys)


@pytest.mark.parametrize("how", ["changed", "removed"])
@pytest.mark.parametrize("field", FIELDS)
def test_every_field_rewritten_with_its_digest_is_refused_by_expect_and_key(built, tmp_path, monkeypatch, capsys,
                                                                           field, how):
    """An attacker who rewrites manifest.sha256 too: the digest carried apart (--expect) and the signature catch it."""
    b = copy(built, tmp_path)
    m = read(b)
    edit(m, field, how)
    write(b, m, digest=True)
    refused(b, ("--expect", built.digest), (f"'{field}'", "manifest.json has digest"), monkeypatch, capsys)
    refused(b, ("--key", built.pub), (f"'{field}'", "manifest.sig does not verify"), monkeypatch, capsys)


def _flip_signature(b):
    sig = bytearray(base64.b64decode((b / SIGNATURE).read_text()))
    sig[0] ^= 1
    (b / SIGNATURE).write_text(base64.b64encode(bytes(sig)).decode() + "\n")


def _append(b, name):
    with open(b / name, "ab") as fh:
        fh.write(b"0")


# (id, tamper(bundle, built), extra args, text in the error line)
FILE_CASES = [
    *[(f"{f} changed", lambda b, _, f=f: _append(b, f), (), f"'{f}' does not match its sha256") for f in FILES],
    *[(f"{f} removed", lambda b, _, f=f: (b / f).unlink(), (), f"'{f}' listed in manifest.json is missing")
      for f in FILES],
    ("manifest.json changed", lambda b, _: _append(b, MANIFEST), (), "manifest.json is not valid JSON"),
    ("manifest.json removed", lambda b, _: (b / MANIFEST).unlink(), (), "manifest.json is missing"),
    ("manifest.json a link", lambda b, _: ((b / MANIFEST).rename(b.parent / "m.json"),
                                           (b / MANIFEST).symlink_to(b.parent / "m.json")), (),
     "manifest.json is a link"),
    ("manifest.sha256 changed", lambda b, _: _append(b, DIGEST), (), "manifest.json does not match manifest.sha256"),
    ("manifest.sha256 removed", lambda b, _: (b / DIGEST).unlink(), (), "manifest.sha256 is missing"),
    ("manifest.sig changed", lambda b, _: _flip_signature(b), ("--key", "PUB"), "manifest.sig does not verify"),
    ("manifest.sig damaged", lambda b, _: _append(b, SIGNATURE), (), "manifest.sig is damaged"),
    ("manifest.sig removed", lambda b, _: (b / SIGNATURE).unlink(), ("--key", "PUB"), "manifest.sig is missing"),
    ("file added", lambda b, built: (b / "extra.onnx").write_bytes(built.foreign["onnx"].read_bytes()), (),
     "'extra.onnx' is not listed in manifest.json"),
    ("hidden file added", lambda b, _: (b / ".DS_Store").write_bytes(b"x"), (), "'.DS_Store' is not listed"),
    ("folder added", lambda b, _: (b / "sub").mkdir(), (), "'sub' is a folder"),
    ("link added", lambda b, _: (b / "link.onnx").symlink_to(b / "student-int8.onnx"), (), "'link.onnx' is a link"),
]


@pytest.mark.parametrize("tamper,args,text", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_every_file_changed_removed_or_added_is_refused(built, tmp_path, monkeypatch, capsys, tamper, args, text):
    b = copy(built, tmp_path)
    tamper(b, built)
    refused(b, [built.pub if a == "PUB" else a for a in args], text, monkeypatch, capsys, root=tmp_path)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_swapped_is_refused(built, tmp_path, monkeypatch, capsys, model):
    b = copy(built, tmp_path)
    swap_model(b, model, built.foreign)
    refused(b, (), ("'student-int8.bin' does not match", f"'{model}' does not match"), monkeypatch, capsys)
    # with every hash and the digest rewritten: verify-bundle's sample replay, --expect and --key still refuse
    write(b, read(b), digest=True, files=True)
    refused(b, (), (f"'{model}' does not reproduce", f"'{model}' gives outputs of shape"), monkeypatch, capsys,
            tools=("verify-bundle",))
    refused(b, ("--expect", built.digest), "manifest.json has digest", monkeypatch, capsys)
    refused(b, ("--key", built.pub), "manifest.sig does not verify", monkeypatch, capsys)


def _outside_model(b, built, name):
    m = read(b)
    (b.parent.parent / "x.onnx").write_bytes(built.foreign["onnx"].read_bytes())
    m["models"][0].update(file=name, format="onnx")
    m["recommended"] = name
    return m


def _drop_model_and_samples(b, built, drop_samples):
    """The issue's case: a foreign ONNX in place of the model, its `files` entry (and the samples) removed."""
    onnx_model = next(x["file"] for x in read(b)["models"] if x["format"] == "onnx")
    swap_model(b, onnx_model, built.foreign)
    m = read(b)
    del m["files"][onnx_model]
    if drop_samples:
        del m["samples"]
        m["files"].pop("samples.npz")
        (b / "samples.npz").unlink()
    return m


def _samples(b, kind):
    m = read(b)
    if kind == "pickled":
        pickled_samples(b / "samples.npz", m)
    elif kind == "not npz":
        (b / "samples.npz").write_bytes(b"\x80\x04garbage")
    else:
        np.savez(b / "samples.npz", input=np.zeros((1, 3, 64, 64), np.float32))
    return m


# manifests an attacker without the key can write with consistent hashes and digest: refused without any flag
STRUCTURE_CASES = [
    ("model outside the bundle", lambda b, bt: _outside_model(b, bt, "../../x.onnx"),
     "'models[0].file' '../../x.onnx'"),
    ("model by absolute path", lambda b, bt: _outside_model(b, bt, str(b.parent.parent / "x.onnx")),
     "'models[0].file'"),
    ("model in a subfolder", lambda b, bt: _outside_model(b, bt, "sub/x.onnx"), "'models[0].file' 'sub/x.onnx'"),
    ("recommended outside", lambda b, _: {**read(b), "recommended": "../../x.onnx"}, "'recommended'"),
    ("samples outside", lambda b, _: {**read(b), "samples": {"file": "../samples.npz"}}, "'samples'"),
    ("engine outside", lambda b, _: {**(m := read(b)), "models": [{**m["models"][0], "engine": "../x.engine"},
                                                                  *m["models"][1:]]}, "'models[0].engine'"),
    ("files entry outside", lambda b, _: {**(m := read(b)), "files": {**m["files"], "../x.onnx": "0" * 64}},
     "'files' lists '../x.onnx'"),
    ("files lists the signature", lambda b, _: {**(m := read(b)), "files": {**m["files"], SIGNATURE: "0" * 64}},
     "'files' lists 'manifest.sig'"),
    ("foreign model unlisted, no samples", lambda b, bt: _drop_model_and_samples(b, bt, True), "no field 'samples'"),
    ("foreign model unlisted", lambda b, bt: _drop_model_and_samples(b, bt, False),
     "is not a file name listed in 'files'"),
    ("labels cut short", lambda b, _: {**(m := read(b)), "labels": m["labels"][:3]}, "'labels' names 3 classes"),
    ("schema 1", lambda b, _: {**read(b), "schema_version": 1}, "rebuild the bundle"),
    ("pickled samples", lambda b, _: _samples(b, "pickled"), "'samples.npz' holds a pickled (object) array"),
    ("samples not an npz", lambda b, _: _samples(b, "not npz"), "'samples.npz' is not an .npz archive"),
    ("samples without outputs", lambda b, _: _samples(b, "no outputs"), "'samples.npz' has no stored outputs"),
]


@pytest.mark.parametrize("make,text", [c[1:] for c in STRUCTURE_CASES], ids=[c[0] for c in STRUCTURE_CASES])
def test_consistently_rewritten_bad_manifests_are_refused_without_flags(built, tmp_path, monkeypatch, capsys,
                                                                        make, text):
    b = copy(built, tmp_path)
    write(b, make(b, built), digest=True, files=True)
    refused(b, (), text, monkeypatch, capsys, root=tmp_path)
    assert "pwned" not in capsys.readouterr().out


@pytest.mark.parametrize("args,code,text", [
    (("--expect", "0" * 64), 9, "manifest.json has digest"),
    (("--expect", "abc"), 2, "--expect 'abc' is not a sha256 digest"),
    (("--key", "OTHER"), 9, "manifest.sig does not verify"),
    (("--key", "PRIV"), 2, "not a PEM or OpenSSH public key"),
    (("--key", "MISSING"), 2, "cannot be read"),
], ids=["wrong expect", "malformed expect", "other key", "private key as --key", "missing key file"])
def test_wrong_expect_or_key_is_refused(built, tmp_path, monkeypatch, capsys, args, code, text):
    keys = {"OTHER": built.other, "PRIV": built.priv, "MISSING": tmp_path / "none.pub"}
    refused(built.bundle, [str(keys.get(a, a)) for a in args], text, monkeypatch, capsys, code=code)


def test_tampered_tarball_is_refused_naming_the_tarball_and_file(built, tmp_path, monkeypatch, capsys):
    b = copy(built, tmp_path)
    _append(b, "report.md")
    tb = tmp_path / "tiny.tar.gz"
    with tarfile.open(tb, "w:gz") as tf:
        tf.add(b, arcname="tiny")
    refused(tb, ("--key", built.pub), (f"{tb}: 'report.md' does not match",), monkeypatch, capsys, root=tmp_path)


def test_in_bundle_digest_alone_does_not_stop_a_rewrite(built, tmp_path, monkeypatch, capsys):
    """What docs/bundles.md says: reversed labels with a rewritten manifest.sha256 pass without --expect or --key (the
    answer changes), and are refused with either."""
    b = copy(built, tmp_path)
    m = read(b)
    m["labels"] = m["labels"][::-1]
    write(b, m, digest=True)
    rc, _, err = verify_cli(b, monkeypatch=monkeypatch, capsys=capsys)
    assert rc == 0, err
    rc, out, err = runner(b, capsys=capsys)
    assert rc == 0, err
    refused(b, ("--expect", built.digest), "manifest.json has digest", monkeypatch, capsys)
    refused(b, ("--key", built.pub), "manifest.sig does not verify", monkeypatch, capsys)


NO_CRYPTO = ("import sys, runpy; sys.modules.update(cryptography=None, torch=None, timm=None); "
             "sys.argv = [sys.argv[1]] + sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def test_run_pyz_checks_digest_key_and_names_and_needs_cryptography_only_for_key(built, tmp_path):
    """The bundle's own run.pyz (in a process without cryptography or torch) runs the same checks."""
    b = copy(built, tmp_path)
    pyz = tmp_path / "run.pyz"
    pyz.write_bytes((b / "run.pyz").read_bytes())  # outside the bundle: the bundle itself gets edited below

    def run(*args):
        res = subprocess.run([sys.executable, "-c", NO_CRYPTO, str(pyz), str(b), "--bench", "--iters", "1",
                              *map(str, args)], capture_output=True, text=True)
        return res.returncode, res.stderr.strip().splitlines()

    rc, err = run("--expect", built.digest)
    assert rc == 0, err
    rc, err = run("--key", built.pub)
    assert rc == 5 and len(err) == 1 and "need the cryptography package" in err[0], err
    write(b, _outside_model(b, built, "../../x.onnx"), digest=True, files=True)
    rc, err = run()
    assert rc == 9 and len(err) == 1 and "'models[0].file' '../../x.onnx'" in err[0], err
    rc, err = run("--expect", built.digest)
    assert rc == 9 and len(err) == 1 and "'models[0].file'" in err[0], err


def test_keygen_cli_and_openssh_keys(built, tmp_path, monkeypatch, capsys):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from edgekd.bundle import sign_bundle

    res = subprocess.run([sys.executable, "-m", "edgekd", "keygen", str(tmp_path / "k")], capture_output=True,
                         text=True)
    assert res.returncode == 0 and (tmp_path / "k.pub").is_file(), res.stderr
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    before = snapshot(tmp_path)
    again = subprocess.run([sys.executable, "-m", "edgekd", "keygen", str(tmp_path / "k")], capture_output=True,
                           text=True)
    assert again.returncode == 2 and "exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before
    # an OpenSSH ed25519 pair (ssh-keygen -t ed25519) signs and verifies too
    key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "id").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                    serialization.NoEncryption()))
    (tmp_path / "id.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                                    serialization.PublicFormat.OpenSSH))
    b = copy(built, tmp_path / "b")
    assert sign_bundle(b, load_private_key(tmp_path / "id")) == manifest_digest(read(b))
    rc, out, err = verify_cli(b, "--key", tmp_path / "id.pub", monkeypatch=monkeypatch, capsys=capsys)
    assert rc == 0 and "signature verified" in out, err
    refused(b, ("--key", built.pub), "manifest.sig does not verify", monkeypatch, capsys)
    (b / "report.md").write_text("changed")  # never sign a bundle changed after its build
    with pytest.raises(IntegrityError, match="'report.md' does not match"):
        sign_bundle(b, load_private_key(tmp_path / "id"))
