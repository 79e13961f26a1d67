"""`make bench`'s figures for the workstation pipeline (host_training): reading a Telegram
export, `prepare` end to end, quantizing, and converting each model family people fly."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path


def bench_quant(bundle_dir: Path, n_tokens: int = 64) -> list[tuple]:
    """Every listed quantization (host_training.quantize.quantizer.LISTED_QUANTS): seconds llama.cpp takes to
    write it, its size, and its generation speed here with llama-cpp-python (2 threads, a fixed
    ChatML prompt, greedy, `n_tokens` tokens with the end-of-turn tokens forbidden so that every
    run is as long; llama.cpp's own decode timer, prompt excluded, best of 5 runs), each against
    F16. The source is the bundle's F32 GGUF where the build kept it (`build --keep-work`:
    BUNDLE/work/model.F32.gguf), else a random Llama of the demo preset's shape: untrained, so
    what it says is noise, but sizes and speeds are those of a demo persona."""
    import llama_cpp

    from host_training.quantize.quantizer import LISTED_QUANTS, quantize
    from host_training.train import tokenizer as T

    def random_demo_gguf(d: Path) -> Path:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        from host_training.convert.convert_gguf import convert
        from host_training.train.train_scratch import PRESETS

        p = PRESETS["demo"]
        text = ["The horizon is a thin blue line and the battery is complaining about the cold."] * 50
        tok = T.train_tokenizer(text, vocab_size=300)
        T.save_tokenizer(tok, d / "hf")
        hf_tok = T.load_hf_tokenizer(d / "hf")
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=2048, hidden_size=p["hidden_size"], intermediate_size=p["intermediate_size"],
                          num_hidden_layers=p["num_hidden_layers"], num_attention_heads=p["num_attention_heads"],
                          num_key_value_heads=p["num_key_value_heads"], max_position_embeddings=p["context_length"],
                          tie_word_embeddings=p["tie_word_embeddings"], initializer_range=0.05,
                          bos_token_id=0, eos_token_id=0, pad_token_id=0)  # fmt: skip
        LlamaForCausalLM(cfg).save_pretrained(str(d / "hf"))
        hf_tok.save_pretrained(str(d / "hf"))
        return convert(d / "hf", d / "model.F32.gguf", "f32")

    prompt = ("<|im_start|>user\nRight now you are rising, 12.0 km up, -56 °C outside. "
              "What are you thinking?<|im_end|>\n<|im_start|>assistant\n")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        src = bundle_dir / "work" / "model.F32.gguf"
        what = f"{src} (the persona's F32 GGUF)"
        if not src.is_file():
            src = random_demo_gguf(d)
            what = f"random demo-shaped Llama ({bundle_dir}/work/model.F32.gguf absent: build with --keep-work)"
        rows = [("quant: source F32 GGUF", f"{src.stat().st_size / 1e6:.2f}", "MB", what)]
        ref: dict[str, float] = {}
        for q in LISTED_QUANTS:
            t0 = time.perf_counter()
            res = quantize(src, d / f"model.{q}.gguf", q)
            secs = time.perf_counter() - t0
            llm = llama_cpp.Llama(model_path=str(res.path), n_ctx=256, n_threads=2, n_threads_batch=2, verbose=False)
            ban = {t: -100.0 for s in T.SPECIAL_TOKENS for t in llm.tokenize(s.encode(), add_bos=False, special=True)}
            llm.create_completion(prompt, max_tokens=4, temperature=0.0, logit_bias=ban)  # warm-up
            tps = 0.0
            for _ in range(5):  # best of 5: a busy machine only ever makes a run slower
                llm.reset()
                llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
                out = llm.create_completion(prompt, max_tokens=n_tokens, temperature=0.0, logit_bias=ban)
                if out["choices"][0]["finish_reason"] != "length":
                    raise RuntimeError(f"quant bench: {q} stopped before {n_tokens} tokens")
                perf = llama_cpp.llama_perf_context(llm._ctx.ctx)  # llama.cpp's own decode timer
                tps = max(tps, perf.n_eval / (perf.t_eval_ms / 1000))
            n_prompt = len(llm.tokenize(prompt.encode(), add_bos=False, special=True))
            llm.close()
            ref.setdefault("bytes", res.bytes)  # F16 comes first
            ref.setdefault("tps", tps)
            rows += [
                (f"quant: {q} quantize", f"{secs:.2f}", "s",
                 f"{res.bytes / 1e6:.2f} MB, {res.bytes / ref['bytes']:.2f}x of F16's size"),
                (f"quant: {q} generation here (2 threads, greedy)", f"{tps:,.0f}", "tokens/s",
                 f"{tps / ref['tps']:.2f}x of F16; decode only, best of 5 x {n_tokens} tokens after a {n_prompt}-token prompt"),
            ]  # fmt: skip
    return rows


def bench_families(names: list[str] | None = None) -> list[tuple]:
    """Each model family people fly (host_training/base/tiny_families.py: SmolLM2, Llama 3.2, Qwen2.5,
    Qwen3, Gemma 3, Phi-3, Phi-4-mini, LFM2) as a tiny random stand-in of its exact shape:
    seconds llama.cpp's converter takes to write its F32 GGUF (convert_gguf.convert, wall time,
    the converter's own process start included: that is most of it at this size), then the
    GGUF's logits in llama-cpp-python against transformers' on a conversation rendered with
    the family's chat template and a plain sentence: the share of positions whose top token
    agrees, and the largest logit difference, also as a fraction of the largest |logit|."""
    import gguf
    import numpy as np
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from host_training.base.tiny_families import FAMILIES
    from host_training.convert.convert_gguf import convert

    conversation = [{"role": "system", "content": "You are Ada, riding a weather balloon."},
                    {"role": "user", "content": "How was the launch? 🎈"},
                    {"role": "assistant", "content": "Honestly, wild. The jet stream was at 160 knots and we went east."}]
    plain = "the clouds came in from the west at 23:15, and then the signal faded at the horizon"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or list(FAMILIES):
            family = FAMILIES[name]
            hf_dir = family.build(Path(tmp) / name)
            t0 = time.perf_counter()
            f32 = convert(hf_dir, Path(tmp) / f"{name}.F32.gguf", "f32")
            secs = time.perf_counter() - t0
            tok = AutoTokenizer.from_pretrained(str(hf_dir))
            model = AutoModelForCausalLM.from_pretrained(str(hf_dir)).eval()
            chat = tok.apply_chat_template(conversation, tokenize=False)
            texts = [tok(chat, add_special_tokens=False)["input_ids"], tok(plain)["input_ids"]]
            llm = Llama(model_path=str(f32), n_ctx=256, n_batch=256, n_ubatch=256, logits_all=True,
                        type_k=0, type_v=0, n_threads=2, verbose=False)  # F32 KV cache, as evaluate scores
            agree = n = 0
            diff = scale = 0.0
            for ids in texts:
                with torch.no_grad():
                    ref = model(torch.tensor([ids])).logits[0].numpy()
                llm.reset()
                llm.eval(ids)
                got = np.asarray(llm.scores[: len(ids)])
                agree += int((got.argmax(-1) == ref.argmax(-1)).sum())
                n += len(ids)
                diff, scale = max(diff, float(np.abs(got - ref).max())), max(scale, float(np.abs(ref).max()))
            llm.close()
            n_params = sum(p.numel() for p in model.parameters())
            fields = gguf.GGUFReader(str(f32)).fields
            arch, pre = (str(fields[k].contents()) for k in ("general.architecture", "tokenizer.ggml.pre"))
            pre = f"pre {pre}" if str(fields["tokenizer.ggml.model"].contents()) == "gpt2" else "SentencePiece"
            rows += [
                (f"family {name}: {family.hf_class} -> F32 GGUF (llama.cpp's converter)", f"{secs:.1f}", "s",
                 f"tiny stand-in, {n_params:,} parameters; GGUF arch {arch}, {pre}"),
                (f"family {name}: F32 GGUF vs transformers, same top token", f"{agree / n:.1%}", "of positions",
                 f"{n} positions; largest logit difference {diff:.1e} ({diff / max(scale, 1.0):.1e} x the largest)"),
            ]  # fmt: skip
    return rows


_INGEST_CHILD = """
import json, resource, sys, time

