"""onnxruntime-gpu cut down to what a lent GPU machine can receive, in parts that fit a call.

    python -m benchmarks.gpu_carry --wheel .whl/dl/onnxruntime_gpu-*.whl [--arch 90]
                                   [--out .whl] [--part-mib 50]

The lent machine reaches no package index, and what travels with one call is capped
(64 MiB, the working tree included). The onnxruntime-gpu wheel is several times that,
nearly all of it ``libonnxruntime_providers_cuda.so``, whose ``.nv_fatbin`` section holds
the same kernels compiled for every GPU architecture the release supports. A GPU runs
only the machine code built for its own architecture (or JIT-compiles PTX, of which this
library ships none), so the entries for the other architectures are dead weight there.

:func:`prune_fatbins` zeroes those entries' payloads in place: every header, offset and
size stays as it was, so the ELF file and the driver's view of each fatbin are unchanged
except that the unused images compress to nothing. PTX entries are always kept. The
TensorRT provider library (never loaded unless that provider is asked for) is left out.
The package is then written as one ``.tar.xz`` (the ``onnxruntime`` package and its
dist-info, to unpack onto ``PYTHONPATH``; xz rather than gzip because its window spans
many kernel images, which resemble each other, where gzip's 32 KB does not), split into
parts of at most ``--part-mib``, part ``i`` in its own folder ``OUT/ort-<i>/`` so that
each call can carry one, with ``ort-gpu.json`` (version, architecture, sha256 of the
whole archive, part names) beside every part.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import struct
import sys
import tarfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

FATBIN_MAGIC = 0xBA55ED50
FATBIN_SECTION = ".nv_fatbin"
KIND_PTX, KIND_ELF = 1, 2
CUDA_LIBRARY = "onnxruntime/capi/libonnxruntime_providers_cuda.so"
LEFT_OUT = ("onnxruntime/capi/libonnxruntime_providers_tensorrt.so",)
ARCHIVE = "ort-gpu.tar.xz"
PART = "ort-gpu.part"
MANIFEST = "ort-gpu.json"


class CarryError(ValueError):
    """The input is not what this tool knows how to cut (says what was found)."""


@dataclass
class PruneReport:
    """What :func:`prune_fatbins` found and did; bytes are payload bytes."""

    fatbins: int = 0
    kept: Counter = field(default_factory=Counter)  # (kind, arch) -> entries
    zeroed: Counter = field(default_factory=Counter)
    kept_bytes: int = 0
    zeroed_bytes: int = 0
    containers_without_kept_arch: int = 0

    def summary(self) -> dict:
        def name(kind: int, arch: int) -> str:
            return f"{'ptx' if kind == KIND_PTX else 'sm'}_{arch}"

        return {"fatbins": self.fatbins, "kept_bytes": self.kept_bytes,
                "zeroed_bytes": self.zeroed_bytes,
                "kept": {name(*k): v for k, v in sorted(self.kept.items())},
                "zeroed": {name(*k): v for k, v in sorted(self.zeroed.items())},
                "fatbins_without_kept_arch": self.containers_without_kept_arch}


def find_section(elf: bytes | bytearray, name: str) -> tuple[int, int]:
    """(file offset, size) of the ELF64 little-endian section called ``name``."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise CarryError("not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def header(i: int) -> tuple[int, int, int]:
        sh_name, _, _, _, offset, size = struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize)
        return sh_name, offset, size

    strtab = header(shstrndx)[1]
    wanted = name.encode()
    for i in range(shnum):
        sh_name, offset, size = header(i)
        start = strtab + sh_name
        if bytes(elf[start : start + len(wanted) + 1]) == wanted + b"\0":
            return offset, size
    raise CarryError(f"the file has no {name} section")


