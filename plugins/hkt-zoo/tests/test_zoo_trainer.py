"""hkt_zoo.trainer.HKTTrainer: KD, HKT and FitNet inside transformers.Trainer on a tiny BERT built
from a configuration. The parent stays frozen, bit for bit, and out of the optimiser; the operators
or transfers train; the Trainer saves the child alone, which from_pretrained loads; evaluation
scores the plain child; the Family follows the child's train / eval mode."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")   # transformers.Trainer needs it (hkt-zoo's [trainer] extra)

from transformers import BertConfig, BertForSequenceClassification, TrainingArguments  # noqa: E402

from hkt_core import ConfigError  # noqa: E402
from hkt_zoo.trainer import OPERATORS_FILE, HKTTrainer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def bert(width: int, layers: int, seed: int) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(
        vocab_size=20, hidden_size=width, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * width, max_position_embeddings=16, num_labels=3))


def samples(n: int = 48, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Token sequences of 5 to 8 ids; the label is the first id modulo 3."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        ids = torch.randint(1, 20, (5 + i % 4,), generator=gen)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor(int(ids[0]) % 3)})
    return out


def collate(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pads each batch to its longest sequence (sequence lengths differ between batches)."""
    n = max(len(s["input_ids"]) for s in batch)

    def pad(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, t.new_zeros(n - len(t))])

    return {"input_ids": torch.stack([pad(s["input_ids"]) for s in batch]),
            "attention_mask": torch.stack([pad(s["attention_mask"]) for s in batch]),
            "labels": torch.stack([s["labels"] for s in batch])}


def make(method: str, out, *, steps: int = 6, save_steps: int | None = None, **options) -> HKTTrainer:
    args = TrainingArguments(output_dir=str(out), report_to=[], use_cpu=True, max_steps=steps,
                             per_device_train_batch_size=8, per_device_eval_batch_size=8, learning_rate=3e-3,
                             logging_steps=1, disable_tqdm=True, seed=0,
                             save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500)
    return HKTTrainer(model=bert(16, 1, 1), parent=bert(32, 2, 0), hkt_method=method, args=args,
                      train_dataset=samples(), eval_dataset=samples(16, seed=1), data_collator=collate, **options)


@pytest.mark.parametrize("method", ["kd", "hkt", "fitnet"])
def test_each_method_trains_the_child_and_saves_it_alone(method, tmp_path):
    trainer = make(method, tmp_path / "run")
    parent_before = {k: v.clone() for k, v in trainer.parent.state_dict().items()}
    child_before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    extra = trainer.hkt_parameters()
    extra_before = [p.detach().clone() for p in extra]
    assert (len(extra) == 0) == (method == "kd")

    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))
    parts = {"kd": "hkt_distill", "hkt": "hkt_L2", "fitnet": "hkt_hint"}[method]
    assert all(parts in h for h in trainer.state.log_history if "loss" in h)

    # the parent: bit for bit unchanged, frozen, in eval mode, in no optimiser group
    after = trainer.parent.state_dict()
    assert all(torch.equal(parent_before[k], after[k]) for k in parent_before)
    assert not trainer.parent.training and not any(p.requires_grad for p in trainer.parent.parameters())
    in_optimiser = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not in_optimiser & {id(p) for p in trainer.parent.parameters()}
    assert {id(p) for p in trainer.model.parameters()} <= in_optimiser
    assert {id(p) for p in extra} <= in_optimiser
    # the child and the operators / transfers trained
    assert any(not torch.equal(child_before[k], v) for k, v in trainer.model.state_dict().items()
               if v.is_floating_point())
    assert all(not torch.equal(b, p) for b, p in zip(extra_before, extra)) or not extra

    # evaluation scores the plain child: the Trainer's eval loss is the child's own cross-entropy
    metrics = trainer.evaluate()
    batch = collate(samples(16, seed=1)[:8]), collate(samples(16, seed=1)[8:])
    trainer.model.eval()
    with torch.no_grad():
        own = sum(float(trainer.model(**b).loss) for b in batch) / 2
    assert metrics["eval_loss"] == pytest.approx(own, rel=1e-5)

    # save_model writes the child alone; from_pretrained loads it equal to the child
    trainer.save_model(str(tmp_path / "child"))
    files = sorted(p.name for p in (tmp_path / "child").iterdir())
    assert "model.safetensors" in files and OPERATORS_FILE not in files
    loaded = BertForSequenceClassification.from_pretrained(str(tmp_path / "child"), local_files_only=True).eval()
    assert loaded.state_dict().keys() == trainer.model.state_dict().keys()
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in loaded.state_dict().items())
    x = collate(samples(4, seed=2))
    with torch.no_grad():
        assert torch.equal(loaded(**x).logits, trainer.model(**x).logits)


