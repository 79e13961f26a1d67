"""A quiet build (issue 43, item 6): one line per stage on the terminal, every library's output in
the build's log, the warnings that matter counted at the end; `--preset` with `--base` refused
naming the right option; a chats-only `prepare` not told it failed a policy."""

from __future__ import annotations

import ctypes
import warnings
from pathlib import Path

import pytest
import structlog

from host_training import progress
from host_training.__main__ import main
from host_training.quiet import LOG_FILE, Quiet

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("data", "check", "train", "convert", "quantize", "evaluate", "bundle")


@pytest.mark.slow
def test_a_build_shows_one_line_per_stage_and_logs_the_rest(chat_data_dir, tmp_path, capfd):
    out = tmp_path / "b"
    rc = main(["build", "--data", str(chat_data_dir), "--from-scratch", "--preset", "test", "--steps", "3",
               "--vocab-size", "512", "--out", str(out)])
    assert rc == 0
    stdout, stderr = capfd.readouterr()
    lines = stderr.splitlines()
    stage_lines = [line for line in lines if line.startswith("  ")]
    assert [line.split()[0] for line in stage_lines] == list(STAGES)
    train = next(line for line in stage_lines if line.split()[0] == "train")
    assert "3/3 steps" in train and train.rstrip()[-1] == "s"  # its time, e.g. 2.1s
    assert any("replies" in line for line in stage_lines if line.split()[0] == "bundle")
    assert lines[-1] == f"log (llama.cpp, the trainer, every event): {out / LOG_FILE}"
    assert stdout.startswith(f"bundle {out}:") and stdout.count("\n") == 1
    # nothing of llama.cpp's or of our event log on the terminal; all of it in the log
    assert "llama_" not in stderr and "falling back" not in stderr and '"event"' not in stderr
    assert "build.data" not in stderr
    log = (out / LOG_FILE).read_text(encoding="utf-8")
    assert "build.data" in log and "build.done" in log and "falling back to" in log


def test_llama_cpp_writes_to_the_log_not_the_terminal(tiny_bundle, tmp_path, capfd):
    """A real llama.cpp load with its own logging on: the C library writes to fd 2 itself."""
    import llama_cpp

    gguf = next(tiny_bundle.glob("model.*.gguf"))
    capfd.readouterr()
    with Quiet(tmp_path / "q.log") as quiet:
        llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=64, verbose=True)
        llm.close()
        ctypes.CDLL(None).printf(b"printf from C, buffered by libc\n")
        print("python's stdout too", flush=True)
        quiet.terminal.write("a stage line\n")
    stdout, stderr = capfd.readouterr()
    log = (tmp_path / "q.log").read_text(encoding="utf-8")
    assert "llama_model_loader" in log and "python's stdout too" in log and "printf from C" in log
    assert stdout == "" and stderr == "a stage line\n"


def test_warnings_are_counted_ours_by_event_theirs_by_kind(tmp_path, capfd):
    with Quiet(tmp_path / "q.log") as quiet:
        structlog.get_logger("t").warning("build.language", note="the base does not write Welsh")
        structlog.get_logger("t").info("build.data")
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # not once per place: both are counted
            warnings.warn("old argument", FutureWarning, stacklevel=1)
            warnings.warn("old argument", FutureWarning, stacklevel=1)
    assert quiet.ours == {"build.language": 1}
    assert quiet.theirs == {"FutureWarning": 2}
    summary = quiet.summary()
    assert summary[0] == f"1 warning(s) of the build: build.language (in {tmp_path / 'q.log'})"
    assert summary[1] == f"the libraries warned too (2 FutureWarning): in {tmp_path / 'q.log'}"
    assert "old argument" in (tmp_path / "q.log").read_text(encoding="utf-8")
    assert capfd.readouterr() == ("", "")


def test_a_stage_line_without_a_terminal_is_written_once_with_its_count_and_time(tmp_path):
    class Out(list):
        def write(self, text):
            self.append(text)

        def flush(self):
            pass

        def isatty(self):
            return False

    out = Out()
    with progress.shown(progress.Terminal(out)):
        with progress.stage("train"):
            progress.steps(4, "steps")
            progress.advance(2)
            progress.steps(3, "steps")  # a time budget shrank the plan
            progress.advance()
        with pytest.raises(RuntimeError), progress.stage("convert"):
            raise RuntimeError("the converter broke")
    assert out[0].startswith("  train     3/3 steps") and out[0].endswith("s\n")
    assert out[1].startswith("  convert") and "failed after" in out[1]
    progress.advance()  # no stage, no terminal: nothing, and no error


@pytest.mark.parametrize("model, given, then", [
    (["--base", "somewhere"], "test", "with --base use --lora-preset tiny"),
    (["--base", "somewhere"], "demo", "with --base use --lora-preset auto"),
    (["--continue", "parent"], "test", "with --continue use --lora-preset tiny"),
])
def test_preset_with_base_is_refused_naming_lora_preset(tmp_path, capsys, model, given, then):
    rc = main(["build", "--data", str(tmp_path), *model, "--preset", given, "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 2 and "--preset sizes a --from-scratch model" in err and then in err
    assert not (tmp_path / "b").exists()


def test_a_chats_only_prepare_is_told_that_is_expected(tmp_path, capsys):
    rc = main(["prepare", str(ROOT / "samples" / "corpus" / "whatsapp"), "--owner", "Ada Lindqvist", "--owner", "Ada L",
               "--out", str(tmp_path / "d")])
    assert rc == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("training tokens by tier:"))
    assert "chats only, as expected for chat exports" in line
    assert "policy" not in line and "0%" not in line
