"""LoRA's training rows (host_training/train/packing.py) and the step's shortcuts (host_training/train/lora_step.py).

The shortcuts change nothing but speed: packed rows give every conversation the logits it has
alone, targets-only logits are the model's own, and a model where either is not so is caught
before training (check_fast_path) rather than trained wrong.
"""

from __future__ import annotations

import pytest

from host_training.train import lora_step, packing
from host_training.train.packing import IGNORE


def ex(n: int, first_target: int = 1, tag: int = 0) -> tuple[list[int], list[bool]]:
    """An example of n tokens (ids tag*1000 + i) whose tokens from `first_target` on are targets."""
    return [tag * 1000 + i for i in range(n)], [i >= first_target for i in range(n)]


# ----------------------------------------------------------------------------- row length
def test_row_length_holds_most_conversations_whole():
    lengths = [100] * 95 + [700] * 5
    assert packing.fit_row_length(lengths, 1024) == 128  # 95 % hold in 100 -> the next multiple of 64
    assert packing.fit_row_length(lengths, 1024, quantile=1.0) == 704
    assert packing.fit_row_length([731] * 10, 1024) == 768
    assert packing.fit_row_length([2000], 1024) == 1024  # never longer than the context
    assert packing.fit_row_length([10, 20], 1024) == packing.MIN_ROW
    assert packing.fit_row_length([10], 64) == 64  # a context below the floor is the cap
    assert packing.fit_row_length([], 512) == packing.MIN_ROW
    with pytest.raises(ValueError):
        packing.fit_row_length([10], 0)


