"""hkt's methods inside ``transformers.Trainer``: keep your Trainer loop, add KD, HKT or FitNet.

:class:`HKTTrainer` is a ``transformers.Trainer`` whose model is the child; the frozen parent is
given beside it::

    trainer = HKTTrainer(model=child, parent=parent, hkt_method="hkt", args=args,
                         train_dataset=train, eval_dataset=test, data_collator=collator)
    trainer.train()
    trainer.save_model("child")      # the child alone: a save_pretrained folder

:class:`HKTTrainerMixin` is the same behaviour for another ``Trainer`` subclass (TRL's trainers
subclass it): ``class HKTSFTTrainer(HKTTrainerMixin, SFTTrainer): pass``.

The methods (``hkt_method``):

- ``"kd"``: Hinton distillation, the task's distillation loss between the child's logits and the
  frozen parent's (``kd_temperature``, ``kd_weight``), the parent run without autograd.
- ``"hkt"``: the child trains inside a :class:`hkt_core.Family` with the parent (``hkt_config``, an
  :class:`hkt_core.HKTConfig`; ``hkt_stages`` alignment stages found automatically); the loss is the
  Family's composite ``a1*L1 + a2*L2 + a3*L3``.
- ``"fitnet"``: FitNet hints at the automatic alignment's points (:class:`hkt_core.AlignedFeatures`
  with learned transfers), the relative squared error of ``hkt fitnet``, weighted by
  ``hint_weight``, added to the task loss.

What the Trainer sees stays the child's:

- ``trainer.model`` is the child; checkpoints and ``save_model`` write the child alone
  (``save_pretrained``), which ``from_pretrained`` loads as a plain model. The ETM operators
  (``hkt``) and the transfers (``fitnet``) are saved beside it in each ``checkpoint-N`` folder
  (``hkt_operators.safetensors``) so that ``train(resume_from_checkpoint=...)`` resumes them too.
- The parent is frozen (``requires_grad`` off), kept in eval mode, moved to the child's device,
  and never in the optimiser. The optimiser is the Trainer's own over the child, plus one more
  group for the operators or transfers, at the Trainer's learning rate and weight decay.
- Training runs the method; evaluation and prediction (``model.eval()``) run the plain child and
  report the child's own loss, as the Trainer does without hkt. The Family runs the child's train
  or eval graph by the child's mode (``model.train()`` / ``model.eval()``).
- Labels are ``inputs["labels"]`` (the first of ``args.label_names``). The model inputs are the
  batch's tensors that the child's ``forward`` takes, in the order ``input_ids``, ``pixel_values``,
  ``input_values``, ``attention_mask``, ``token_type_ids``, ``position_ids`` (``hkt_input_names``
  to choose); every batch must hold the same ones. They are passed to both models by name.
- The alignment (``hkt``, ``fitnet``) is found once, on a batch of two training samples
  (``hkt_example_inputs``: a batch of your own); batches of other sizes and sequence lengths
  train too.

Scope: one process (``hkt`` and ``fitnet`` run the models outside the Trainer's distributed
wrapper, so multi-process training is refused for them; ``kd`` runs the model the Trainer
wraps). The loss is a mean over the batch (``num_items_in_batch`` is not used).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import torch
from torch import nn

from hkt_core import ConfigError

#: the methods :class:`HKTTrainer` runs
METHODS = ("kd", "hkt", "fitnet")
#: the order of the model inputs taken from a batch (``hkt_core.data.INPUT_ORDER``)
INPUT_ORDER = ("input_ids", "pixel_values", "input_values", "attention_mask", "token_type_ids", "position_ids")
#: the file of a checkpoint folder that holds the operators or transfers
OPERATORS_FILE = "hkt_operators.safetensors"


def _fail(message: str) -> None:
    raise ConfigError(f"HKTTrainer: {message}")


def _logits(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    logits = output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    _fail(f"the model returned {type(output).__name__} without logits")


@cache
def _by_name_class(names: tuple[str, ...]) -> type:
    """A module class that takes ``names`` by position and passes them to its ``model`` by name,
    returning the logits (what the Family and the alignment trace)."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return _logits(self.model(**dict(zip(names, inputs))))

    forward.__signature__ = inspect.Signature(   # type: ignore[attr-defined]  # torch.export reads the names
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
    return type("ByName", (_ByName,), {"forward": forward})


class _ByName(nn.Module):
    """``model`` called by keyword; its mode is the model's (``training`` reads and follows it), so the
    Family picks the child's train or eval graph by the mode the Trainer set on the child."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def training(self) -> bool:   # type: ignore[override]
        model = self.__dict__.get("_modules", {}).get("model")
        return bool(model.training) if model is not None else True

    @training.setter
    def training(self, mode: bool) -> None:
        pass   # the wrapped model holds the mode (nn.Module.train reaches it as a sub-module)


def by_name(model: nn.Module, names: Sequence[str]) -> nn.Module:
    """``model`` as a module that takes ``names`` by position and returns its logits."""
    return _by_name_class(tuple(names))(model)


class HKTTrainerMixin:
    """KD, HKT or FitNet in a ``transformers.Trainer`` subclass (module docstring); put it first:
    ``class MyTrainer(HKTTrainerMixin, SomeTrainer)``."""

    def __init__(self, *args: Any, parent: nn.Module | None = None, hkt_method: str = "hkt", hkt_stages: int = 2,
                 hkt_config: Any = None, kd_temperature: float | None = None, kd_weight: float | None = None,
                 hint_weight: float = 1.0, hkt_task: Any = None, hkt_input_names: Sequence[str] | None = None,
                 hkt_example_inputs: Mapping[str, torch.Tensor] | None = None, **kwargs: Any) -> None:
        import hkt_core

        if hkt_method not in METHODS:
            _fail(f"hkt_method = {hkt_method!r} is not one of {', '.join(METHODS)}")
        if not isinstance(parent, nn.Module):
            _fail(f"parent= must be the trained parent model (an nn.Module), got {type(parent).__name__}")
        defaults = hkt_core.lookup("methods", "kd").Options()   # KD's own temperature and weight
        self.hkt_method = hkt_method
        self.hkt_stages = int(hkt_stages)
        self.kd_temperature = float(defaults.temperature if kd_temperature is None else kd_temperature)
        self.kd_weight = float(defaults.weight if kd_weight is None else kd_weight)
        self.hint_weight = float(hint_weight)
        self._hkt_task = hkt_task
        self._hkt_given_names = tuple(hkt_input_names) if hkt_input_names is not None else None
        #: the module trained beside the child (the Family or the hinted features), None for kd
        self.hkt_module: nn.Module | None = None
        self._hkt_logs: dict[str, list[float]] = {}
        super().__init__(*args, **kwargs)
        if self.model is None or self.model is parent:
            _fail("model= must be the child, a model other than the parent")
        self.loss_is_scaled_for_ga = False   # our training loss is a mean over the batch
        self.parent = parent
        parent.requires_grad_(False)
        parent.eval()
        reference = next(iter(self.model.parameters()), None)
        if reference is not None:
            parent.to(reference.device)
        if hkt_method != "kd" and self.args.world_size > 1:
            _fail(f"hkt_method = {hkt_method!r} runs on one process (world size {self.args.world_size}); "
                  f"use hkt_method = 'kd' with several processes, or hkt train --nproc")
        example = dict(hkt_example_inputs) if hkt_example_inputs is not None else self._hkt_example_batch()
        self.hkt_input_names = self._hkt_names(example)
        if hkt_method != "kd":
            self._hkt_build(example, hkt_config)

    # -- building ---------------------------------------------------------------------------------
    @property
    def hkt_task(self) -> Any:
        """The task whose losses the methods use: ``hkt_task`` (a task or a registered name), else
        ``causal-lm`` for a causal LM and ``classification`` otherwise."""
        if self._hkt_task is None or isinstance(self._hkt_task, str):
            from hkt_core import lookup

            name = self._hkt_task or ("causal-lm" if self._hkt_causal() else "classification")
            self._hkt_task = lookup("tasks", name)
        return self._hkt_task

    def _hkt_causal(self) -> bool:
        name = type(self.model).__name__
        return name.endswith(("ForCausalLM", "LMHeadModel"))

    def _hkt_example_batch(self) -> dict[str, Any]:
        """A batch of (at most) two training samples, collated as the Trainer collates them."""
        data = self.train_dataset
        if data is None:
            _fail("no train_dataset: give hkt_example_inputs= (a batch) to find the alignment on")
        if isinstance(data, torch.utils.data.IterableDataset):
            it = iter(data)
            samples = [s for _, s in zip(range(2), it)]
        else:
            samples = [data[i] for i in range(min(2, len(data)))]
        collator = self._get_collator_with_removed_columns(self.data_collator, description="hkt example")
        batch = collator(samples)
        return self._prepare_inputs(batch)

    def _hkt_label_name(self) -> str:
        names = list(getattr(self, "label_names", None) or ["labels"])
        return names[0]

    def _hkt_names(self, batch: Mapping[str, Any]) -> tuple[str, ...]:
        if self._hkt_given_names is not None:
            missing = [n for n in self._hkt_given_names if n not in batch]
            if missing:
                _fail(f"hkt_input_names {list(missing)} are not in the batch (keys: {', '.join(batch)})")
            return self._hkt_given_names
        params = inspect.signature(type(self.model).forward).parameters
        labels = set(getattr(self, "label_names", None) or ["labels"])
        names = [k for k in INPUT_ORDER if k in batch and k in params]
        names += [k for k, v in batch.items() if k not in names and k not in labels and k in params
                  and isinstance(v, torch.Tensor)]
        if not names:
            _fail(f"no model input in the batch (keys: {', '.join(batch)}); name them with hkt_input_names=")
        return tuple(names)

    def _hkt_build(self, example: Mapping[str, Any], config: Any) -> None:
        from hkt_core import align

        inputs = tuple(example[n] for n in self.hkt_input_names)
        parent, child = by_name(self.parent, self.hkt_input_names), by_name(self.model, self.hkt_input_names)
        alignment = align(parent, child, inputs, stages=self.hkt_stages)
        if self.hkt_method == "hkt":
            from hkt_core import Family, HKTConfig

            self.hkt_module = Family(parent, child, alignment, config if config is not None else HKTConfig(),
                                     example_inputs=inputs, task=self.hkt_task)
        else:
            from hkt_core import AlignedFeatures

            if not alignment.mixing_pairs:
                _fail("fitnet needs at least one aligned point before the predictions (hkt_stages >= 2)")
            self.hkt_module = AlignedFeatures(parent, child, alignment, inputs, transfers=True)
        self.hkt_alignment = alignment

    def hkt_parameters(self) -> list[nn.Parameter]:
        """The parameters trained beside the child's: the ETM operators (hkt) or the transfers
        (fitnet); none for kd. Never the parent's."""
        if self.hkt_module is None:
            return []
        own = {id(p) for p in self.model.parameters()}
        return [p for p in self.hkt_module.parameters() if p.requires_grad and id(p) not in own]

    # -- the optimiser ----------------------------------------------------------------------------
    def create_optimizer(self, *args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(*args, **kwargs)
        extra = self.hkt_parameters()
        if extra:
            inside = {id(p) for group in optimizer.param_groups for p in group["params"]}
            missing = [p for p in extra if id(p) not in inside]
            if missing:
                if getattr(self, "lr_scheduler", None) is not None:
                    _fail("an optimizer and a scheduler were given (optimizers=...): the scheduler cannot take the "
                          "operators' group; give no scheduler, or optimizer_cls_and_kwargs")
                optimizer.add_param_group({"params": missing, "weight_decay": self.args.weight_decay,
                                           "lr": optimizer.param_groups[0]["lr"]})
        return optimizer

    # -- the loss ---------------------------------------------------------------------------------
    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        if not model.training:   # evaluation and prediction: the plain child, as the Trainer computes it
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        label = self._hkt_label_name()
        if label not in inputs:
            _fail(f"the batch has no {label!r} (keys: {', '.join(inputs)}); hkt's methods need the labels")
        target = inputs[label]
        missing = [n for n in self.hkt_input_names if n not in inputs]
        if missing:
            _fail(f"the batch has no {', '.join(missing)} (keys: {', '.join(inputs)}); every batch must hold the "
                  f"inputs the alignment was found with: {', '.join(self.hkt_input_names)}")
        named = {n: inputs[n] for n in self.hkt_input_names}
        task = self.hkt_task
        if self.hkt_method == "kd":
            outputs = model(**named)
            with torch.no_grad():
                teacher = _logits(self.parent(**named))
            loss = task.distill_loss(_logits(outputs), teacher.detach(), target, temperature=self.kd_temperature,
                                     weight=self.kd_weight)
            self._hkt_note(distill=loss)
        elif self.hkt_method == "hkt":
            family = self.hkt_module
            if family.parent.training:
                family.parent.eval()
            out = family(*named.values())
            parts = family.loss_parts(out, target)
            loss = parts.total
            outputs = {"logits": out.native}
            self._hkt_note(L1=parts.l1, L2=parts.l2, L3=parts.l3)
        else:
            hinted = self.hkt_module
            values = hinted(*named.values())
            parent_values = hinted.parent_values(*named.values())
            task_loss = task.loss(values["output"], target)
            hint = self._hkt_hint(values, parent_values)
            loss = task_loss + self.hint_weight * hint
            outputs = {"logits": values["output"]}
            self._hkt_note(task=task_loss, hint=hint)
        return (loss, outputs) if return_outputs else loss

    def _hkt_hint(self, values: Mapping[str, Any], parent_values: Mapping[str, Any]) -> torch.Tensor:
        """FitNet's relative hint (``hkt train --method fitnet``): per point, the mean squared error of
        the transferred child value to the parent's, over the parent value's mean square, per sample."""
        losses = []
        for v in self.hkt_module.values(values, parent_values):
            error = (v.mapped - v.parent).pow(2).flatten(1).mean(1)
            losses.append((error / v.parent.pow(2).flatten(1).mean(1).clamp_min(1e-12)).mean())
        return torch.stack(losses).mean()

    def _hkt_note(self, **parts: torch.Tensor) -> None:
        for key, value in parts.items():
            self._hkt_logs.setdefault(key, []).append(float(value.detach()))

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """The method's loss parts (mean since the last log) beside the Trainer's training loss."""
        if "loss" in logs and self._hkt_logs:
            for key, values in self._hkt_logs.items():
                logs[f"hkt_{key}"] = round(sum(values) / len(values), 4)
            self._hkt_logs = {}
        super().log(logs, *args, **kwargs)

    # -- checkpoints ------------------------------------------------------------------------------
    def _save_checkpoint(self, model: Any, trial: Any, *args: Any, **kwargs: Any) -> None:
        super()._save_checkpoint(model, trial, *args, **kwargs)
        if self.hkt_module is None or not self.args.should_save:
            return
        from safetensors.torch import save_file
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        if os.path.isdir(folder):
            save_file(self._hkt_operator_state(), os.path.join(folder, OPERATORS_FILE))

    def _hkt_operator_state(self) -> dict[str, torch.Tensor]:
        own = {id(t) for t in self.model.state_dict(keep_vars=True).values()}
        parent = {id(t) for t in self.parent.state_dict(keep_vars=True).values()}
        return {k: v.detach().cpu().contiguous() for k, v in self.hkt_module.state_dict(keep_vars=True).items()
                if id(v) not in own and id(v) not in parent and isinstance(v, torch.Tensor)}

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        file = os.path.join(resume_from_checkpoint, OPERATORS_FILE)
        if self.hkt_module is not None and os.path.isfile(file):
            from safetensors.torch import load_file

            state = load_file(file)
            missing, unexpected = self.hkt_module.load_state_dict(state, strict=False)
            if unexpected:
                _fail(f"{file} does not fit this trainer's {self.hkt_method} operators: unexpected {unexpected[:3]}")


def _trainer_class() -> type:
    from transformers import Trainer

    class HKTTrainer(HKTTrainerMixin, Trainer):
        """``transformers.Trainer`` with hkt's KD, HKT or FitNet (module :mod:`hkt_zoo.trainer`)."""

    HKTTrainer.__module__ = __name__
    return HKTTrainer


HKTTrainer = _trainer_class()

__all__ = ["HKTTrainer", "HKTTrainerMixin", "METHODS", "OPERATORS_FILE", "by_name"]
