"""Cutting onnxruntime-gpu for the lent machine: fatbin pruning on a hand-built ELF file,
and parts that put the archive back together."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest

from benchmarks import gpu_carry
from benchmarks.gpu_carry import FATBIN_MAGIC, KIND_ELF, KIND_PTX, CarryError


def entry(kind: int, arch: int, payload: bytes) -> bytes:
    """A fatbin entry: 64-byte header (kind, version, header size, payload size, the
    architecture at byte 28), then the payload."""
    head = struct.pack("<HHIQ", kind, 0x0101, 64, len(payload)) + bytes(12)
    head += struct.pack("<I", arch) + bytes(32)
    return head + payload


def container(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return struct.pack("<IHHQ", FATBIN_MAGIC, 1, 16, len(body)) + body


def elf_with(sections: dict[str, bytes]) -> bytearray:
    """A minimal ELF64 little-endian file: header, the sections' bytes, section headers."""
    names = [".shstrtab", *sections]
    strtab = b"\0" + b"".join(n.encode() + b"\0" for n in names)
    data = {".shstrtab": strtab, **sections}
    out = bytearray(64)
    out[:6] = b"\x7fELF\x02\x01"
    placed = []
    for name in names:
        out += bytes(-len(out) % 8)
        placed.append((strtab.index(name.encode() + b"\0"), len(out), len(data[name])))
        out += data[name]
    out += bytes(-len(out) % 8)
    shoff = len(out)
    out += bytes(64)  # section 0 is the null section
    for sh_name, offset, size in placed:
        out += struct.pack("<IIQQQQIIQQ", sh_name, 1, 0, 0, offset, size, 0, 0, 8, 0)
    struct.pack_into("<Q", out, 0x28, shoff)
    struct.pack_into("<HHH", out, 0x3A, 64, len(placed) + 1, 1)
    return out


SM80, SM90, PTX, SM120 = b"\x80" * 40, b"\x90" * 24, b"ptx code", b"\x12" * 16
FATBIN = (container(entry(KIND_ELF, 80, SM80), entry(KIND_ELF, 90, SM90),
                    entry(KIND_PTX, 80, PTX))
          + bytes(8)  # padding between containers
          + container(entry(KIND_ELF, 120, SM120)))


def test_only_the_kept_architectures_machine_code_survives():
    elf = elf_with({".text": b"\xcc" * 10, ".nv_fatbin": FATBIN})
    before = bytes(elf)
    report = gpu_carry.prune_fatbins(elf, keep_arch=90)
    assert len(elf) == len(before)
    assert SM90 in elf and PTX in elf  # the H100/H200 code and the PTX, untouched
    assert SM80 not in elf and SM120 not in elf
    assert b"\xcc" * 10 in elf  # other sections untouched
    changed = [i for i, (a, b) in enumerate(zip(before, elf, strict=True)) if a != b]
    assert len(changed) == len(SM80) + len(SM120)  # only those payload bytes, headers kept
    summary = report.summary()
    assert summary["fatbins"] == 2 and summary["fatbins_without_kept_arch"] == 1
    assert summary["kept"] == {"ptx_80": 1, "sm_90": 1}
    assert summary["zeroed"] == {"sm_80": 1, "sm_120": 1}
    assert summary["zeroed_bytes"] == len(SM80) + len(SM120)
    assert summary["kept_bytes"] == len(SM90) + len(PTX)


def test_inputs_it_does_not_understand_are_refused_with_what_was_found():
    with pytest.raises(CarryError, match="no .nv_fatbin section"):
        gpu_carry.prune_fatbins(elf_with({".text": b"\0" * 8}), 90)
    with pytest.raises(CarryError, match="not a 64-bit little-endian ELF"):
        gpu_carry.prune_fatbins(bytearray(b"MZ" + bytes(100)), 90)
    with pytest.raises(CarryError, match="unexpected bytes"):
        gpu_carry.prune_fatbins(elf_with({".nv_fatbin": b"\x01" * 16 + FATBIN}), 90)
    short = bytearray(container(entry(KIND_ELF, 90, SM90)))
    struct.pack_into("<Q", short, 8, 70)  # its size says less than its entry holds
    with pytest.raises(CarryError, match="entries end at"):
        gpu_carry.prune_fatbins(elf_with({".nv_fatbin": bytes(short)}), 90)
    odd = container(entry(7, 90, SM90))
    with pytest.raises(CarryError, match=r"unknown fatbin entry \(kind 7\)"):
        gpu_carry.prune_fatbins(elf_with({".nv_fatbin": odd}), 90)


def test_parts_fit_the_limit_and_join_back_to_the_archive(tmp_path):
    archive = tmp_path / gpu_carry.ARCHIVE
    archive.write_bytes(bytes(range(256)) * 41)  # 10,496 bytes
    parts = gpu_carry.split(archive, tmp_path / "out", 4000, {"wheel": "w", "arch": 90})
    assert [p.parent.name for p in parts] == ["ort-0", "ort-1", "ort-2"]
    assert [p.stat().st_size for p in parts] == [4000, 4000, 2496]
    assert b"".join(p.read_bytes() for p in parts) == archive.read_bytes()
    for part in parts:
        meta = json.loads((part.parent / gpu_carry.MANIFEST).read_text())
        assert meta["parts"] == [p.name for p in parts]
        assert meta["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
        assert meta["arch"] == 90 and meta["bytes"] == 10_496


def test_a_wheel_without_the_cuda_library_is_refused(tmp_path):
    import zipfile

    wheel = tmp_path / "onnxruntime-1.0-cp312-cp312-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("onnxruntime/__init__.py", "")
    with pytest.raises(CarryError, match="not an onnxruntime-gpu wheel"):
        gpu_carry.pack_wheel(wheel, tmp_path / "a.tar.xz", 90)
    assert gpu_carry.main(["--wheel", str(tmp_path / "missing.whl")]) == 2
