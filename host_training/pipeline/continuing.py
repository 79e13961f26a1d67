"""`build --continue PARENT`: the previous persona, trained further on what is new since.

Every bundle keeps the transformers checkpoint it was converted from in BUNDLE/model (not listed
in [[files]]: the Pi does not need it) with `trained_on.txt`, a digest per conversation it has
learnt. A continue:

  1. reads PARENT (persona.toml, model/) and refuses what cannot work: no model folder, a model
     folder that is not the one the bundle was built from, another family than the bundle says;
  2. splits the data's train.jsonl into what PARENT has not learnt (new, or changed since: a
     conversation that grew by a message is new) and what it has; nothing new is refused;
  3. trains on the new ones plus a replay of the old (`--replay`, default 25 % of the mix, drawn
     by --seed) so it does not forget: LoRA on PARENT's model, whichever way PARENT was built
     (finetune.py), with PARENT's name and system prompt unless given;
  4. the stages after training score PARENT's model beside the new one on the same current
     val.jsonl, in the same quantization: the before and after of persona.toml's lineage.

Pure but for `parent`, which reads PARENT, and `write_trained_on`.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from ..train.tokenizer import Conversation
from .stages import MODEL_DIR, BuildError, Data, PersonaText
from .training import LoraTraining

TRAINED_ON = "trained_on.txt"  # in MODEL_DIR: one digest a line
DEFAULT_REPLAY = 0.25


def digest(conv: Conversation) -> str:
    """A conversation's identity across data folders (its turns, exactly)."""
    return hashlib.sha256(json.dumps(conv, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:20]


def model_digest(model_dir: Path) -> str:
    """What a model folder is: its config and tokenizer, which a continue must not see change."""
    h = hashlib.sha256()
    for name in ("config.json", "tokenizer.json"):
        path = model_dir / name
        h.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b""))
    return h.hexdigest()


@dataclass(frozen=True)
class Parent:
    folder: Path
    manifest: object  # stratoecho.bundle.BundleManifest
    model_dir: Path
    trained_on: frozenset[str]
    persona_sha256: str


def parent(folder: Path) -> Parent:
    """PARENT read and checked (step 1); BuildError saying why and what to do."""
    from stratoecho.bundle import BundleError, load_bundle, sha256_file

    try:
        bundle = load_bundle(folder, verify=False)
    except BundleError as e:
        raise BuildError(f"--continue: {e}") from None
    m = bundle.manifest
    model_dir = bundle.root / MODEL_DIR
    if not (model_dir / "config.json").is_file() or not (model_dir / TRAINED_ON).is_file():
        raise BuildError(
            f"--continue {folder}: no model folder ({model_dir} with config.json and {TRAINED_ON}); the bundle was "
            "built before bundles kept one, or it was removed. Build anew with --from-scratch or --base, or continue "
            "from a bundle that has it")
    recorded = m.training.get("model_folder_sha256")
    if recorded is not None and recorded != model_digest(model_dir):
        raise BuildError(f"--continue {folder}: {model_dir} is not the model this bundle was built from (its config "
                         "or tokenizer changed); restore it, or build anew")
    family = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("model_type")
    if family != m.model.architecture:
        raise BuildError(f"--continue {folder}: {model_dir} holds a {family} model but the bundle's GGUF is "
                         f"{m.model.architecture}; the folder is from another model. Build anew")
    seen = frozenset(filter(None, (model_dir / TRAINED_ON).read_text(encoding="utf-8").split()))
    return Parent(bundle.root, m, model_dir, seen, sha256_file(bundle.root / "persona.toml"))


@dataclass(frozen=True)
class Plan:
    data: Data  # what training sees: new + replayed, and the current val
    new: int
    replayed: int
    already_learnt: int  # train conversations PARENT had learnt
    val_seen_by_parent: int  # held-out conversations PARENT trained on: its "before" is then optimistic


def plan(data: Data, p: Parent, replay: float, seed: int) -> Plan:
    """Step 2-3: the new conversations and a seeded replay of the old; BuildError when nothing is new."""
    new = [c for c in data.train if digest(c) not in p.trained_on]
    old = [c for c in data.train if digest(c) in p.trained_on]
    if not new:
        raise BuildError(
            f"--continue {p.folder}: nothing new to learn: every conversation of {data.train_path} is one the parent "
            "has learnt. Add exports with `prepare ... --out " + str(data.folder) + "` first")
    n_replay = min(len(old), round(len(new) * replay / (1 - replay))) if replay > 0 else 0
    replayed = random.Random(seed).sample(old, n_replay)
    mixed = new + replayed
    random.Random(seed + 1).shuffle(mixed)
    val_seen = sum(digest(c) in p.trained_on for c in data.val)
    return Plan(Data(data.folder, mixed, data.val), len(new), n_replay, len(old), val_seen)


class ContinueTraining(LoraTraining):
    """LoRA on PARENT's model (training.LoraTraining); its preflight leaves out the converter, which
    turned this very model into PARENT's GGUF when PARENT was built."""

    def check(self):
        from .. import preflight

        try:
            self.preflight = preflight.run(self.opts.base, quant=self.quant, target=self.target,
                                           preset=self.opts.preset, max_length=self.opts.max_length,
                                           chat_template_mode=self.opts.chat_template, convert=False)
        except preflight.PreflightError as e:
            raise BuildError(f"preflight: {e}") from None
        return self.preflight


def persona_text(name: str | None, system_prompt: str | None, p: Parent) -> PersonaText:
    """The parent's name and system prompt (the model learnt with them) unless the options say otherwise."""
    return PersonaText(name or p.manifest.persona.name,
                       system_prompt if system_prompt is not None else p.manifest.persona.system_prompt)


def write_trained_on(model_dir: Path, conversations: list[Conversation], parent_seen: frozenset[str] = frozenset()):
    """The model folder's record of what it has learnt: its parent's and its own conversations."""
    seen = sorted(parent_seen | {digest(c) for c in conversations})
    (model_dir / TRAINED_ON).write_text("\n".join(seen) + "\n", encoding="utf-8")


def lineage(p: Parent, pl: Plan, replay: float, prepare_runs: list[dict], before: dict, after: dict,
            quant: str) -> dict:
    """persona.toml [training.lineage]: the parent, the data, and the figures before and after."""
    pm = p.manifest
    return dict(
        parent=dict(bundle=str(p.folder.resolve()), persona_sha256=p.persona_sha256,
                    model_sha256=next((f.sha256 for f in pm.files if f.path == pm.model.file), ""),
                    data_sha256=pm.training.get("data_sha256", ""),
                    generation=int(pm.training.get("lineage", {}).get("generation", 1)),
                    val_perplexity=pm.eval.get("val_perplexity")),
        generation=int(pm.training.get("lineage", {}).get("generation", 1)) + 1,
        new_conversations=pl.new, replayed_conversations=pl.replayed, replay_share=replay,
        already_learnt=pl.already_learnt, val_seen_by_parent=pl.val_seen_by_parent,
        prepare_runs=[r.get("run") for r in prepare_runs if r.get("run") is not None],
        before_val_loss=round(before["val_loss"], 5), before_val_perplexity=round(before["val_perplexity"], 4),
        after_val_loss=round(after["val_loss"], 5), after_val_perplexity=round(after["val_perplexity"], 4),
        figures_on=f"the current val.jsonl, persona tokens, both models in {quant}",
    )
