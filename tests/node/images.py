"""The images the e2e node runs, made here (no registry is reachable): the pod sandbox image and
the operator's image built from the project's Dockerfile (``hack/image/build.sh``)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def operator_image_archive(*, timeout: float = 1800) -> Path:
    """The operator image as an OCI archive: ``hack/image/build.sh`` (buildah on a debootstrap base;
    a cache hit when Dockerfile, lock file, pyproject and operator/ are unchanged)."""
    result = subprocess.run(
        ["bash", str(REPO / "hack" / "image" / "build.sh")],
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=True,
        env={**os.environ, "IMAGE": "incident-commander:e2e"},
    )
    return Path(result.stdout.strip().splitlines()[-1])


def _blob(layout: dict[str, bytes], data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    layout[f"blobs/sha256/{digest.removeprefix('sha256:')}"] = data
    return {"digest": digest, "size": len(data)}


def pause_image_archive(pause_binary: Path, cache_dir: Path, reference: str) -> Path:
    """An OCI archive holding one file, ``/pause`` (``cmd/pause``, static): the sandbox image
    containerd starts for every pod. Written directly (it is four JSON documents and a tar)."""
    binary = pause_binary.read_bytes()
    key = hashlib.sha256(binary + reference.encode()).hexdigest()[:16]
    archive = cache_dir / f"pause-{key}.oci.tar"
    if archive.exists():
        return archive
    layer_buffer = io.BytesIO()
    with tarfile.open(fileobj=layer_buffer, mode="w", format=tarfile.PAX_FORMAT) as layer_tar:
        info = tarfile.TarInfo("pause")
        info.size, info.mode, info.mtime = len(binary), 0o755, 0
        layer_tar.addfile(info, io.BytesIO(binary))
    layer = layer_buffer.getvalue()
    layout: dict[str, bytes] = {}
    layer_ref = _blob(layout, layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [layer_ref["digest"]]},
    }
    config_ref = _blob(layout, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_ref},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_ref}],
    }
    manifest_ref = _blob(layout, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_ref,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"org.opencontainers.image.ref.name": reference},
            }
        ],
    }
    layout["oci-layout"] = json.dumps({"imageLayoutVersion": "1.0.0"}).encode()
    layout["index.json"] = json.dumps(index).encode()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_suffix(".tmp")
    with tarfile.open(tmp, mode="w") as out:
        for name, data in sorted(layout.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            out.addfile(info, io.BytesIO(data))
    tmp.replace(archive)
    return archive


def archive_reference(archive: Path) -> str:
    """The name an OCI archive carries (``org.opencontainers.image.ref.name`` of its index)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        assert member is not None, f"{archive}: no index.json"
        index = json.loads(member.read())
    return str(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])


def relabelled_archive(archive: Path, reference: str, labels: dict[str, str], cache_dir: Path) -> Path:
    """A second image from an OCI archive: the same layers, a config with ``labels`` added (so a
    different image ID, as a new release would have), named ``reference``. What ``helm upgrade``
    rolls out to in the e2e tier, without a second build."""
    key = hashlib.sha256(
        f"{archive}:{archive.stat().st_mtime_ns}:{reference}:{sorted(labels.items())}".encode()
    )
    target = cache_dir / f"relabelled-{key.hexdigest()[:16]}.oci.tar"
    if target.exists():
        return target
    with tarfile.open(archive) as source:
        members = {m.name.removeprefix("./"): m for m in source.getmembers() if m.isfile()}

        def read(name: str) -> bytes:
            handle = source.extractfile(members[name])
            assert handle is not None
            return handle.read()

        index = json.loads(read("index.json"))
        manifest_digest = index["manifests"][0]["digest"].removeprefix("sha256:")
        manifest = json.loads(read(f"blobs/sha256/{manifest_digest}"))
        config = json.loads(read(f"blobs/sha256/{manifest['config']['digest'].removeprefix('sha256:')}"))
        config.setdefault("config", {}).setdefault("Labels", {}).update(labels)
        added: dict[str, bytes] = {}
        manifest["config"].update(_blob(added, json.dumps(config).encode()))
        manifest_ref = _blob(added, json.dumps(manifest).encode())
        index["manifests"] = [
            {
                **index["manifests"][0],
                **manifest_ref,
                "annotations": {"org.opencontainers.image.ref.name": reference},
            }
        ]
        added["index.json"] = json.dumps(index).encode()
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        with tarfile.open(tmp, mode="w") as out:
            for name, member in members.items():
                if name not in added:
                    out.addfile(member, source.extractfile(member))
            for name, data in added.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                out.addfile(info, io.BytesIO(data))
    tmp.replace(target)
    return target
