"""Run llama.cpp's own converter (llama_cpp_source) in this process, as its command line does.

    python -m host_training.llama_convert CONVERTER_DIR -- HF_DIR --outfile F --outtype f32

`convert_gguf.convert` starts this in a child process, so the converter's `gguf` package
(gguf-py of the same llama.cpp) is imported first and never mixes with the one installed
for the rest of the pipeline. One change to the converter's behaviour, where its own rule
cannot apply: a byte-level BPE tokenizer whose check-text hash it does not know (a tokenizer
trained or extended here) gets its pre-tokenizer name from what its tokenizer.json declares
(`pretokenizers.name_for`), instead of the converter stopping. Every other step, tensor and
key is the converter's.
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
            from host_training.pretokenizers import UnknownPreTokenizer, name_for

            path = Path(self.dir_model) / "tokenizer.json"
            try:
                name = name_for(json.loads(path.read_text(encoding="utf-8")), path)
            except (OSError, ValueError, UnknownPreTokenizer) as e:
                raise SystemExit(f"error: {e}") from None
            print(f"stratoecho: {path}: tokenizer not in llama.cpp's list of published ones; its declared "
                  f"pre-tokenizer is llama.cpp's {name!r}", file=sys.stderr)
            return name

    return get_vocab_base_pre


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] != "--":
        raise SystemExit("usage: python -m host_training.llama_convert CONVERTER_DIR -- CONVERTER_ARGS...")
    where = Path(argv[0])
    sys.path[:0] = [str(where / "gguf-py"), str(where)]
    from conversion import base  # the converter's own package, found first on the path above

    base.TextModel.get_vocab_base_pre = _declared_pre_tokenizer(base.TextModel.get_vocab_base_pre)
    sys.argv = [str(where / "convert_hf_to_gguf.py"), *argv[2:]]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
