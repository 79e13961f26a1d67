"""An Ollama `Modelfile`: FROM the bundle's GGUF, its chat template in Ollama's Go template
syntax, its system prompt, stop strings and sampling defaults.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

MODELFILE = "Modelfile"


# Ollama has no Jinja: its templates are Go text/template over .Messages (each with .Role and
# .Content; the Modelfile's SYSTEM arrives as the first message). This one renders exactly
# what the ChatML Jinja template renders with add_generation_prompt: every turn closed by
# <|im_end|> and a newline, then the open assistant header.
CHATML_GO_TEMPLATE = (
    "{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)
_PROBE_CONVERSATION = [
    {"role": "system", "content": "S1 system"},
    {"role": "user", "content": "U1 first"},
    {"role": "assistant", "content": "A1 reply"},
    {"role": "user", "content": "U2 second\nline"},
]


def render_chatml(messages: Sequence[dict]) -> str:
    """What ChatML (and CHATML_GO_TEMPLATE) makes of `messages`, with the generation prompt."""
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


def is_chatml(chat_template: str, bos_token: str = "", eos_token: str = "") -> bool:
    """Whether the Jinja `chat_template` renders a conversation that starts with a system turn
    (as the Modelfile's always do) exactly as ChatML does. A template that fails to render is not."""
    import jinja2

    try:
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        rendered = env.from_string(chat_template).render(
            messages=_PROBE_CONVERSATION, add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token)
    except Exception:  # noqa: BLE001 - any template error (raise_exception, unknown filter) means "not ChatML"
        return False
    return rendered == render_chatml(_PROBE_CONVERSATION)


def _triple_quoted(text: str) -> tuple[str, bool]:
    """(text for a Modelfile \"\"\"...\"\"\" value, whether it had to change). Ollama's parser
    has no escapes: a value cannot hold three double quotes in a row."""
    safe = text.replace('"""', "'''")
    return f'"""{safe}"""', safe != text


def _param_value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):  # quoted always; Ollama's parser has no escapes, so " cannot appear inside
        return '"' + v.replace('"', "'") + '"'
    return str(v)


def ollama_model_name(persona_name: str) -> str:
    """A name `ollama create` accepts: lowercase letters, digits, - and _."""
    name = re.sub(r"[^a-z0-9_-]+", "-", unicodedata.normalize("NFKD", persona_name).encode("ascii", "ignore")
                  .decode().lower()).strip("-_")
    return name or "persona"


def modelfile_text(manifest, model_ref: str | None = None) -> str:
    """The Modelfile for a bundle's manifest (a BundleManifest). FROM `model_ref`, by default
    the bundle's GGUF beside the Modelfile (Ollama resolves a relative path from the Modelfile's folder)."""
    p, s, m = manifest.persona, manifest.sampling, manifest.model
    name = ollama_model_name(p.name)
    L = [
        f"# Ollama Modelfile for the persona {p.name!r}, written from persona.toml; regenerate rather than edit.",
        "# Try the persona on a desktop, from this folder:",
        f"#   ollama create {name} -f Modelfile",
        f"#   ollama run {name}",
        "",
        f"FROM {model_ref or './' + m.file}",
        "",
    ]
    if is_chatml(p.chat_template, p.bos_token, p.eos_token):
        L += ["# The bundle's chat template (Jinja, in persona.toml and the GGUF) is ChatML;",
              "# this is the same template in Ollama's Go syntax.",
              f'TEMPLATE """{CHATML_GO_TEMPLATE}"""', ""]
    else:
        L += ["# NOTE: the bundle's chat template is NOT ChatML, and Ollama cannot run Jinja templates,",
              "# so no TEMPLATE is written: Ollama uses the template it recognises from the GGUF's",
              "# tokenizer.chat_template, or a bare prompt if it recognises none. Check the result with",
              f"# `ollama show {name} --template` against the bundle's Jinja template, quoted here:"]
        L += [f"#   {line}" for line in p.chat_template.splitlines()] + [""]
    system, changed = _triple_quoted(p.system_prompt)
    if changed:
        L.append('# The system prompt held """, which a Modelfile cannot; it is written with \'\'\' instead.')
    L += [f"SYSTEM {system}", ""]
    L += [f"PARAMETER stop {_param_value(stop)}" for stop in p.stop]
    L += [
        f"PARAMETER temperature {_param_value(s.temperature)}",
        f"PARAMETER top_p {_param_value(s.top_p)}",
        f"PARAMETER top_k {_param_value(s.top_k)}",
        f"PARAMETER repeat_penalty {_param_value(s.repeat_penalty)}",
        f"PARAMETER num_predict {_param_value(s.max_tokens)}",
        "# The context the model was trained with; beyond it a small model degrades.",
        f"PARAMETER num_ctx {_param_value(m.context_length)}",
    ]
    return "\n".join(L) + "\n"


def write_modelfile(bundle_dir: str | Path, manifest=None, out_dir: str | Path | None = None) -> Path:
    """Write BUNDLE_DIR/Modelfile for `manifest`, or for BUNDLE_DIR/persona.toml when None
    (read without checking the sha256s, so build can call it before persona.toml is final).
    With `out_dir` another folder, the Modelfile goes there and names the GGUF by its absolute path."""
    bundle_dir = Path(bundle_dir)
    if manifest is None:
        from stratoecho.bundle import load_bundle

        manifest = load_bundle(bundle_dir, verify=False).manifest
    out_dir = Path(out_dir) if out_dir is not None else bundle_dir
    same = out_dir.resolve() == bundle_dir.resolve()
    ref = None if same else str((bundle_dir / manifest.model.file).resolve())
    path = out_dir / MODELFILE
    path.write_text(modelfile_text(manifest, ref), encoding="utf-8")
    return path