def test_the_family_follows_the_childs_mode_and_its_native_stream_is_the_child(tmp_path):
    trainer = make("hkt", tmp_path / "run", steps=2)
    trainer.train()
    family, names = trainer.hkt_module, trainer.hkt_input_names
    assert names == ("input_ids", "attention_mask")
    x = collate(samples(6, seed=3))
    inputs = [x[n] for n in names]
    trainer.model.eval()
    with torch.no_grad():
        out = family(*inputs)
        plain = trainer.model(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits
    assert torch.allclose(out.native, plain, atol=1e-5)      # the eval graph: deterministic, the child's
    trainer.model.train()   # what the Trainer does before each step: the Family now runs the train graph
    assert family.child.training and not family.parent.training
    torch.manual_seed(0)
    with torch.no_grad():
        a, b = family(*inputs).native, family(*inputs).native
    assert not torch.equal(a, b)   # dropout on: the child's train graph


def test_checkpoints_hold_the_child_and_the_operators_and_resume_them(tmp_path):
    trainer = make("hkt", tmp_path / "run", steps=4, save_steps=2)
    trainer.train()
    checkpoint = tmp_path / "run" / "checkpoint-4"
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / OPERATORS_FILE).is_file()
    from safetensors.torch import load_file

    saved = load_file(str(checkpoint / OPERATORS_FILE))
    assert saved and all(k.startswith("points.") for k in saved)   # no child, no parent tensors
    fresh = make("hkt", tmp_path / "run2", steps=4)
    fresh._load_from_checkpoint(str(checkpoint))
    state = fresh.hkt_module.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in fresh.model.state_dict().items())


def test_bad_arguments_fail_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="hkt_method = 'dkd' is not one of kd, hkt, fitnet"):
        make("dkd", tmp_path)
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    with pytest.raises(ConfigError, match="parent= must be the trained parent model"):
        HKTTrainer(model=bert(16, 1, 1), args=args, train_dataset=samples(), data_collator=collate)
    with pytest.raises(ConfigError, match=r"hkt_input_names \['pixel_values'\] are not in the batch"):
        make("kd", tmp_path, hkt_input_names=["pixel_values"])


def gpt2(width: int, layers: int, seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=30, n_embd=width, n_layer=layers, n_head=2, n_positions=32,
                                      bos_token_id=0, eos_token_id=0))


@pytest.mark.parametrize("method", ["kd", "hkt", "fitnet"])
def test_a_causal_lm_child_trains_on_the_causal_lm_task(method, tmp_path):
    """GPT-2's forward takes its cache second: both models get their inputs by name."""
    gen = torch.Generator().manual_seed(0)
    data = []
    for _ in range(16):
        ids = torch.randint(0, 30, (10,), generator=gen)
        data.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()})
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=2,
                             per_device_train_batch_size=8, save_strategy="no", disable_tqdm=True)
    parent = gpt2(32, 2, 0)
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    trainer = HKTTrainer(model=gpt2(16, 1, 1), parent=parent, hkt_method=method, args=args, train_dataset=data,
                         eval_dataset=data[:8])
    assert trainer.hkt_task.name == "causal-lm"
    assert torch.isfinite(torch.tensor(trainer.train().training_loss))
    assert torch.isfinite(torch.tensor(trainer.evaluate()["eval_loss"]))
    assert all(torch.equal(before[k], v) for k, v in parent.state_dict().items())


def test_an_optimiser_of_ones_own_gets_the_operators_group(tmp_path):
    child = bert(16, 1, 1)
    optimizer = torch.optim.AdamW(child.parameters(), lr=1e-3)
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=1,
                             per_device_train_batch_size=8, save_strategy="no", disable_tqdm=True)
    trainer = HKTTrainer(model=child, parent=bert(32, 2, 0), hkt_method="hkt", args=args, train_dataset=samples(),
                         data_collator=collate, optimizers=(optimizer, None))
    trainer.train()
    assert len(optimizer.param_groups) == 2
    assert {id(p) for p in optimizer.param_groups[1]["params"]} == {id(p) for p in trainer.hkt_parameters()}
    child = bert(16, 1, 1)
    optimizer = torch.optim.AdamW(child.parameters(), lr=1e-3)
    trainer = HKTTrainer(model=child, parent=bert(32, 2, 0), hkt_method="hkt", args=args, train_dataset=samples(),
                         data_collator=collate,
                         optimizers=(optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)))
    with pytest.raises(ConfigError, match="the scheduler cannot take the operators' group"):
        trainer.train()
