"""Tokenizer oracle: HF transformers/tokenizers ids and decodes that the Swift tokenizer must match.

Writes into .assets/oracle/tokenizers/:
  smollm2/            tokenizer.json (+ configs) saved from the HF tokenizer built from the real GGUF
  gpt2/               tokenizer.json built by HF from GPT-2's encoder.json + vocab.bpe
  sp-bpe/             a SentencePiece BPE (byte fallback) trained on GSM8K, converted by
                      LlamaTokenizerFast; sp.model, tokenizer.json, and sp-bpe.gguf (llama metadata)
  variants/*.json     tokenizer.json files that exercise stages the three above do not
                      (Llama-3 Split regex, Digits, NFC, Prepend/Replace, Metaspace split+decoder,
                      lstrip/normalized added tokens, ignore_merges); variants/sp-eos/ a
                      tokenizer_config.json whose add_bos/add_eos transformers ignores;
                      variants/gpt2-llama-bpe.gguf GPT-2's vocabulary with pre "llama-bpe"
  <name>.json         {"tokenizer", "strings", "ids", "ids_plain", "decoded", "decoded_skip"} on the
                      edge cases + every GSM8K question and answer
  <name>-fuzz.json    the same on 2,000 seeded random strings built to stress the scanners

Deterministic; skips everything when the stamp holds this script's hash.
"""

