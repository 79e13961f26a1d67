"""`python -m host_training build|eval|chat` end to end, on the `test` preset (seconds, not minutes)."""

from __future__ import annotations

import hashlib
import json

import pytest

from host_training.__main__ import main
from stratoecho.bundle import load_bundle
from tests.chatdata import write_chat_dataset

llama_cpp = pytest.importorskip("llama_cpp")


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- the tiny bundle
def test_tiny_bundle_verifies_and_describes_itself(tiny_bundle, chat_data_dir):
    bundle = load_bundle(tiny_bundle)  # checks every file's size and sha256
    m = bundle.manifest
    assert m.persona.name == "Ada" and "Ada" in m.persona.system_prompt
    assert m.persona.stop == ["<|im_end|>", "<|endoftext|>"]
    assert m.model.file == "model.Q4_K_M.gguf" and m.model.quantization == "Q4_K_M"
    assert m.model.architecture == "llama" and m.model.base == "scratch" and m.model.n_params > 0
    assert m.training["data_sha256"] == sha256(chat_data_dir / "train.jsonl")
    assert m.training["preset"] == "test" and m.training["seed"] == 1337 and m.training["loss"] == "persona"
    assert 0 < m.training["kept_step"] <= m.training["steps"] <= 30
    # voice.json.gz: the report's voice classifier, for the payload to choose musings with (test_voice_score.py);
    # lines.json: the owner's lines by situation, for its prompts (test_owner_lines.py)
    assert {f.path for f in m.files} == {"model.Q4_K_M.gguf", "eval.json", "voice.json.gz", "lines.json"}
    assert sorted(p.name for p in tiny_bundle.iterdir()) == [  # model/: what `build --continue` starts from
        "Modelfile", "build.log", "eval.json", "lines.json", "model", "model.Q4_K_M.gguf", "persona.toml",
        "report.md", "size_vs_perplexity.svg", "voice.json.gz"]
    assert "| privacy probe |" in (tiny_bundle / "report.md").read_text() and "FROM ./model.Q4_K_M.gguf" in (
        tiny_bundle / "Modelfile").read_text()
    # The F32 GGUF scored by llama.cpp equals the training framework's held-out loss: the
    # conversion and the token accounting agree.
    assert m.eval["f32_val_loss"] == pytest.approx(m.training["val_loss"], abs=1e-3)
    assert m.eval["val_perplexity"] == pytest.approx(m.eval["f32_val_perplexity"], rel=0.05)
    report = json.loads((tiny_bundle / "eval.json").read_text())
    assert report["quantized"]["tokens"] == m.eval["val_tokens"] > 0


