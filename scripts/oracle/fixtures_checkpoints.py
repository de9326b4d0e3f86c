#!/usr/bin/env python3
"""Reference data for the checkpoint readers (Tests/EngineTests/Checkpoint*.swift).

Writes into .assets/oracle/checkpoints/:
  gguf/<TYPE>.gguf           GGUF v3 files written by gguf-py's GGUFWriter, one per supported
                             ggml type, a few tensors each (quantized by gguf-py where it can,
                             else random-but-valid raw blocks: random bits, finite f16 scales)
  gguf/<TYPE>.expected.npy   float32 values from gguf.quants.dequantize, all tensors of the
                             file flattened and concatenated in manifest order
  gguf/unsupported.gguf      tensors of ggml types the reader refuses (Q2_K, IQ4_NL, ...)
  smollm2_summary.json       per tensor of the real SmolLM2 GGUF: float64 sum and sum of
                             squares, a bit hash of the float32 values, and sampled values
  safetensors/single.safetensors + single.expected.npy   F32, F16, BF16 tensors (torch)
  safetensors/hf_single/     an HF directory from transformers' save_pretrained (one file)
  safetensors/hf_sharded/    the same model saved in shards with model.safetensors.index.json
  safetensors/*.expected.npy float32 values read back by the safetensors package
  manifest.json              what each expected array holds (name, type, shape, offset, count)

Deterministic (fixed seeds); skipped when the stamp holds this script's hash and gguf's version.
"""
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / ".assets" / "oracle" / "checkpoints"
SMOL = ROOT / ".assets" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
SEED = 20250601


def stamp_value() -> str:
    import gguf  # noqa: F401
    from importlib.metadata import version
    h = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    return f"{h} gguf={version('gguf')} safetensors={version('safetensors')}"


# MARK: - ggml blocks

def f16_bits(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float16).view(np.uint16)


def random_scales(rng, n: int) -> np.ndarray:
    """Finite f16 scales over many magnitudes, both signs, with zeros, subnormals and the max."""
    mag = 10.0 ** rng.uniform(-6, 0.5, size=n)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    s = (mag * sign).astype(np.float16)
    specials = np.array([0.0, -0.0, 6e-8, -3e-6, 65504.0, 1.0], dtype=np.float16)
    k = min(n, len(specials))
    idx = rng.choice(n, size=k, replace=False)
    s[idx] = specials[:k]
    return s.view(np.uint16)


# Byte offsets of the f16 scale fields inside each block (ggml-common.h block structs).
SCALE_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "Q2_K": [80, 82], "Q3_K": [108], "Q8_K": [], "IQ4_NL": [0], "TQ1_0": [52], "TQ2_0": [64],
}


def random_blocks(rng, qtype, n_blocks: int) -> np.ndarray:
    import gguf
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in SCALE_FIELDS.get(qtype.name, []):
        raw[:, off:off + 2] = random_scales(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    if qtype.name == "Q8_K":  # float32 d
        raw[:, 0:4] = rng.uniform(-1, 1, size=n_blocks).astype(np.float32).view(np.uint8).reshape(n_blocks, 4)
    return raw


def random_float_bits(rng, qtype, count: int) -> np.ndarray:
    """Random bit patterns of F32/F16/BF16 without NaNs (infinities and subnormals stay in)."""
    if qtype.name == "F32":
        bits = rng.integers(0, 2**32, size=count, dtype=np.uint64).astype(np.uint32)
        nan = ((bits >> 23) & 0xFF == 0xFF) & (bits & 0x7FFFFF != 0)
        bits[nan] &= np.uint32(0xFF7FFFFF)
        return bits.view(np.uint8)
    bits = rng.integers(0, 2**16, size=count, dtype=np.uint32).astype(np.uint16)
    if qtype.name == "F16":
        nan = ((bits >> 10) & 0x1F == 0x1F) & (bits & 0x3FF != 0)
        bits[nan] &= np.uint16(0xFBFF)
    else:
        nan = ((bits >> 7) & 0xFF == 0xFF) & (bits & 0x7F != 0)
        bits[nan] &= np.uint16(0xFF7F)
    return bits.view(np.uint8)


SUPPORTED = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]
UNSUPPORTED = ["Q8_1", "Q2_K", "Q3_K", "Q8_K", "IQ4_NL", "TQ2_0"]