import hashlib
import json
import os
import sys

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
ASSETS = os.path.join(ROOT, ".assets")
OUT = os.path.join(ASSETS, "oracle", "tokenizers")
STAMP = os.path.join(OUT, ".stamp")
GGUF_DIR = os.path.join(ASSETS, "models")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GSM8K = os.path.join(ASSETS, "data", "gsm8k", "test.jsonl")
GPT2_DIR = os.path.join(ASSETS, "gpt2")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def script_hash():
    with open(__file__, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# MARK: - Strings


EDGE_CASES = [
    "",
    " ",
    "  ",
    "a",
    " leading",
    "  two leading",
    "trailing ",
    "trailing two  ",
    "multiple   spaces    inside",
    "line\nbreak",
    "windows\r\nline",
    "three\n\n\nnewlines",
    "\n",
    "\n\n",
    " \n ",
    "x \n\n y",
    "\r\n\r\n",
    "tab\there",
    "\t\tdouble tab",
    "mixed \t \n\t ws",
    "1234567",
    "3.14",
    "1,000",
    "1,000,000.50",
    " 18",
    "#### 18",
    "$80,000",
    "<<16-3-4=9>>9",
    "12345678901234567890",
    "x²+y³=z⁴",
    "Ⅻ Roman ⅻ",
    "١٢٣ Arabic-Indic digits",
    "café naïve résumé",
    "cafe\u0301 decomposed",
    "e\u0301\u0301 double combining",
    "Ångström Ωmega",
    "ǅemal titlecase",
    "日本語のテキスト",
    "中文 字符 测试",
    "한국어 텍스트",
    "emoji 😀 here",
    "family 👨‍👩‍👧‍👦 zwj",
    "flags 🇺🇸🇫🇷",
    "skin 👍🏽 tone",
    "❤️ heart with selector",
    "it's John's",
    "I'LL be there",
    "we'Re they've I'm you'd",
    "don't 'S 'LL 'll",
    "'s at start",
    "it’s curly",
    "Janet’s ducks",
    "'ſ long s",
    "nbsp\u00a0here",
    "ideographic\u3000space",
    "line\u2028separator",
    "next\u0085line",
    "mongolian\u180evowel",
    "zero\u200bwidth",
    "vertical\u000btab\u000cfeed",
    "control\u0001char",
    "<|endoftext|>",
    "Hello<|endoftext|>World",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    " <|im_end|> spaced ",
    "<s>",
    "<s> Hello</s>",
    "a <s> b",
    "</s>",
    "<unk>",
    "<mask> lstrip  <mask>",
    "hello world normalized",
    "Hello World HELLO WORLD",
    "(parenthesized) [bracketed] {braced}",
    "...ellipsis!!! ???",
    "--- dashes --- and — em",
    "a.b,c;d:e",
    "email@example.com http://x.y/z?q=1&r=2",
    "snake_case camelCase PascalCase",
    "x = f(y) + 2 * z / 3 - 4",
    "100% of $5.00 is $5",
    "∑∫√∞ math",
    "ﬁ ligature ＡＢＣ fullwidth",
    "   ",
    "\t",
    "a\n",
    "end.\n",
]


FUZZ_UNITS = (
    list("abcXYZ019 ") + [" ", "  ", "\n", "\r\n", "\n\n", "\t", "'", "'s", "'S", "'ll", "'LL", "'re", "'ve", "'m", "'d", "'t"]
    + list(".,!?-$%()<>#=*/_:;\"") + ["\u017f", "\u00e9", "e\u0301", "\u0301", "\u65e5\u672c", "\ud55c", "\U0001f600", "\u200d",
    "\U0001f468\u200d\U0001f469", "\u00a0", "\u3000", "\u2028", "\u0085", "\u00b2", "\u216b", "\u0661\u0662", "\u0915\u094d\u0937",
    "\u2581", "\ufb01", "\u1680", "\u180e", "\u200b", "\x0b", "\x01", "1234", "3.14", "1,000"]
    + ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<unk>", "<mask>", "hello world"]
)


def fuzz_strings(count=2000, seed=1234):
    """Random concatenations of units chosen to stress the regex scanners and added-token matching."""
    import random

    rng = random.Random(seed)
    return ["".join(rng.choice(FUZZ_UNITS) for _ in range(rng.randint(1, 24))) for _ in range(count)]


def gsm8k_strings():
    out = []
    with open(GSM8K, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            out.append(row["question"])
            out.append(row["answer"])
    return out


# MARK: - Building the tokenizers


def build_smollm2(strings):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(GGUF_DIR, gguf_file=GGUF_NAME)
    out_dir = os.path.join(OUT, "smollm2")
    tok.save_pretrained(out_dir)
    # The saved tokenizer.json must reproduce the GGUF-built tokenizer exactly.
    again = AutoTokenizer.from_pretrained(out_dir)
    for s in strings:
        assert tok(s)["input_ids"] == again(s)["input_ids"], s
    return tok


def build_gpt2(strings):
    import shutil
    import tempfile

    from transformers import GPT2TokenizerFast

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(os.path.join(GPT2_DIR, "encoder.json"), os.path.join(tmp, "vocab.json"))
        shutil.copy(os.path.join(GPT2_DIR, "vocab.bpe"), os.path.join(tmp, "merges.txt"))
        tok = GPT2TokenizerFast.from_pretrained(tmp)
        assert len(tok) == 50257, len(tok)
        tok.save_pretrained(os.path.join(OUT, "gpt2"))
    return tok


def train_sentencepiece():
    import sentencepiece as spm

    d = os.path.join(OUT, "sp-bpe")
    os.makedirs(d, exist_ok=True)
    lines = []
    with open(GSM8K, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            lines.append(row["question"])
            lines.extend(row["answer"].split("\n"))
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=os.path.join(d, "sp"),
        model_type="bpe",
        vocab_size=4000,
        byte_fallback=True,
        character_coverage=0.9995,
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    return os.path.join(d, "sp.model")


def build_sp_bpe(model_path):
    """Llama-2 style: LlamaTokenizerFast converts the .model (transformers' default, legacy=False),
    and add_bos_token=True as Llama-2's tokenizer_config.json says, so the post-processor adds <s>."""
    import shutil
    import tempfile

    from transformers import LlamaTokenizerFast

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(model_path, os.path.join(tmp, "tokenizer.model"))
        tok = LlamaTokenizerFast.from_pretrained(tmp, add_bos_token=True, add_eos_token=False)
        tok.save_pretrained(os.path.join(OUT, "sp-bpe"))
    return tok


def write_sp_gguf(model_path):
    """The same SentencePiece vocabulary as llama.cpp's converter writes it: tokenizer.ggml.model =
    "llama", tokens, scores, token types (sentencepiece's piece types are llama.cpp's), special ids."""
    import gguf
    import numpy as np
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    with open(model_path, "rb") as f:
        proto.ParseFromString(f.read())
    tokens = [p.piece for p in proto.pieces]
    scores = [p.score for p in proto.pieces]
    types = [p.type for p in proto.pieces]
    path = os.path.join(OUT, "sp-bpe", "sp-bpe.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(proto.trainer_spec.bos_id)
    w.add_eos_token_id(proto.trainer_spec.eos_id)
    w.add_unk_token_id(proto.trainer_spec.unk_id)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.path.join(OUT, "sp-bpe"), gguf_file="sp-bpe.gguf")


def write_gpt2_llama_bpe_gguf():
    """GPT-2's vocabulary and merges as llama.cpp metadata with `tokenizer.ggml.pre = "llama-bpe"`,
    for which transformers puts Llama-3's Split regex before ByteLevel."""
    import gguf
    import numpy as np

    with open(os.path.join(GPT2_DIR, "encoder.json"), encoding="utf-8") as f:
        encoder = json.load(f)
    tokens = [t for t, _ in sorted(encoder.items(), key=lambda kv: kv[1])]
    with open(os.path.join(GPT2_DIR, "vocab.bpe"), encoding="utf-8") as f:
        merges = [line.rstrip("\n") for line in f if line.strip() and not line.startswith("#version")]
    types = [3 if t == "<|endoftext|>" else 1 for t in tokens]
    d = os.path.join(OUT, "variants")
    os.makedirs(d, exist_ok=True)
    w = gguf.GGUFWriter(os.path.join(d, "gpt2-llama-bpe.gguf"), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(encoder["<|endoftext|>"])
    w.add_eos_token_id(encoder["<|endoftext|>"])
    w.add_add_bos_token(True)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(d, gguf_file="gpt2-llama-bpe.gguf")


def build_variants(gpt2_json, sp_json):
    """tokenizer.json files for stages the three real tokenizers do not use; the oracle for these is
    HF's tokenizers library itself."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors

    d = os.path.join(OUT, "variants")
    os.makedirs(d, exist_ok=True)
    llama3 = (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
    out = {}

    # GPT-2 vocabulary behind Llama-3's pre-tokenizer, with NFC and ignore_merges and a BOS template.
    t = Tokenizer.from_file(gpt2_json)
    model = json.loads(t.to_str())
    model["model"]["ignore_merges"] = True
    t = Tokenizer.from_str(json.dumps(model))
    t.normalizer = normalizers.NFC()
    t.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(llama3), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    t.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", pair="<|endoftext|> $A $B", special_tokens=[("<|endoftext|>", 50256)]
    )
    t.decoder = decoders.ByteLevel()
    out["gpt2-llama3"] = t

    # GPT-2 with SmolLM2's pre-tokenizer shape (Digits then ByteLevel), add_prefix_space, and added
    # tokens that strip whitespace or match after normalization.
    t = Tokenizer.from_file(gpt2_json)
    t.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
        ]
    )
    t.post_processor = processors.ByteLevel(trim_offsets=True)
    t.decoder = decoders.ByteLevel()
    t.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=True, normalized=False)])
    t.add_tokens([AddedToken("hello world", normalized=True)])
    out["gpt2-digits"] = t

    # Llama-2's own (legacy) shape: the prefix space comes from Prepend/Replace normalizers.
    t = Tokenizer.from_file(sp_json)
    t.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    t.pre_tokenizer = None
    t.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    t.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    out["sp-legacy"] = t

    # Metaspace splitting on every "▁", prepend always, Metaspace decoder, BOS and EOS.
    t = Tokenizer.from_file(sp_json)
    t.normalizer = None
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    t.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    t.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B </s>", special_tokens=[("<s>", 1), ("</s>", 2)]
    )
    out["sp-metaspace"] = t

    for name, tok in out.items():
        tok.save(os.path.join(d, name + ".json"))
    return out


# MARK: - Expected outputs


def build_config_variant(sp_dir):
    """The SentencePiece tokenizer.json with a tokenizer_config.json that sets add_bos_token=False,
    add_eos_token=True: transformers 5 drops both when a tokenizer.json exists, so the ids keep the
    file's BOS template (checked here so a future transformers that honours them is noticed)."""
    import shutil

    from transformers import AutoTokenizer

    d = os.path.join(OUT, "variants", "sp-eos")
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(sp_dir, "tokenizer.json"), os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": False, "add_eos_token": True, "bos_token": "<s>", "eos_token": "</s>",
                   "unk_token": "<unk>", "tokenizer_class": "LlamaTokenizer"}, f, indent=2)
    tok = AutoTokenizer.from_pretrained(d)
    assert tok("x")["input_ids"][0] == 1 and tok("x")["input_ids"][-1] != 2
    return tok


def dump_transformers(name, tok, strings, extra=None):
    ids = [tok(s)["input_ids"] for s in strings]
    plain = [tok(s, add_special_tokens=False)["input_ids"] for s in strings]
    rec = {
        "tokenizer": name,
        "strings": strings,
        "ids": ids,
        "ids_plain": plain,
        "decoded": [tok.decode(i) for i in ids],
        "decoded_skip": [tok.decode(i, skip_special_tokens=True) for i in ids],
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "vocab_size": len(tok),
    }
    rec.update(extra or {})
    write_json(name, rec)


def dump_tokenizers(name, tok, strings):
    encs = [tok.encode(s) for s in strings]
    ids = [e.ids for e in encs]
    plain = [tok.encode(s, add_special_tokens=False).ids for s in strings]
    rec = {
        "tokenizer": name,
        "strings": strings,
        "ids": ids,
        "ids_plain": plain,
        "decoded": [tok.decode(i, skip_special_tokens=False) for i in ids],
        "decoded_skip": [tok.decode(i, skip_special_tokens=True) for i in ids],
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
    }
    write_json(name, rec)


def write_json(name, rec):
    path = os.path.join(OUT, name + ".json")
    tmp = path + ".partial"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(rec, f, ensure_ascii=False)
    os.replace(tmp, path)
    print(f"  {name}: {len(rec['strings'])} strings, {sum(len(i) for i in rec['ids'])} tokens")


def main():
    h = script_hash()
    if os.path.exists(STAMP) and open(STAMP).read().strip() == h:
        print("tokenizers: up to date")
        return
    os.makedirs(OUT, exist_ok=True)
    strings = EDGE_CASES + gsm8k_strings()
    fuzz = fuzz_strings()

    smol = build_smollm2(strings + fuzz)
    gpt2 = build_gpt2(strings)
    model_path = train_sentencepiece()
    sp = build_sp_bpe(model_path)
    sp_gguf = write_sp_gguf(model_path)
    sp_eos = build_config_variant(os.path.join(OUT, "sp-bpe"))
    llama_bpe = write_gpt2_llama_bpe_gguf()
    for name, tok in [("smollm2", smol), ("gpt2", gpt2), ("sp-bpe", sp), ("sp-bpe-gguf", sp_gguf), ("sp-eos", sp_eos),
                      ("gpt2-llama-bpe-gguf", llama_bpe)]:
        dump_transformers(name, tok, strings)
        dump_transformers(name + "-fuzz", tok, fuzz)

    variants = build_variants(os.path.join(OUT, "gpt2", "tokenizer.json"), os.path.join(OUT, "sp-bpe", "tokenizer.json"))
    for name, tok in variants.items():
        dump_tokenizers(name, tok, strings)
        dump_tokenizers(name + "-fuzz", tok, fuzz)

    with open(STAMP, "w") as f:
        f.write(h + "\n")


if __name__ == "__main__":
    sys.exit(main())