# ----------------------------------------------------------------------------- packing
def test_pack_keeps_every_token_once_and_restarts_positions():
    examples = [ex(60, tag=1), ex(30, tag=2), ex(50, tag=3), ex(40, tag=4), ex(20, tag=5)]
    rows = packing.pack(examples, 100)
    assert all(len(r) <= 100 for r in rows)
    assert len(rows) == 2  # 200 tokens fill two rows exactly: best fit finds it
    flat = sorted(t for r in rows for t in r.input_ids)
    assert flat == sorted(t for ids, _ in examples for t in ids)
    for r in rows:
        assert len(r.input_ids) == len(r.labels) == len(r.position_ids)
        starts = [i for i, p in enumerate(r.position_ids) if p == 0]
        assert len(starts) == r.sequences
        # each sequence's positions run 0, 1, 2, ... and its tokens are one example, in order
        for a, b in zip(starts, starts[1:] + [len(r)]):
            assert r.position_ids[a:b] == list(range(b - a))
            assert len({t // 1000 for t in r.input_ids[a:b]}) == 1
            assert r.labels[a] == IGNORE  # the first token of a sequence is never a target
            assert r.labels[a + 1:b] == r.input_ids[a + 1:b]


def test_a_packed_sequence_never_predicts_its_first_token_from_the_one_before():
    """A piece of a long conversation may start inside a persona turn (target from its first
    token): alone, position 0 is never predicted; packed, it must not be either."""
    rows = packing.pack([ex(10, first_target=0, tag=1), ex(6, first_target=0, tag=2)], 16)
    (row,) = rows
    assert row.labels[0] == IGNORE and row.labels[10] == IGNORE
    assert packing.row_tokens(rows) == (16, 14)


def test_pack_is_deterministic_and_refuses_long_examples():
    examples = [ex(n, tag=i) for i, n in enumerate([30, 30, 30, 70, 70, 10])]
    assert packing.pack(examples, 100) == packing.pack(examples, 100)
    with pytest.raises(ValueError, match="example 1 has 120 tokens"):
        packing.pack([ex(10), ex(120)], 100)


def test_row_tokens_counts_targets():
    rows = packing.pack([ex(10, first_target=4), ex(5, first_target=5)], 64)
    assert packing.row_tokens(rows) == (15, 6)


def test_collator_pads_as_a_sequence_of_its_own():
    rows = packing.pack([ex(6, tag=1), ex(3, tag=2)], 6)
    batch = packing.Collator(pad_id=7)([vars(r) for r in rows])
    assert batch["input_ids"].shape == (2, 6)
    short = batch["input_ids"][1].tolist()
    assert short[3:] == [7, 7, 7]
    assert batch["labels"][1].tolist()[3:] == [IGNORE] * 3
    assert batch["position_ids"][1].tolist() == [0, 1, 2, 0, 1, 2]
    assert "attention_mask" not in batch  # the positions say where sequences start


# ----------------------------------------------------------------------------- the machine
def test_bf16_is_read_from_the_cpu_flags():
    assert lora_step.cpu_has_bf16("processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16 fma\n")
    assert lora_step.cpu_has_bf16("flags : fpu amx_bf16 amx_tile\n")
    assert lora_step.cpu_has_bf16("Features : fp asimd bf16 i8mm\n")  # an Arm core with BF16
    assert not lora_step.cpu_has_bf16("flags : fpu sse avx2 avx512f avx512bw fma\n")
    assert not lora_step.cpu_has_bf16("Features : fp asimd evtstrm crc32 cpuid\n")  # a Pi 4's Cortex-A72


def test_physical_cores_counts_sibling_sets(tmp_path, monkeypatch):
    monkeypatch.setattr(lora_step.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    for cpu, siblings in {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"}.items():
        d = tmp_path / f"cpu{cpu}" / "topology"
        d.mkdir(parents=True)
        (d / "thread_siblings_list").write_text(siblings + "\n")
    assert lora_step.physical_cores(tmp_path) == 2
    monkeypatch.setattr(lora_step.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4})  # cpu4 unreadable
    assert lora_step.physical_cores(tmp_path) == 5


def test_busy_cores_from_proc_stat(monkeypatch):
    monkeypatch.setattr(lora_step.os, "cpu_count", lambda: 2)
    # cpu user nice system idle iowait irq softirq steal: 300 of 400 jiffies idle -> a quarter busy, of 2 CPUs
    stats = iter(["cpu  100 0 100 800 0 0 0 0 0 0\n", "cpu  150 0 150 1100 0 0 0 0 0 0\n"])
    assert lora_step.busy_cores(0.0, read=lambda: next(stats)) == pytest.approx(0.5)
    assert lora_step.busy_cores(0.0, read=lambda: "") == 0.0  # unreadable: nothing known to be busy


def test_checkpointing_only_when_activations_would_not_fit(monkeypatch):
    import torch
    from transformers import LlamaConfig

    cfg = LlamaConfig(hidden_size=576, num_attention_heads=9, num_hidden_layers=30, intermediate_size=1536)
    need = lora_step.activation_bytes(cfg, 4, 768, 2)
    assert 4e9 < need < 6e9  # SmolLM2-135M, 4 rows of 768 in bf16: ~5 GB (checked against a real step's RSS)
    monkeypatch.setattr(lora_step, "available_memory_bytes", lambda device: 24e9)
    plan = lora_step.plan_step(cfg, "cpu", 4, 768, None, torch.float32)
    monkeypatch.setattr(lora_step, "available_memory_bytes", lambda device: 8e9)
    small = lora_step.plan_step(cfg, "cpu", 4, 768, None, torch.float32)
    assert small.checkpointing and "available" in small.checkpointing_why
    if plan.autocast:  # the bf16 estimate is half the fp32 one
        assert not plan.checkpointing
    assert lora_step.plan_step(cfg, "cpu", 4, 768, True, torch.float32).checkpointing
    assert not lora_step.plan_step(cfg, "cpu", 4, 768, False, torch.float32).checkpointing
    monkeypatch.setattr(lora_step, "available_memory_bytes", lambda device: None)
    assert lora_step.plan_step(cfg, "cpu", 4, 768, None, torch.float32).checkpointing


def test_threads_are_shared_among_processes_and_obey_omp(monkeypatch):
    import torch
    from transformers import LlamaConfig

    cfg = LlamaConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=128)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(lora_step, "physical_cores", lambda: 8)
    monkeypatch.setattr(lora_step, "busy_cores", lambda: 0.2)
    assert lora_step.plan_step(cfg, "cpu", 1, 128, None, torch.float32).threads == 8
    assert lora_step.plan_step(cfg, "cpu", 1, 128, None, torch.float32, processes=2).threads == 4
    monkeypatch.setattr(lora_step, "busy_cores", lambda: 2.7)  # three cores kept busy by others
    assert lora_step.plan_step(cfg, "cpu", 1, 128, None, torch.float32).threads == 5
    monkeypatch.setattr(lora_step, "busy_cores", lambda: 11.0)
    assert lora_step.plan_step(cfg, "cpu", 1, 128, None, torch.float32).threads == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert lora_step.plan_step(cfg, "cpu", 1, 128, None, torch.float32).threads == torch.get_num_threads()


# ----------------------------------------------------------------------------- the shortcuts, on a real model
@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    import torch
    from transformers import AutoModelForCausalLM

    from host_training.base.tiny_models import tiny_llama_bpe

    path = tiny_llama_bpe(tmp_path_factory.mktemp("llama") / "base")
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)


def test_targets_only_loss_is_the_models_own(tiny_llama):
    import torch

    examples = [ex(40, first_target=25, tag=0), ex(30, first_target=0, tag=0)]  # a target at position 0 too
    examples = [([t % 600 for t in ids], tg) for ids, tg in examples]
    rows = [packing.pack([e], 40)[0] for e in examples]
    batch = packing.Collator(pad_id=0)([vars(r) for r in rows])
    with torch.no_grad():
        fast = lora_step.target_loss(tiny_llama, batch, targets_only=True)
        full = lora_step.target_loss(tiny_llama, batch, targets_only=False)
        # transformers' own loss, each example alone with its own padding-free forward
        own = [tiny_llama(input_ids=torch.tensor([ids]), labels=torch.tensor([[t if y else -100 for t, y in
                                                                               zip(ids, tg)]])).loss
               for ids, tg in examples]
    n = [sum(tg[1:]) for _, tg in examples]
    weighted = sum(float(loss) * k for loss, k in zip(own, n)) / sum(n)
    assert float(fast) == pytest.approx(float(full), rel=1e-5)
    assert float(fast) == pytest.approx(weighted, rel=1e-5)


class Leaky(__import__("torch").nn.Module):
    """A causal LM that ignores position ids, so packed sequences see each other (as a model
    without packed-sequence masks would)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.base_model_prefix = inner.base_model_prefix
        setattr(self, inner.base_model_prefix, inner.model)

    def get_output_embeddings(self):
        return self.inner.get_output_embeddings()

    def forward(self, input_ids=None, position_ids=None, **kw):
        return self.inner(input_ids=input_ids, **kw)


class Scaled(Leaky):
    """A causal LM whose forward scales its logits after the output layer (targets-only would miss it)."""

    def forward(self, input_ids=None, position_ids=None, **kw):
        out = self.inner(input_ids=input_ids, position_ids=position_ids, **kw)
        out.logits = out.logits * 2.0
        return out


def _two(tiny_llama):
    return [([(7 * i) % 600 for i in range(30)], [i > 3 for i in range(30)]),
            ([(11 * i + 5) % 600 for i in range(20)], [True] * 20)]  # a piece that starts inside a persona turn


def test_fast_path_holds_on_a_llama(tiny_llama):
    path = lora_step.check_fast_path(tiny_llama, _two(tiny_llama), pad_id=0)
    assert path.packing and path.targets_only
    assert path.packing_diff < 1e-5 and path.targets_only_diff < 1e-5


def test_fast_path_refuses_a_model_whose_packed_rows_leak(tiny_llama):
    path = lora_step.check_fast_path(Leaky(tiny_llama), _two(tiny_llama), pad_id=0)
    assert not path.packing and path.packing_diff > 1e-3


def test_fast_path_refuses_targets_only_where_logits_are_post_processed(tiny_llama):
    path = lora_step.check_fast_path(Scaled(tiny_llama), _two(tiny_llama), pad_id=0)
    assert path.packing and not path.targets_only


def test_fast_path_knows_gemma2s_soft_cap(tmp_path):
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    cfg = Gemma2Config(vocab_size=600, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, final_logit_softcapping=3.0,
                       max_position_embeddings=256)
    model = Gemma2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)  # logits large enough that the cap bites
    path = lora_step.check_fast_path(model, _two(None), pad_id=0)
    assert path.targets_only


def test_the_trainer_autocasts_on_the_cpu_when_told(tiny_llama):
    """The targets-only loss never calls the model's forward, so accelerate's autocast around it
    would not apply: the trainer's own does (a bf16 loss differs from the fp32 one by rounding)."""
    import torch

    trainer = object.__new__(lora_step.trainer_class())
    rows = [packing.pack([e], len(e[0]))[0] for e in _two(tiny_llama)]
    batch = packing.Collator(pad_id=0)([vars(r) for r in rows])
    losses = {}
    for autocast in (False, True):
        trainer.targets_only, trainer.cpu_autocast = True, autocast
        with torch.no_grad():
            losses[autocast] = float(trainer.compute_loss(tiny_llama, batch))
    assert losses[False] == pytest.approx(float(lora_step.target_loss(tiny_llama, batch, True)), rel=1e-6)
    assert 1e-6 < abs(losses[True] - losses[False]) / losses[False] < 2e-2
