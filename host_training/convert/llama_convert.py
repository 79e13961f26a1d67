"""Run llama.cpp's own converter (llama_cpp_source) in this process, as its command line does.

    python -m host_training.convert.llama_convert CONVERTER_DIR -- HF_DIR --outfile F --outtype f32

`convert_gguf.convert` starts this in a child process, so the converter's `gguf` package
(gguf-py of the same llama.cpp) is imported first and never mixes with the one installed
for the rest of the pipeline. One change to the converter's behaviour, where its own rule
cannot apply: a byte-level BPE tokenizer whose check-text hash it does not know (a tokenizer
trained or extended here) gets its pre-tokenizer name from what its tokenizer.json declares
(`pretokenizers.name_for`), instead of the converter stopping. And one change to the name it
writes: llama.cpp gives Phi-3's special tokens the strip-whitespace-after behaviour its
tokenizer files declare (rstrip) only when general.name says "phi-3" or "phi3"
(src/llama-vocab.cpp); a Phi-3 GGUF named after a persona would tokenize "<|user|>\nhi" with
a newline that training never saw, so such a name gets " (phi-3)" added. Every other step,
tensor and key is the converter's.

With --dry-run (the preflight) it also prints, before the converter exits, what it would
write for the vocabulary: the tokens it lists and the rows of token_embd / output (one
`PLAN_PREFIX` line on stderr, read by `vocab_rows.Layout.from_plan`). The converter reads no
tensor data for that: its tensors are lazy until written.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path


def _declared_pre_tokenizer(original):
    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return original(self, tokenizer)
        except NotImplementedError:  # a hash it does not know: read the declaration
            from host_training.convert.pretokenizers import UnknownPreTokenizer, name_for

            path = Path(self.dir_model) / "tokenizer.json"
            try:
                name = name_for(json.loads(path.read_text(encoding="utf-8")), path)
            except (OSError, ValueError, UnknownPreTokenizer) as e:
                raise SystemExit(f"error: {e}") from None
            print(f"stratoecho: {path}: tokenizer not in llama.cpp's list of published ones; its declared "
                  f"pre-tokenizer is llama.cpp's {name!r}", file=sys.stderr)
            return name

    return get_vocab_base_pre


PLAN_PREFIX = "stratoecho-vocab-plan: "


def _printing_vocab_plan(original):
    def print_plan(self):
        if self.dry_run:  # the writer exits inside print_plan: speak first
            tokens = self.kv_data[0].get("tokenizer.ggml.tokens")
            rows = {name: int(info.shape[0]) for part in self.tensors for name, info in part.items()
                    if name in ("token_embd.weight", "output.weight")}
            print(PLAN_PREFIX + json.dumps({"tokens": None if tokens is None else len(tokens.value), "rows": rows}),
                  file=sys.stderr)
        return original(self)

    return print_plan


PHI3_NAMES = ("phi-3", "phi3")  # what llama.cpp looks for in general.name


def _with_phi3_name(args: list[str]) -> list[str]:
    """`args` with the --model-name made to name phi-3 when the checkpoint is a Phi-3 whose added
    tokens strip the whitespace after them (Phi-3's own tokenizer files; not Phi-4-mini's)."""
    if "--model-name" not in args or not args or args[0].startswith("-"):
        return args
    hf_dir = Path(args[0])
    try:
        archs = json.loads((hf_dir / "config.json").read_text(encoding="utf-8")).get("architectures") or []
        added = json.loads((hf_dir / "tokenizer.json").read_text(encoding="utf-8")).get("added_tokens") or []
    except (OSError, ValueError):
        return args
    i = args.index("--model-name") + 1
    name = args[i] if i < len(args) else ""
    if ("Phi3ForCausalLM" in archs and any(t.get("rstrip") for t in added)
            and not any(p in name.lower() for p in PHI3_NAMES)):
        args = [*args[:i], f"{name} (phi-3)", *args[i + 1:]]
    return args


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] != "--":
        raise SystemExit("usage: python -m host_training.convert.llama_convert CONVERTER_DIR -- CONVERTER_ARGS...")
    where = Path(argv[0])
    sys.path[:0] = [str(where / "gguf-py"), str(where)]
    from conversion import base  # the converter's own package, found first on the path above

    base.TextModel.get_vocab_base_pre = _declared_pre_tokenizer(base.TextModel.get_vocab_base_pre)
    base.gguf.GGUFWriter.print_plan = _printing_vocab_plan(base.gguf.GGUFWriter.print_plan)
    sys.argv = [str(where / "convert_hf_to_gguf.py"), *_with_phi3_name(argv[2:])]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