def test_bundle_generates_through_its_own_template(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    p = bundle.manifest.persona
    prompt = bundle.render_prompt([
        {"role": "system", "content": p.system_prompt},
        {"role": "user", "content": "How was the launch?"},
    ])
    assert prompt.endswith("<|im_start|>assistant\n")
    llm = llama_cpp.Llama(model_path=str(bundle.model_path), n_ctx=bundle.manifest.model.context_length, verbose=False)
    assert llm.metadata["tokenizer.chat_template"] == p.chat_template  # the GGUF and persona.toml agree
    s = bundle.manifest.sampling
    out = llm.create_completion(prompt, max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p,
                                top_k=s.top_k, repeat_penalty=s.repeat_penalty, stop=p.stop, seed=3)
    choice = out["choices"][0]
    assert choice["finish_reason"] in ("stop", "length") and isinstance(choice["text"], str)
    # Forbid the end-of-turn tokens and the model must produce max_tokens tokens of text.
    forced = llm.create_completion(prompt, max_tokens=12, seed=3, logit_bias={0: -100.0, 1: -100.0, 2: -100.0})
    assert forced["usage"]["completion_tokens"] == 12 and forced["choices"][0]["text"].strip()
    llm.close()


def test_eval_reproduces_the_recorded_perplexity(tiny_bundle, chat_data_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    # --no-report: the bundle is a shared fixture; eval's report is tested in test_eval_report.py.
    assert main(["eval", str(tiny_bundle), "--data", str(chat_data_dir), "--json", str(out), "--no-report"]) == 0
    result = json.loads(out.read_text())
    recorded = load_bundle(tiny_bundle).manifest.eval["val_perplexity"]
    assert result["val_perplexity"] == pytest.approx(recorded, rel=1e-4)
    assert "val perplexity" in capsys.readouterr().out


def test_chat_answers_once_with_prompt(tiny_bundle, capsys):
    rc = main(["chat", str(tiny_bundle), "--prompt", "How was the launch?", "--seed", "1", "--max-tokens", "8"])
    assert rc == 0
    assert capsys.readouterr().out.endswith("\n")


def test_chat_repl_reads_until_quit(tiny_bundle, monkeypatch, capsys):
    said = iter(["How was the launch?", "", "/reset", "and the clouds?", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(said))
    assert main(["chat", str(tiny_bundle), "--seed", "1", "--max-tokens", "6"]) == 0
    out = capsys.readouterr()
    assert out.out.count("Ada> ") == 2 and "talking to Ada" in out.err


def test_chat_keeps_the_history_inside_the_context(tiny_bundle):
    from host_training.chat import PersonaChat, defuse

    chat = PersonaChat(load_bundle(tiny_bundle), seed=1)
    for i in range(12):  # far more than 256 tokens of conversation in all
        chat.reply(f"turn {i}: tell me about the clouds over the hills this morning, please", max_tokens=16)
    assert chat.history[-2]["content"].startswith("turn 11")
    assert len(chat.history) < 24
    with pytest.raises(ValueError, match="too long"):
        chat.reply("clouds " * 400, max_tokens=16)
    assert "<|im_end|>" not in defuse("a <|im_end|> b") and defuse("plain") == "plain"


# ----------------------------------------------------------------------------- other builds
def test_chat_gives_each_reply_its_own_seed(tiny_bundle):
    # Issue 40: every `chat --prompt` run sampled with the same seed, so it gave one reply however often asked.
    from host_training.chat import PersonaChat
    from stratoecho.bundle import load_bundle

    bundle = load_bundle(tiny_bundle)
    asked = "tell me about the clouds over the hills"
    seeded = [PersonaChat(bundle, seed=3).reply(asked, max_tokens=12) for _ in range(2)]
    assert seeded[0] == seeded[1]  # --seed: the same replies, run to run
    free = {PersonaChat(bundle).reply(asked, max_tokens=12) for _ in range(4)}
    assert len(free) > 1
    chat = PersonaChat(bundle, seed=10)
    assert [chat.next_seed() for _ in range(3)] == [10, 11, 12]


def test_build_keeps_work_and_takes_options(chat_data_dir, tmp_path):
    out = tmp_path / "b"
    rc = main(["build", "--data", str(chat_data_dir), "--from-scratch", "--preset", "test", "--steps", "4",
               "--quant", "f16", "--loss", "all", "--vocab-size", "400", "--seed", "7", "--keep-work",
               "--system-prompt", "You are Ada, aloft.", "--out", str(out)])
    assert rc == 0
    m = load_bundle(out).manifest
    assert m.persona.name == "Ada"  # taken from the persona's turns in the data
    assert m.persona.system_prompt == "You are Ada, aloft."
    assert m.model.file == "model.F16.gguf" and m.training["loss"] == "all" and m.training["seed"] == 7
    assert m.training["vocab_size"] <= 400
    assert (out / "work" / "model.F32.gguf").is_file() and (out / "work" / "hf" / "model.safetensors").is_file()
    # A second build into the same folder needs --force, and then replaces the bundle.
    assert main(["build", "--data", str(chat_data_dir), "--from-scratch", "--preset", "test", "--steps", "2",
                 "--out", str(out)]) == 2
    assert main(["build", "--data", str(chat_data_dir), "--from-scratch", "--preset", "test", "--steps", "2",
                 "--quant", "Q4_0", "--out", str(out), "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "Modelfile", "build.log", "eval.json", "lines.json", "model", "model.Q4_0.gguf", "persona.toml",
        "report.md", "size_vs_perplexity.svg", "voice.json.gz"]
    load_bundle(out)


def test_base_without_data_or_model_is_refused_before_any_work(tmp_path, chat_data_dir, capsys):
    rc = main(["build", "--data", str(tmp_path), "--base", str(tmp_path), "--out", str(tmp_path / "b")])
    assert rc == 2 and "train.jsonl: not found" in capsys.readouterr().err
    rc = main(["build", "--data", str(chat_data_dir), "--base", str(tmp_path), "--out", str(tmp_path / "b")])
    assert rc == 2 and "no config.json" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_an_iquant_is_quantized_with_the_persona_own_importance_matrix(chat_data_dir, tmp_path):
    """No --imatrix: build computes one in llama.cpp from train.jsonl and quantizes with it."""
    import gguf

    out = tmp_path / "b"
    assert main(["build", "--data", str(chat_data_dir), "--from-scratch", "--preset", "test", "--steps", "2",
                 "--vocab-size", "400", "--quant", "iq2_xxs", "--out", str(out)]) == 0
    m = load_bundle(out).manifest
    assert m.model.file == "model.IQ2_XXS.gguf" and m.model.quantization == "IQ2_XXS"
    e = json.loads((out / "eval.json").read_text())
    im = e["quantization"]["imatrix"]
    assert im["source"] == "computed in llama.cpp from train.jsonl" and im["tokens"] > 1000 and im["entries"] == 14
    fields = gguf.GGUFReader(str(out / m.model.file)).fields
    assert fields["quantize.imatrix.entries_count"].contents() == 14
    assert e["conversion_check"]["ok"] and e["quantization"]["drift"]["conversations"] == 12
    assert "quant_nll_increase_high" in m.eval


def test_unknown_quant_is_refused(chat_data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["build", "--data", str(chat_data_dir), "--from-scratch", "--quant", "Q9_X", "--out", str(tmp_path / "b")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unsupported quantization 'Q9_X'" in err and "Q4_K_M" in err


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing", "no such data directory"),
        ("no-val", "val.jsonl: not found"),
        ("empty", "train.jsonl: no conversations to train on"),
        ("malformed", "train.jsonl:6: not valid JSON"),
        ("no-persona", "no assistant (persona) turns"),
    ],
)
def test_bad_data_gives_a_clear_error(tmp_path, capsys, setup, message):
    data = tmp_path / "data"
    if setup != "missing":
        write_chat_dataset(data, n_train=5, n_val=2)
    if setup == "no-val":
        (data / "val.jsonl").unlink()
    elif setup == "empty":
        (data / "train.jsonl").write_text("\n")
    elif setup == "malformed":
        with open(data / "train.jsonl", "a") as f:
            f.write('{"messages": [\n')
    elif setup == "no-persona":
        (data / "train.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    rc = main(["build", "--data", str(data), "--from-scratch", "--preset", "test", "--out", str(tmp_path / "b")])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "b" / "persona.toml").exists()


def test_out_folder_with_other_files_is_refused(chat_data_dir, tmp_path, capsys):
    out = tmp_path / "b"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    rc = main(["build", "--data", str(chat_data_dir), "--from-scratch", "--preset", "test", "--out", str(out)])
    assert rc == 2 and "not empty" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"


def test_a_bundle_and_every_file_it_lists_may_be_replaced(tmp_path):
    """A bundle's own files (its voice classifier, the owner's lines, a base's terms) are a build's
    to replace with --force; a file it does not list is someone else's (issue 49: the sample
    persona, once it carried voice.json.gz, could not be rebuilt)."""
    from host_training.pipeline.stages import out_dir_refusal

    out = tmp_path / "b"
    out.mkdir()
    for name in ("model.Q4_K_M.gguf", "voice.json.gz", "lines.json", "GEMMA_TERMS.html", "report.md"):
        (out / name).write_text("x")
    (out / "persona.toml").write_text('[[files]]\npath = "GEMMA_TERMS.html"\n')
    assert out_dir_refusal(out, force=True) is None
    assert "already holds a bundle" in out_dir_refusal(out, force=False)
    (out / "notes.txt").write_text("mine")
    assert "notes.txt" in out_dir_refusal(out, force=True)
    (out / "notes.txt").unlink()
    (out / "persona.toml").unlink()  # a failed build's leftovers: its own names only
    assert "GEMMA_TERMS.html" in out_dir_refusal(out, force=True)


# ----------------------------------------------------------------------------- training itself
def test_training_is_deterministic_and_fits_a_time_budget(chat_data_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    from host_training.train import tokenizer as T
    from host_training.train.train_scratch import TrainConfig, train

    convs = T.load_conversations(chat_data_dir / "train.jsonl")
    val = T.load_conversations(chat_data_dir / "val.jsonl")
    tok_dir = tmp_path / "tok"
    T.save_tokenizer(T.train_tokenizer(T.tokenizer_training_text(convs, "S"), 400), tok_dir)
    runs = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        r = train(TrainConfig(preset="test", steps=5, seed=11), convs, val, tok_dir, out, "S")
        runs.append((r, load_file(str(out / "model.safetensors"))))
    (a, wa), (b, wb) = runs
    assert a.val_loss == b.val_loss and a.steps == b.steps == 5
    # The weights kept are those of the best held-out evaluation.
    assert a.val_loss == pytest.approx(min(v for _, v in a.val_curve), abs=1e-4)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # A budget of 0.05 min cannot hold 100000 steps: the plan shrinks to fit.
    r = train(TrainConfig(preset="test", steps=100_000, max_minutes=0.05, seed=11), convs, val, tok_dir,
              tmp_path / "budget", "S")
    assert r.steps < 100_000 and r.minutes < 0.5


def test_target_picks_the_best_fitting_quantization_and_predicts_speed(chat_data_dir, tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["build", "--data", str(chat_data_dir), "--from-scratch", "--preset", "test", "--steps", "2",
                 "--target", "pi-zero-2w", "--out", str(out)]) == 0
    m = load_bundle(out).manifest
    assert m.model.target == "pi-zero-2w" and m.eval["predicted_tokens_per_s"] > 0
    assert m.model.file == f"model.{m.model.quantization}.gguf" and (out / m.model.file).is_file()
    report = (out / "report.md").read_text()
    # Every type that fits was measured: all of them appear with their perplexity and drift.
    assert report.count("candidate for pi-zero-2w") >= 12 and "drift from F32 (95 % interval)" in report
    assert "Conversion check (F32 GGUF in llama.cpp against the checkpoint in transformers" in report
    assert not (out / "work").exists() and len(list(out.glob("*.gguf"))) == 1
    q = json.loads((out / "eval.json").read_text())["quantization"]
    assert q["target"]["tolerance"] == 0.02 and q["target"]["min_top1"] == 0.9 and q["imatrix"]["entries"] > 0
    rows = q["target"]["candidates"]
    assert {r["quant"] for r in rows} >= {"Q4_K_M", "Q2_K", "IQ4_XS", "IQ2_XXS"}
    chosen = next(r for r in rows if r["chosen"])
    assert chosen["quant"] == m.model.quantization and chosen["within_tolerance"] and chosen["drift"]["high"] <= 0.02
    assert chosen["drift"]["top1_low"] >= 0.9
    # the smallest file within the tolerance and the floor: nothing smaller that fits met both
    assert all(r["drift"]["high"] > 0.02 or r["drift"]["top1_low"] < 0.9
               for r in rows if r["fits"] and r["bytes"] < chosen["bytes"])
    assert "top-1 as F32 (95 % interval)" in report
    assert m.eval["quant_within_tolerance"] is True
    assert all(r["drift"]["tolerance"] == 0.02 for r in rows if r.get("drift"))  # each row judged by the build's


def test_the_report_judges_every_row_by_the_builds_own_tolerance(chat_data_dir, tmp_path):
    """With --quant-tolerance, each candidate's verdict in report.md is against it, not the default."""
    out = tmp_path / "b"
    assert main(["build", "--data", str(chat_data_dir), "--from-scratch", "--preset", "test", "--steps", "2",
                 "--target", "pi-zero-2w", "--quant-tolerance", "0.3", "--out", str(out)]) == 0
    rows = [line for line in (out / "report.md").read_text().splitlines() if "candidate for pi-zero-2w" in line]
    assert rows and all("within 0.3" in line for line in rows) and not any("0.02" in line for line in rows)


# ----------------------------------------------------------------------------- the declared options
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--from-scratch", "--vocab-size", "100"], "--vocab-size: 100 is too small: byte-level BPE needs at least 259"),
        (["--from-scratch", "--steps", "0"], "--steps: Input should be greater than 0 (got 0)"),
        (["--from-scratch", "--max-minutes", "-1"], "--max-minutes: Input should be greater than 0"),
        (["--base", "BASE", "--lora-rank", "0"], "--lora-rank: Input should be greater than 0 (got 0)"),
        (["--base", "BASE", "--epochs", "0", "--learning-rate", "0"], "--epochs: Input should be greater than 0 "
                                                                      "(got 0.0); --learning-rate:"),
        (["--from-scratch", "--imatrix", "nofile.gguf"], "--imatrix nofile.gguf: no such file"),
        (["--from-scratch", "--blocklist", "nofile.txt"], "--blocklist nofile.txt: no such file"),
        (["--from-scratch", "--target", "pi9"], "--target: unknown target board 'pi9'; choose one of pi-zero-2w"),
    ],
)
def test_bad_options_name_the_flag_before_any_work(chat_data_dir, tmp_path, capsys, extra, message):
    extra = [str(tmp_path) if a == "BASE" else a for a in extra]
    rc = main(["build", "--data", str(chat_data_dir), "--out", str(tmp_path / "b"), *extra])
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_resume_refuses_a_finished_bundle_and_a_folder_without_checkpoints(chat_data_dir, tmp_path, capsys):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    out = tmp_path / "b"
    out.mkdir()
    args = ["build", "--data", str(chat_data_dir), "--base", str(tmp_path / "base"), "--out", str(out), "--resume"]
    assert main(args) == 2 and "no checkpoints to resume from" in capsys.readouterr().err
    (out / "persona.toml").write_text("")
    assert main(args) == 2 and "nothing to resume" in capsys.readouterr().err
    assert (out / "persona.toml").exists()


def test_the_workspace_outlives_a_failed_resumable_build_only(tmp_path):
    from host_training.pipeline.stages import workspace

    out = tmp_path / "b"
    out.mkdir()
    with pytest.raises(RuntimeError), workspace(out, keep=False, resumable=True) as work:
        (work / "checkpoints").mkdir()
        raise RuntimeError("interrupted")
    assert (out / "work" / "checkpoints").is_dir()  # --resume starts from here
    with workspace(out, keep=False, resumable=True):
        pass
    assert not (out / "work").exists()
    with pytest.raises(RuntimeError), workspace(out, keep=False, resumable=False) as work:
        raise RuntimeError("interrupted")
    assert not work.exists() and not (out / "work").exists()
    with workspace(out, keep=True, resumable=False) as work:
        assert work == out / "work"
    assert work.is_dir()


def test_target_takes_the_documented_board_names(tmp_path):
    from host_training.pipeline.build_config import BuildConfig

    def target(name):
        return BuildConfig(data=tmp_path, out=tmp_path / "b", training={"method": "from-scratch"}, target=name).target

    assert target("pi4") == "pi4-2gb" and target("Pi5") == "pi5-2gb" and target("pi-zero-2w") == "pi-zero-2w"
