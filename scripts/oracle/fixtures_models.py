"""Reference logits from HF transformers for the forward-parity tests.

Writes under .assets/oracle/models/:
  <name>/ config.json + model.safetensors   small random-weight models transformers creates
  <name>/reference.safetensors               tokens [B, T] (int64), logits [B, T, V] (float32)
  smollm2/reference.safetensors              the real SmolLM2-135M-Instruct GGUF run by HF:
                                             prompt tokens, last-position logits, greedy tokens
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers as T  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

TOPIC = "models"
OUT = os.path.join(common.ORACLE, TOPIC)


def random_models():
    """(name, config, dtype) of the small models: every architecture, F32 and BF16 storage."""
    gpt2 = T.GPT2Config(n_embd=64, n_layer=3, n_head=4, vocab_size=211, n_positions=96,
                        bos_token_id=0, eos_token_id=0)
    gptj = T.GPTJConfig(n_embd=64, n_layer=3, n_head=4, vocab_size=211, n_positions=96, rotary_dim=8,
                        bos_token_id=0, eos_token_id=0)
    # GQA (8 query heads over 2 kv heads), untied head, non-default rope base.
    llama = T.LlamaConfig(hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=8,
                          num_key_value_heads=2, vocab_size=211, max_position_embeddings=96,
                          tie_word_embeddings=False, rope_theta=5000.0, rms_norm_eps=1e-5,
                          bos_token_id=0, eos_token_id=0)
    # Llama-3.1-style rope scaling, tied embeddings, attention biases.
    llama3 = T.LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=4, vocab_size=211, max_position_embeddings=96,
                           tie_word_embeddings=True, attention_bias=True,
                           rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                            "original_max_position_embeddings": 16},
                           bos_token_id=0, eos_token_id=0)
    models = []
    for name, cfg, cls in [("gpt2", gpt2, T.GPT2LMHeadModel), ("gptj", gptj, T.GPTJForCausalLM),
                           ("llama", llama, T.LlamaForCausalLM), ("llama3rope", llama3, T.LlamaForCausalLM)]:
        for dtype in ("f32", "bf16"):
            models.append((f"{name}-{dtype}", cfg, cls, dtype))
    return models


def make_random(name, cfg, cls, dtype, seed):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(seed)
    cfg._attn_implementation = "eager"
    model = cls(cfg).eval()
    # Larger-than-init weights so that attention and norms are exercised, not near-identity.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.15)
            else:
                p.add_(torch.randn_like(p) * 0.1)
    if dtype == "bf16":
        model = model.to(torch.bfloat16)
    model.save_pretrained(d, safe_serialization=True)
    # The reference runs on exactly the stored weights, loaded back in float32 (a fresh load, so
    # non-persistent buffers such as rotary inv_freq are float32, not rounded through bf16).
    model = cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    g = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(0, cfg.vocab_size, (2, 40), generator=g)
    with torch.no_grad():
        logits = model(tokens).logits.float().numpy()
    save_file({"tokens": tokens.numpy().astype(np.int64), "logits": logits}, os.path.join(d, "reference.safetensors"))
    common.log(f"  {name}: logits {logits.shape}, max |logit| {np.abs(logits).max():.3f}")


def smollm2_float32():
    """transformers' own GGUF load (~20 s here: it de-quantizes every tensor), done once."""
    gdir, gname = os.path.split(os.path.realpath(common.SMOLLM2))
    return T.AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.float32).eval()


def greedy_parity(model, tok, d, label):
    """d/reference.safetensors: the first 20 GSM8K questions (tokenized with the model's special
    tokens), their last-position logits and 32 greedy tokens each with the KV cache, never
    stopping early (argmax as torch does)."""
    os.makedirs(d, exist_ok=True)
    prompts, lasts, greedy = [], [], []
    for r in common.gsm8k_rows(20):
        ids = tok(r["question"], add_special_tokens=True)["input_ids"]
        with torch.no_grad():
            out = model(torch.tensor([ids]), use_cache=True)
            lasts.append(out.logits[0, -1].float().numpy())
            past, nxt, gen = out.past_key_values, int(out.logits[0, -1].argmax()), []
            for _ in range(32):
                gen.append(nxt)
                o = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
                past, nxt = o.past_key_values, int(o.logits[0, -1].argmax())
        prompts.append(ids)
        greedy.append(gen)
    width = max(len(p) for p in prompts)
    padded = np.full((len(prompts), width), -1, dtype=np.int64)
    for i, p in enumerate(prompts):
        padded[i, :len(p)] = p
    save_file({"prompt_tokens": padded, "last_logits": np.stack(lasts).astype(np.float32),
               "greedy_tokens": np.array(greedy, dtype=np.int64)}, os.path.join(d, "reference.safetensors"))
    common.log(f"  {label}: {len(prompts)} prompts (max {width} tokens), 32 greedy tokens each")


def smollm2(model):
    gdir, gname = os.path.split(os.path.realpath(common.SMOLLM2))
    tok = T.AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    greedy_parity(model, tok, os.path.join(OUT, "smollm2"), "smollm2")


def smollm2_meta(model):
    """HF's own view of the model for `cnl inspect`: config numbers and the parameter count."""
    import json
    c = model.config
    meta = {"model_type": c.model_type, "num_hidden_layers": c.num_hidden_layers, "hidden_size": c.hidden_size,
            "intermediate_size": c.intermediate_size, "num_attention_heads": c.num_attention_heads,
            "num_key_value_heads": c.num_key_value_heads, "vocab_size": c.vocab_size,
            "num_parameters": model.num_parameters(), "tie_word_embeddings": bool(c.tie_word_embeddings)}
    with open(os.path.join(OUT, "smollm2", "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    common.log(f"  smollm2 meta: {meta}")


def main():
    if common.stamp_ok(TOPIC, __file__):
        common.log("models: up to date")
        return
    os.makedirs(OUT, exist_ok=True)
    for i, (name, cfg, cls, dtype) in enumerate(random_models()):
        if os.path.exists(os.path.join(OUT, name, "reference.safetensors")) and "--force" not in sys.argv:
            continue
        make_random(name, cfg, cls, dtype, seed=100 + i)
    model = None
    if not os.path.exists(os.path.join(OUT, "smollm2", "reference.safetensors")) or "--force" in sys.argv:
        model = smollm2_float32()
        smollm2(model)
    if not os.path.exists(os.path.join(OUT, "smollm2", "meta.json")) or "--force" in sys.argv:
        smollm2_meta(model or smollm2_float32())
    common.write_stamp(TOPIC, __file__)


if __name__ == "__main__":
    main()
