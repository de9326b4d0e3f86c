"""A random-weight Llama with Llama-2-7B's layer shapes (d 4096, J 11008, 32 heads, vocabulary
32,000) but fewer layers, for measuring memory and row speed at the paper's widths without the
27 GB checkpoint. Saved as F16 safetensors (about 2.2 GB for 4 layers); cnl reads it into fp32.

    python make_llama7b_shaped.py OUT_DIR [LAYERS] [TOKENIZER_JSON]

The tokenizer is the fixtures' small SentencePiece BPE (4,000 pieces, ids below 32,000): the
weights are random, so only its ids matter. Skips the work when OUT_DIR already holds the model.
"""
import os
import shutil
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

out = sys.argv[1]
layers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
here = os.path.dirname(os.path.abspath(__file__))
tokenizer = sys.argv[3] if len(sys.argv) > 3 else os.path.join(here, "..", "..", ".assets", "oracle", "tokenizers", "sp-bpe", "tokenizer.json")
if os.path.exists(os.path.join(out, "model.safetensors")) or os.path.exists(os.path.join(out, "model.safetensors.index.json")):
    sys.exit(0)
torch.manual_seed(0)
config = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers, num_attention_heads=32,
                     num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5,
                     tie_word_embeddings=False, initializer_range=0.02)
with torch.no_grad():
    model = LlamaForCausalLM(config).half()
tmp = out + ".partial"
shutil.rmtree(tmp, ignore_errors=True)
model.save_pretrained(tmp, safe_serialization=True, max_shard_size="20GB")
shutil.copy(tokenizer, os.path.join(tmp, "tokenizer.json"))
os.replace(tmp, out)
print(f"{out}: {sum(p.numel() for p in model.parameters()) / 1e9:.3f} B parameters, {layers} layers")