def peak_kib():
    # VmHWM: this process's own peak. Linux carries ru_maxrss across exec, so after a fork of
    # the (bigger) bench process it would start at the parent's size.
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

mode, path = sys.argv[1], sys.argv[2]
if mode == "ours":
    from host_training.ingest.telegram import TelegramReader
before = peak_kib()
t0 = time.perf_counter()
if mode == "ours":
    n = sum(1 for _ in TelegramReader(path).read([]))
else:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    n = 0
    for chat in data["chats"]["list"] + data["left_chats"]["list"]:
        for m in chat["messages"]:
            n += 1
seconds = time.perf_counter() - t0
print(json.dumps({"messages": n, "seconds": seconds, "before_kib": before,
                  "peak_kib": peak_kib()}))
"""


def bench_ingest(n_messages: int = 1_000_000) -> list[tuple]:
    """A generated Telegram export of `n_messages` (host_training/ingest/telegram_gen.py: several
    chats, text strings and entity lists, service messages, media, ~200 characters of text),
    read by the streaming TelegramReader and by a plain json.load plus a loop over the messages,
    each in its own process so that each peak RSS (VmHWM, else ru_maxrss) is its own."""
    import json
    import subprocess

    from host_training.ingest.telegram_gen import write_export

    root = Path(__file__).resolve().parents[3]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "result.json"
        t0 = time.perf_counter()
        written = write_export(path, n_messages, seed=1)
        gen_s = time.perf_counter() - t0
        # The kernel would otherwise still be writing those 760 MB back while they are read:
        # measured here, that cost the reader ~15 % of its rate.
        os.sync()
        got = {}
        for mode in ("ours", "json.load"):
            out = subprocess.run([sys.executable, "-c", _INGEST_CHILD, mode, str(path)], cwd=root,
                                 capture_output=True, text=True, check=True).stdout  # fmt: skip
            got[mode] = json.loads(out.strip().splitlines()[-1])
    ours, base = got["ours"], got["json.load"]
    if ours["messages"] != base["messages"]:
        raise RuntimeError(f"ingest bench: the reader gave {ours['messages']} messages, json.load {base['messages']}")
    mb = lambda kib: kib * 1024 / 1e6  # noqa: E731
    rate, base_rate = ours["messages"] / ours["seconds"], base["messages"] / base["seconds"]
    ratio = base["peak_kib"] / ours["peak_kib"]
    what = f"Telegram export, {n_messages:,} messages, {written.bytes / 1e6:,.0f} MB"
    return [
        (f"ingest: {what}: streaming reader", f"{rate:,.0f}", "messages/s",
         f"target >= 100,000/s; {ours['seconds']:.1f} s (file written in {gen_s:.1f} s)"),
        ("ingest: same file, json.load + loop over messages", f"{base_rate:,.0f}", "messages/s",
         f"{base['seconds']:.1f} s; ours {rate / base_rate:.2f}x of it"),
        ("ingest: peak memory (RSS), streaming reader", f"{mb(ours['peak_kib']):,.0f}", "MB",
         f"{mb(ours['before_kib']):,.0f} MB of it Python and imports before reading"),
        ("ingest: peak memory (RSS), json.load", f"{mb(base['peak_kib']):,.0f}", "MB",
         f"{ratio:.0f}x ours; target >= 5x less for ours"),
    ]  # fmt: skip


_PREPARE_CHILD = """
import json, sys, time
from host_training.__main__ import main
t0 = time.perf_counter()
rc = main(["--log-level", "ERROR", "prepare", sys.argv[1], "--owner", "user5550101", "--out", sys.argv[2]])
seconds = time.perf_counter() - t0
peak = next((int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")), 0)
print(json.dumps({"rc": rc, "seconds": seconds, "peak_kib": peak}))
"""


def bench_prepare(n_messages: int = 200_000) -> list[tuple]:
    """The whole `prepare` stage (read, drop, scrub, spill, sessions, split, write) on a generated
    Telegram export, in its own process: messages per second and peak memory end to end."""
    import json
    import subprocess

    from host_training.ingest.telegram_gen import write_export

    root = Path(__file__).resolve().parents[3]
    with tempfile.TemporaryDirectory() as d:
        written = write_export(Path(d) / "result.json", n_messages, seed=2)
        os.sync()  # as in bench_ingest: not the write-back of the file just written
        out = subprocess.run([sys.executable, "-c", _PREPARE_CHILD, str(Path(d) / "result.json"), str(Path(d) / "out")],
                             cwd=root, capture_output=True, text=True, check=True).stdout
        got = json.loads(out.strip().splitlines()[-1])
    if got["rc"] != 0:
        raise RuntimeError(f"prepare bench: prepare exited {got['rc']}")
    return [
        (f"prepare: {n_messages:,}-message Telegram export, end to end", f"{n_messages / got['seconds']:,.0f}",
         "messages/s", f"{got['seconds']:.1f} s for {written.bytes / 1e6:,.0f} MB: read, scrub, spill, sessions, write"),
        ("prepare: peak memory (RSS), end to end", f"{got['peak_kib'] * 1024 / 1e6:,.0f}", "MB",
         "does not grow with the number of messages (scratch SQLite on disk)"),
    ]  # fmt: skip
