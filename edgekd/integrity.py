"""Bundle integrity, one implementation for `edgekd compress` / `verify-bundle` / `bench` and the on-device runner
(this module ships inside run.pyz).

A bundle is trusted only through its manifest: ``manifest.json`` lists every other file with its sha256
(``files``), and the manifest itself is covered by

- ``manifest.sha256``: the sha256 of the canonical manifest (JSON, sorted keys, no whitespace, UTF-8). Inside the
  bundle it catches corruption and careless edits; compared with a value the user carries apart from the bundle
  (``--expect DIGEST``) it also catches a swapped or rewritten bundle;
- ``manifest.sig`` (optional): an ed25519 signature of the same canonical bytes by the builder's key, checked with
  ``--key PUB``, for an attacker who can rewrite every file of the bundle.

Standard library only at import time: numpy is imported to read the samples, and ``cryptography`` only when a
key is used, so a device needs nothing extra for the digest checks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from edgekd.errors import BackendError, ConfigError, IntegrityError
from edgekd.formats import FORMATS

SCHEMA_VERSION = 2
MANIFEST, DIGEST, SIGNATURE = "manifest.json", "manifest.sha256", "manifest.sig"
META = (MANIFEST, DIGEST, SIGNATURE)  # beside the manifest and outside its `files`: they describe the manifest
# the fields the runner and verify-bundle read; every other field is covered by the digest alone
REQUIRED = ("schema_version", "task", "target", "input", "output", "preprocess", "labels", "models", "recommended",
            "samples", "files")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def canonical(manifest: dict) -> bytes:
    """The bytes that are digested and signed: ``json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` encoded as UTF-8, so re-indenting manifest.json changes neither."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def manifest_digest(manifest: dict) -> str:
    return hashlib.sha256(canonical(manifest)).hexdigest()


def plain_name(name: Any) -> bool:
    """A file name directly inside the bundle folder: no separators, drive letters, ``.``/``..`` or NUL."""
    return (isinstance(name, str) and name not in ("", ".", "..")
            and not any(c in name for c in ("/", "\\", ":", "\x00")))


def parse_expect(value: str | None) -> str | None:
    """``--expect``: the 64 hex digits printed at build time (``sha256:`` prefix and case ignored)."""
    if value is None:
        return None
    v = value.strip().lower().removeprefix("sha256:")
    if not _HEX64.fullmatch(v):
        raise ConfigError(f"--expect {value!r} is not a sha256 digest (64 hex digits, as printed by compress and "
                          f"stored in {DIGEST})")
    return v


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise BackendError("signature keys need the cryptography package: pip install 'cryptography>=43' (the "
                           "digest check, --expect, needs nothing extra)") from exc
    return serialization, ed25519


def _key_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"key {path}: cannot be read ({exc.strerror or exc})") from exc


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def load_public_key(path: Path):
    """An ed25519 public key from a PEM file (``keygen``'s ``.pub``) or an OpenSSH ``ssh-ed25519`` line."""
    serialization, ed25519 = _crypto()
    data = _key_bytes(path)
    try:
        if data.startswith(b"ssh-ed25519 "):
            key = serialization.load_ssh_public_key(data)
        else:
            key = serialization.load_pem_public_key(data)
    except Exception as exc:  # noqa: BLE001 - cryptography raises ValueError or UnsupportedAlgorithm
        raise ConfigError(f"key {path}: not a PEM or OpenSSH public key ({_first_line(exc)})") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"key {path}: a {type(key).__name__}, not an ed25519 public key")
    return key


def load_private_key(path: Path):
    """An unencrypted ed25519 private key from a PEM (PKCS8, as ``edgekd keygen`` writes) or OpenSSH file."""
    serialization, ed25519 = _crypto()
    data = _key_bytes(path)
    try:
        if data.startswith(b"-----BEGIN OPENSSH PRIVATE KEY"):
            key = serialization.load_ssh_private_key(data, None)
        else:
            key = serialization.load_pem_private_key(data, None)
    except Exception as exc:  # noqa: BLE001 - ValueError, TypeError (encrypted) or UnsupportedAlgorithm
        raise ConfigError(f"key {path}: not an unencrypted PEM or OpenSSH private key ({_first_line(exc)})") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"key {path}: a {type(key).__name__}, not an ed25519 private key")
    return key


def keygen(out: Path) -> tuple[Path, Path]:
    """A new ed25519 key pair: ``OUT`` (private, PEM PKCS8, mode 0600) and ``OUT.pub`` (public, PEM). Never
    overwrites a file."""
    import os

    serialization, ed25519 = _crypto()
    pub = out.with_name(out.name + ".pub")
    for p in (out, pub):
        if p.exists() or p.is_symlink():
            raise ConfigError(f"{p} exists; keys are never overwritten, choose another name")
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent} is not a folder")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return out, pub


def sign(manifest: dict, key) -> str:
    """The text of ``manifest.sig``: base64 of the ed25519 signature of the canonical manifest."""
    return base64.b64encode(key.sign(canonical(manifest))).decode("ascii") + "\n"


def _read_small(path: Path, limit: int = 4096) -> str:
    with open(path, "rb") as fh:
        return fh.read(limit).decode("ascii", errors="replace").strip()


def _signature(path: Path, label: str) -> bytes:
    try:
        sig = base64.b64decode(_read_small(path / SIGNATURE), validate=True)
    except ValueError:
        sig = b""
    if len(sig) != 64:
        raise IntegrityError(f"{label}: {SIGNATURE} is damaged (not the base64 of a 64-byte ed25519 signature)")
    return sig


def load_manifest(path: Path, label: str) -> dict:
    mf = path / MANIFEST
    if not mf.is_file() or mf.is_symlink():
        if mf.is_symlink() or mf.exists():
            raise IntegrityError(f"{label}: {MANIFEST} is a link or not a file")
        if (path / DIGEST).exists() or (path / "run.pyz").exists():
            raise IntegrityError(f"{label}: {MANIFEST} is missing")
        raise ConfigError(f"{label}: no {MANIFEST}; not an edgekd bundle")
    try:
        manifest = json.loads(mf.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise IntegrityError(f"{label}: {MANIFEST} is not valid JSON ({_first_line(exc)})") from exc
    if not isinstance(manifest, dict):
        raise IntegrityError(f"{label}: {MANIFEST} is not a JSON object")
    return manifest


def check_structure(manifest: dict, label: str) -> None:
    """The fields the runner reads, and every name in them a plain file name listed in ``files``."""
    where = f"{label}: {MANIFEST}"
    v = manifest.get("schema_version")
    if v != SCHEMA_VERSION:
        old = isinstance(v, int) and not isinstance(v, bool) and 0 < v < SCHEMA_VERSION
        raise IntegrityError(f"{where} field 'schema_version' is {v!r}, not {SCHEMA_VERSION}"
                             + ("; rebuild the bundle with this edgekd (older bundles carry no digest)" if old else ""))
    for k in REQUIRED:
        if k not in manifest:
            raise IntegrityError(f"{where} has no field {k!r} (required)")
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise IntegrityError(f"{where} field 'files' must map each file of the bundle to its sha256")
    for name, digest in files.items():
        if not plain_name(name) or name in META:
            raise IntegrityError(f"{where} field 'files' lists {name!r}, which is not a plain file name of the "
                                 f"bundle" + (f" ({name} is kept outside the listing)" if name in META else ""))
        if not (isinstance(digest, str) and _HEX64.fullmatch(digest)):
            raise IntegrityError(f"{where} field 'files' gives {name!r} no sha256 (64 lower-case hex digits)")
    models = manifest["models"]
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) for m in models):
        raise IntegrityError(f"{where} field 'models' must be a non-empty list of model entries")
    for i, m in enumerate(models):
        f = m.get("file")
        if not plain_name(f) or f not in files:
            raise IntegrityError(f"{where} field 'models[{i}].file' {f!r} is not a file name listed in 'files' "
                                 f"(models load only from inside the bundle)")
        if not isinstance(m.get("format"), str):
            raise IntegrityError(f"{where} field 'models[{i}].format' is missing")
        fmt = FORMATS.get(m["format"])
        if fmt is not None and fmt.bundled and any(Path(f).with_suffix(s).name not in files for s in fmt.side):
            raise IntegrityError(f"{where} field 'models[{i}].file' {f!r} has no weights file listed in 'files'")
        if "engine" in m and not plain_name(m["engine"]):
            raise IntegrityError(f"{where} field 'models[{i}].engine' {m['engine']!r} is not a plain file name")
    if manifest["recommended"] not in [m["file"] for m in models]:
        raise IntegrityError(f"{where} field 'recommended' {manifest['recommended']!r} is not one of its models")
    s = manifest["samples"]
    if not isinstance(s, dict) or not plain_name(s.get("file")) or s["file"] not in files:
        raise IntegrityError(f"{where} field 'samples' must name a samples file listed in 'files'")
    labels = manifest["labels"]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise IntegrityError(f"{where} field 'labels' must be a non-empty list of class names")
    shape = manifest["output"].get("shape") if isinstance(manifest["output"], dict) else None
    if not (isinstance(shape, list) and len(shape) >= 2 and shape[1] == len(labels)):
        raise IntegrityError(f"{where} field 'labels' names {len(labels)} classes, field 'output' shape "
                             f"{shape!r} does not")
    if manifest["task"] not in ("classify", "segment"):
        raise IntegrityError(f"{where} field 'task' {manifest['task']!r} is not classify or segment")
    for k in ("preprocess", "input", "output"):
        if not isinstance(manifest[k], dict):
            raise IntegrityError(f"{where} field {k!r} must be an object")


def check_digest(path: Path, manifest: dict, label: str, expect: str | None) -> str:
    digest = manifest_digest(manifest)
    f = path / DIGEST
    if not f.is_file() or f.is_symlink():
        raise IntegrityError(f"{label}: {DIGEST} is missing (it holds the digest of {MANIFEST})")
    if _read_small(f) != digest:
        raise IntegrityError(f"{label}: {MANIFEST} does not match {DIGEST} (the manifest was changed after the build, "
                             f"or {DIGEST} is damaged)")
    if expect is not None and digest != expect:
        raise IntegrityError(f"{label}: {MANIFEST} has digest {digest}, not the expected {expect} (another build, "
                             f"or a rewritten bundle)")
    return digest


def check_signature(path: Path, manifest: dict, label: str, key) -> bool:
    """True when ``key`` verified ``manifest.sig``; without a key a present signature is only checked for form."""
    if key is None:
        if (path / SIGNATURE).exists():
            _signature(path, label)
        return False
    if not (path / SIGNATURE).is_file():
        raise IntegrityError(f"{label}: {SIGNATURE} is missing: the bundle is unsigned, and --key asks for a "
                             f"signature (build it with compress --sign KEY)")
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(_signature(path, label), canonical(manifest))
    except InvalidSignature as exc:
        raise IntegrityError(f"{label}: {SIGNATURE} does not verify {MANIFEST} with this key (the manifest was "
                             f"changed, or signed with another key)") from exc
    return True


def check_files(path: Path, manifest: dict, label: str) -> None:
    """``files`` lists every file of the bundle and nothing else, and each one's sha256 matches."""
    files = manifest["files"]
    for p in sorted(path.iterdir()):
        kind = "link" if p.is_symlink() else "folder" if p.is_dir() else None if p.is_file() else "special file"
        if kind:
            raise IntegrityError(f"{label}: {p.name!r} is a {kind}; a bundle holds plain files only")
        if p.name not in files and p.name not in META:
            raise IntegrityError(f"{label}: {p.name!r} is not listed in {MANIFEST} field 'files' (added after the "
                                 f"build)")
    for name, digest in files.items():
        if not (path / name).is_file():
            raise IntegrityError(f"{label}: {name!r} listed in {MANIFEST} is missing")
        if sha256(path / name) != digest:
            raise IntegrityError(f"{label}: {name!r} does not match its sha256 in {MANIFEST} (changed or truncated)")


def load_samples(path: Path, manifest: dict, label: str):
    """The stored sample inputs and each model's outputs, read without pickle: ``(x, {model file: outputs})``."""
    import zipfile

    import numpy as np

    name = manifest["samples"]["file"]
    with open(path / name, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":  # else numpy takes any other bytes for a pickle
            raise IntegrityError(f"{label}: {name!r} is not an .npz archive")
    try:
        with np.load(path / name, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise IntegrityError(f"{label}: {name!r} holds a pickled (object) array; refused") from exc
        raise IntegrityError(f"{label}: {name!r} is not a readable .npz ({_first_line(exc)})") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise IntegrityError(f"{label}: {name!r} is not a readable .npz ({_first_line(exc)})") from exc
    x = arrays.get("input")
    if x is None or x.dtype.kind != "f" or x.ndim != 4 or not len(x):
        raise IntegrityError(f"{label}: {name!r} has no float 'input' batch")
    outs = {}
    for m in manifest["models"]:
        ref = arrays.get(f"output:{m['file']}")
        if ref is None or ref.dtype.kind not in "fiu" or len(ref) != len(x):
            raise IntegrityError(f"{label}: {name!r} has no stored outputs for {m['file']!r}")
        outs[m["file"]] = ref
    return x, outs


def verify_bundle_dir(path: Path, expect: str | None = None, key: Path | None = None,
                      label: str | None = None) -> dict:
    """Every check short of running the models, before anything in the bundle is loaded: manifest structure
    and names, its digest (and ``expect``), its signature (with ``key``, a public key file), the listing and
    sha256 of every file, and a pickle-free read of the samples. Returns the manifest.

    Raises:
        IntegrityError: the bundle fails a check (one line naming the file or field).
        ConfigError: not a bundle, a malformed ``expect`` or an unusable key file.
        BackendError: ``key`` given where ``cryptography`` is not installed.
    """
    label = label or str(path)
    expect = parse_expect(expect)
    pub = load_public_key(key) if key is not None else None
    manifest = load_manifest(path, label)
    check_structure(manifest, label)
    check_digest(path, manifest, label, expect)
    check_signature(path, manifest, label, pub)
    check_files(path, manifest, label)
    load_samples(path, manifest, label)
    return manifest