def write_gguf(path: Path, tensors, alignment=None):
    """tensors: list of (name, raw uint8 array shaped (..., bytes_per_row), qtype)."""
    import gguf
    w = gguf.GGUFWriter(str(path), arch="llama")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    w.add_uint32("test.u32", 123456)
    w.add_float32("test.f32", 0.25)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo ✓")
    w.add_array("test.strings", ["a", "", "ü", "end"])
    w.add_array("test.ints", [1, -2, 3])
    for name, raw, qtype in tensors:
        w.add_tensor(name, raw, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_gguf_fixtures(rng, manifest):
    import gguf
    from gguf.quants import dequantize, quantize
    d = OUT / "gguf"
    d.mkdir(parents=True, exist_ok=True)
    manifest["gguf"] = {}
    for tname in SUPPORTED:
        qtype = gguf.GGMLQuantizationType[tname]
        bs, ts = gguf.GGML_QUANT_SIZES[qtype]
        row = bs if bs > 1 else 7
        tensors = []
        # 1. real values quantized by gguf-py where it implements quantization
        try:
            x = rng.normal(0, 0.5, size=(3, 2 * row if bs > 1 else 5 * row)).astype(np.float32)
            x[0, :bs] = 0.0  # an all-zero block
            if tname == "F32":
                q = x.view(np.uint8)
            elif tname == "F16":
                q = x.astype(np.float16).view(np.uint8)
            else:
                q = quantize(x, qtype)
            tensors.append(("quantized.weight", np.ascontiguousarray(q), qtype))
        except NotImplementedError:
            pass
        # 2. random blocks: every bit pattern of the quants, scales over many magnitudes
        for name, shape in [("raw.3d", (2, 3, 2 * row)), ("raw.1d", (row * 4,)), ("raw.big", (16, 8 * row))]:
            count = int(np.prod(shape))
            if bs == 1:
                raw = random_float_bits(rng, qtype, count)
            else:
                raw = random_blocks(rng, qtype, count // bs).reshape(-1)
            raw = raw.reshape(*shape[:-1], shape[-1] // bs * ts)
            tensors.append((name, raw, qtype))
        path = d / f"{tname}.gguf"
        write_gguf(path, tensors, alignment=64 if tname == "Q8_0" else None)

        # Expected values: gguf-py's dequantize of the bytes as its own reader finds them.
        reader = gguf.GGUFReader(str(path))
        entries, flat, offset = [], [], 0
        for t in reader.tensors:
            if t.tensor_type == gguf.GGMLQuantizationType.F32:
                v = np.asarray(t.data).view(np.float32)
            elif t.tensor_type in (gguf.GGMLQuantizationType.F16,):
                v = np.asarray(t.data).view(np.uint8)
                v = dequantize(v, qtype)
            else:
                v = dequantize(np.asarray(t.data).view(np.uint8), qtype)
            v = np.ascontiguousarray(v, dtype=np.float32).reshape(-1)
            shape = [int(s) for s in reversed(t.shape.tolist())]
            assert int(np.prod(shape)) == v.size, (t.name, shape, v.shape)
            entries.append({"name": t.name, "type": tname, "shape": shape, "offset": offset, "count": int(v.size)})
            flat.append(v)
            offset += v.size
        np.save(d / f"{tname}.expected.npy", np.concatenate(flat))
        manifest["gguf"][tname] = {"file": f"gguf/{tname}.gguf", "expected": f"gguf/{tname}.expected.npy",
                                   "tensors": entries}

    # Types the reader must refuse by name (it still opens the file and lists them).
    tensors = []
    for tname in UNSUPPORTED:
        qtype = gguf.GGMLQuantizationType[tname]
        bs, ts = gguf.GGML_QUANT_SIZES[qtype]
        tensors.append((f"blk.0.{tname.lower()}.weight", random_blocks(rng, qtype, 2).reshape(1, 2 * ts), qtype))
    write_gguf(d / "unsupported.gguf", tensors)
    manifest["unsupported"] = {"file": "gguf/unsupported.gguf",
                               "tensors": [{"name": n, "type": q.name} for n, _, q in tensors]}


# MARK: - The real SmolLM2 GGUF

def bit_hash(v: np.ndarray) -> int:
    """Σ bits_i · (2·i + 1) mod 2^64 over the float32 bit patterns: any changed bit changes it.
    The Swift test computes the same with wrapping UInt64 arithmetic."""
    bits = v.view(np.uint32).astype(np.uint64)
    w = np.arange(v.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    with np.errstate(over="ignore"):
        return int(np.sum(bits * w, dtype=np.uint64))


def make_smollm2_summary(manifest):
    import gguf
    from gguf.quants import dequantize
    reader = gguf.GGUFReader(str(SMOL))
    out = []
    for t in reader.tensors:
        v = dequantize(np.asarray(t.data), t.tensor_type)
        v = np.ascontiguousarray(v, dtype=np.float32).reshape(-1)
        n = v.size
        idx = sorted(set([0, 1, n // 3, n // 2, (2 * n) // 3, n - 2, n - 1]))
        v64 = v.astype(np.float64)
        out.append({
            "name": t.name,
            "type": t.tensor_type.name,
            "shape": [int(s) for s in reversed(t.shape.tolist())],
            "count": int(n),
            "sum": float(np.sum(v64)),
            "sumsq": float(np.dot(v64, v64)),
            "maxabs": float(np.max(np.abs(v64))),
            "bit_hash": str(bit_hash(v)),
            "samples": [{"index": int(i), "bits": int(v[i:i + 1].view(np.uint32)[0]), "value": float(v[i])} for i in idx],
        })
    (OUT / "smollm2_summary.json").write_text(json.dumps({"file": SMOL.name, "tensors": out}, indent=1))
    manifest["smollm2"] = {"file": "smollm2_summary.json", "tensors": len(out)}


# MARK: - safetensors

def expected_from_files(files):
    """Every tensor of the given .safetensors files, read by the safetensors package, as float32."""
    from safetensors import safe_open
    entries, flat, offset = [], [], 0
    for f in files:
        with safe_open(str(f), framework="pt") as h:
            for name in sorted(h.keys()):
                t = h.get_tensor(name)
                v = t.float().contiguous().numpy().reshape(-1)
                entries.append({"name": name, "type": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
                                "offset": offset, "count": int(v.size), "file": f.name})
                flat.append(v)
                offset += v.size
    return entries, np.concatenate(flat).astype(np.float32)


def make_safetensors_fixtures(manifest):
    import torch
    from safetensors.torch import save_file
    d = OUT / "safetensors"
    d.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(SEED)
    t = {
        "f32.matrix": torch.randn(5, 7, generator=g),
        "f32.scalar": torch.tensor(3.5),
        "f32.empty": torch.zeros(0, 4),
        "f16.matrix": (torch.randn(4, 9, generator=g) * 100).half(),
        "f16.specials": torch.tensor([0.0, -0.0, 6e-8, 65504, float("inf"), -float("inf"), 1e-5], dtype=torch.float16),
        "bf16.matrix": (torch.randn(3, 3, 3, generator=g) * 1e20).bfloat16(),
        "bf16.specials": torch.tensor([0.0, -0.0, 1e-40, 3e38, float("inf"), -1.5], dtype=torch.bfloat16),
        "bf16.vector": torch.randn(33, generator=g).bfloat16(),
    }
    # Random bit patterns (no NaNs) so every exponent and mantissa bit is exercised.
    bits = torch.randint(0, 2**16, (257,), generator=g, dtype=torch.int32)
    bf = bits.to(torch.int16).view(torch.bfloat16)
    t["bf16.bits"] = torch.where(torch.isnan(bf), torch.zeros_like(bf), bf)
    hf = bits.to(torch.int16).view(torch.float16)
    t["f16.bits"] = torch.where(torch.isnan(hf), torch.zeros_like(hf), hf)
    single = d / "single.safetensors"
    save_file(t, str(single), metadata={"format": "pt", "note": "cnl fixture"})
    e, v = expected_from_files([single])
    np.save(d / "single.expected.npy", v)
    manifest["safetensors_single"] = {"file": "safetensors/single.safetensors",
                                      "expected": "safetensors/single.expected.npy", "tensors": e}

    # HF directories from transformers' own save_pretrained: one file, and shards with an index.
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(SEED)
    cfg = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    for sub, dtype, shard in [("hf_single", torch.float16, "10GB"), ("hf_sharded", torch.bfloat16, "20KB")]:
        p = d / sub
        if p.exists():
            shutil.rmtree(p)
        model.to(dtype).save_pretrained(str(p), max_shard_size=shard, safe_serialization=True)
        files = sorted(p.glob("*.safetensors"))
        if sub == "hf_sharded":
            assert len(files) > 1 and (p / "model.safetensors.index.json").exists(), files
        e, v = expected_from_files(files)
        np.save(d / f"{sub}.expected.npy", v)
        manifest[sub] = {"dir": f"safetensors/{sub}", "expected": f"safetensors/{sub}.expected.npy",
                         "tensors": e, "files": [f.name for f in files]}


def main():
    stamp = OUT / ".stamp"
    want = stamp_value()
    if stamp.exists() and stamp.read_text() == want and (OUT / "manifest.json").exists():
        print(f"checkpoints: up to date in {OUT}")
        return
    if not SMOL.exists():
        sys.exit(f"missing {SMOL}: run scripts/fetch-assets.sh first")
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    manifest = {"seed": SEED}
    make_gguf_fixtures(rng, manifest)
    make_safetensors_fixtures(manifest)
    make_smollm2_summary(manifest)
    tmp = OUT / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, OUT / "manifest.json")
    stamp.write_text(want)
    print(f"checkpoints: wrote {OUT}")


if __name__ == "__main__":
    main()