def prune_fatbins(elf: bytearray, keep_arch: int) -> PruneReport:
    """Zero, in place, the machine code for every architecture but ``keep_arch``.

    The section is a run of fatbin containers (8-byte aligned, zero padding between);
    each container is a 16-byte header (magic, version, header size, size of what
    follows) and entries, each a header (kind, version, header size, payload size, ...,
    architecture at byte 28) and its payload.
    """
    offset, size = find_section(elf, FATBIN_SECTION)
    end, pos, report = offset + size, offset, PruneReport()
    while pos + 16 <= end:
        magic, _, header_size, fat_size = struct.unpack_from("<IHHQ", elf, pos)
        if magic != FATBIN_MAGIC:
            if any(elf[pos : pos + 8]):
                raise CarryError(f"unexpected bytes at {pos:#x} in {FATBIN_SECTION}")
            pos += 8
            continue
        report.fatbins += 1
        entry, stop, has_kept = pos + header_size, pos + header_size + fat_size, False
        while entry < stop:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", elf, entry)
            (arch,) = struct.unpack_from("<I", elf, entry + 28)
            if kind not in (KIND_PTX, KIND_ELF) or entry_header < 32:
                raise CarryError(f"unknown fatbin entry (kind {kind}) at {entry:#x}")
            body = entry + entry_header
            if kind == KIND_PTX or arch == keep_arch:
                report.kept[(kind, arch)] += 1
                report.kept_bytes += payload
                has_kept = True
            else:
                elf[body : body + payload] = bytes(payload)
                report.zeroed[(kind, arch)] += 1
                report.zeroed_bytes += payload
            entry = body + payload
        if entry != stop:
            raise CarryError(f"fatbin at {pos:#x}: entries end at {entry:#x}, not {stop:#x}")
        report.containers_without_kept_arch += not has_kept
        pos = stop
    if report.fatbins == 0:
        raise CarryError(f"no fatbin in {FATBIN_SECTION}")
    return report


def pack_wheel(wheel: Path, archive: Path, keep_arch: int) -> dict:
    """The wheel's files as a .tar.xz, the CUDA library pruned, LEFT_OUT left out."""
    summary: dict = {"wheel": wheel.name, "arch": keep_arch}
    with zipfile.ZipFile(wheel) as zf, tarfile.open(archive, "w:xz", preset=6) as tar:
        names = zf.namelist()
        if CUDA_LIBRARY not in names:
            raise CarryError(f"{wheel.name} has no {CUDA_LIBRARY}: not an onnxruntime-gpu wheel")
        for name in names:
            if name.endswith("/") or name in LEFT_OUT:
                continue
            data = zf.read(name)
            if name == CUDA_LIBRARY:
                buf = bytearray(data)
                summary["fatbin"] = prune_fatbins(buf, keep_arch).summary()
                data = bytes(buf)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755 if ".so" in name else 0o644
            tar.addfile(info, io.BytesIO(data))
    return summary


def split(archive: Path, out: Path, part_bytes: int, manifest: dict) -> list[Path]:
    """``archive`` cut into ``out/ort-<i>/ort-gpu.part<i>``, the manifest beside each."""
    digest, parts = hashlib.sha256(), []
    with archive.open("rb") as fh:
        while chunk := fh.read(part_bytes):
            digest.update(chunk)
            folder = out / f"ort-{len(parts)}"
            folder.mkdir(parents=True, exist_ok=True)
            part = folder / f"{PART}{len(parts)}"
            part.write_bytes(chunk)
            parts.append(part)
    manifest = {**manifest, "archive": ARCHIVE, "sha256": digest.hexdigest(),
                "bytes": archive.stat().st_size, "parts": [p.name for p in parts]}
    for part in parts:
        (part.parent / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_carry",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--wheel", required=True, help="the onnxruntime-gpu wheel")
    parser.add_argument("--arch", type=int, default=90,
                        help="the GPU architecture to keep (90: H100/H200)")
    parser.add_argument("--out", default=".whl", help="folder for the ort-<i>/ parts")
    parser.add_argument("--part-mib", type=float, default=40.0,
                        help="largest part (a call carries 64 MiB with the working tree)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    wheel, out = Path(args.wheel), Path(args.out)
    if not wheel.is_file():
        print(f"error: no wheel at {wheel}; run `bash benchmarks/gpu_check.sh prepare`",
              file=sys.stderr)
        return 2
    for old in out.glob("ort-*"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    out.mkdir(parents=True, exist_ok=True)
    archive = out / ARCHIVE
    try:
        summary = pack_wheel(wheel, archive, args.arch)
    except CarryError as exc:
        print(f"error: {wheel.name}: {exc}", file=sys.stderr)
        return 2
    parts = split(archive, out, int(args.part_mib * 2**20), summary)
    archive.unlink()
    print(json.dumps({**summary, "parts": {str(p): p.stat().st_size for p in parts}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
