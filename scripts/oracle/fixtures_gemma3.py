"""Gemma 3 oracle: what HF transformers makes of the real Gemma-3-270M GGUF and of a random gemma3.

Writes into .assets/oracle/gemma3/:
  tokenizer/gemma3.json, gemma3-fuzz.json   HF's ids and decodes (AutoTokenizer on the GGUF) for the
                                            tokenizer oracle's strings (edge cases + every GSM8K
                                            question and answer) and its 2,000 seeded random ones
  real/reference.safetensors                20 GSM8K questions: prompt tokens, last-position logits,
                                            32 greedy tokens (KV cache, never stopping early)
  random/                                   a random-weight Gemma3ForCausalLM (HF directory) whose
                                            sliding window (8) is shorter than its 64-token input;
                                            reference.safetensors: all-position logits (float32)
  attribution/random/, attribution/real-0/, attribution/real-1/
                                            Eq. 7 in float64 (fixtures_attribution's hooks and
                                            autograd): the random model (full sequences, 11 + 3
                                            tokens, so the window cuts) and the real model on
                                            GSM8K rows 1 and 18 (the SmolLM2 oracle's samples)

Deterministic; skips everything when the stamp holds this script's hash.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402
import fixtures_attribution as fa  # noqa: E402
import fixtures_models as fm  # noqa: E402
import fixtures_tokenizers as ft  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers as T  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

TOPIC = "gemma3"
OUT = os.path.join(common.ORACLE, TOPIC)
GEMMA3 = os.path.join(common.ASSETS, "models", "gemma-3-270m-q4_k_m.gguf")
ROWS = fa.SMOLLM2_ROWS


def gemma_in_float64():
    """Gemma3RMSNorm computes in float32 whatever the model's dtype: in a float64 reference that
    rounding would be noise, so float64 inputs take the same formula in float64 (the rest of
    fixtures_attribution's float64 patches, softmax included, apply as they are)."""
    from transformers.models.gemma3 import modeling_gemma3
    plain = modeling_gemma3.Gemma3RMSNorm.forward

    def forward(self, x):
        if x.dtype == torch.float64:
            return self._norm(x) * (1.0 + self.weight)
        return plain(self, x)
    modeling_gemma3.Gemma3RMSNorm.forward = forward


def tokenizer(tok):
    ft.OUT = os.path.join(OUT, "tokenizer")
    os.makedirs(ft.OUT, exist_ok=True)
    ft.dump_transformers("gemma3", tok, ft.EDGE_CASES + ft.gsm8k_strings())
    ft.dump_transformers("gemma3-fuzz", tok, ft.fuzz_strings())


def real_parity(model, tok):
    fm.greedy_parity(model, tok, os.path.join(OUT, "real"), "gemma3 real")


def random_model():
    """A small Gemma 3 with every piece switched on: GQA, two layer kinds with their own rotary
    bases, query_pre_attn_scalar ≠ head_dim, random (1 + w) norms, tied embeddings."""
    d = os.path.join(OUT, "random")
    os.makedirs(d, exist_ok=True)
    cfg = T.Gemma3TextConfig(
        vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24, sliding_window=8,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "sliding_attention"],
        max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=True,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}},
        pad_token_id=0, bos_token_id=2, eos_token_id=1)
    cfg._attn_implementation = "eager"
    torch.manual_seed(31)
    model = T.Gemma3ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.15)
            else:
                p.normal_(0, 0.3)      # the stored w of each (1 + w) norm
    model.save_pretrained(d, safe_serialization=True)
    model = T.Gemma3ForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    g = torch.Generator().manual_seed(32)
    tokens = torch.randint(0, cfg.vocab_size, (2, 64), generator=g)
    with torch.no_grad():
        logits = model(tokens).logits.float().numpy()
    save_file({"tokens": tokens.numpy().astype(np.int64), "logits": logits}, os.path.join(d, "reference.safetensors"))
    common.log(f"  gemma3 random: logits {logits.shape}, max |logit| {np.abs(logits).max():.3f}")
    return d


def attribution(random_dir, model, tok):
    fa.OUT = os.path.join(OUT, "attribution")
    os.makedirs(fa.OUT, exist_ok=True)
    torch.set_grad_enabled(True)
    fa.float64_throughout()
    gemma_in_float64()
    rng = np.random.default_rng(11)
    small = T.Gemma3ForCausalLM.from_pretrained(random_dir, dtype=torch.float64, attn_implementation="eager").eval()
    prompt = [int(t) for t in rng.integers(0, 512, 11)]
    answer = [int(t) for t in rng.integers(0, 512, 3)]
    fa.run("random", small, prompt, answer, cached=False, rng=rng, fd_count=6)
    model = model.double()
    rows = common.gsm8k_rows(max(ROWS) + 1)
    for i, r in enumerate(rows[k] for k in ROWS):
        prompt, answer = fa.locate_sample_tokens(tok, r)
        fa.run(f"real-{i}", model, prompt, answer, cached=True, rng=rng, fd_count=3)


def main():
    if common.stamp_ok(TOPIC, __file__):
        common.log("gemma3: up to date")
        return
    os.makedirs(OUT, exist_ok=True)
    gdir, gname = os.path.split(os.path.realpath(GEMMA3))
    tok = T.AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    tokenizer(tok)
    model = T.AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.float32, attn_implementation="eager").eval()
    real_parity(model, tok)
    random_dir = random_model()
    attribution(random_dir, model, tok)
    common.write_stamp(TOPIC, __file__)


if __name__ == "__main__":
    main()
