"""What the quality benchmark compares: its pairs, each method's search space and the variants.

Adding a pair is listing its card in :data:`PAIRS`; a pair may bring its own search space, else
:data:`SEARCH` applies. Every method gets the same number of configurations (:data:`CONFIGS`),
each run on the same tuning seeds and selected on validation accuracy only (``--tune``). The
chosen configuration of every method is written to :data:`TUNED_FILE`, which the final comparison
reads; nothing is chosen by hand.

A configuration is ``{"train": {...}, "hkt": {...}, "method_options": {...}}`` (any part may be
missing): ``train`` overrides the card's ``[train]``, ``hkt`` its ``[hkt]``. The baseline's search
is the shared recipe's: its chosen ``train`` settings are the starting point of every other
method's runs (the recipe is tuned on the baseline first, then shared).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: the chosen configuration per pair and method, written by ``--tune``, read by the final run
TUNED_FILE = ROOT / "benchmarks" / "quality_tuned.json"
#: the machine-readable results every table of docs/RESULTS.md is generated from
RESULTS_FILE = ROOT / "docs" / "results" / "quality.json"

#: the pair that carries the benchmark's positive control (KD ahead of the baseline at p < 0.01)
CONTROL_PAIR = "mnist1d-resnet56-resnet20"
#: heterogeneous pairs (parent and child of different families, aligned across representation kinds)
HETERO_PAIRS: tuple[str, ...] = ("hetero-digits-vit-cnn", "hetero-digits-cnn-vit", "hetero-tabular-transformer-mlp")
#: the transformer pair: parent and child built from transformers configs through hkt-zoo (a 4-layer
#: BERT over a 2-layer one) on hkt-zoo's generated token-recall task; needs transformers installed
TRANSFORMER_PAIR = "recall-bert4-bert2"
#: the segmentation pair in the paper's regime (Table 3): a dense-encoder U-Net parent trained on plenty
#: of generated mosaics -> a PocketNet child 99x smaller trained on 64; the metric is global Dice
SEG_PAIR = "seg-scarce-denseunet-pocketnet"
#: pairs with dense outputs in the paper's regime, with the paper's claim for that regime: each carries
#: its own positive control (the task's distillation ahead of the baseline at p < 0.01)
DENSE_PAIRS: dict[str, str] = {
    SEG_PAIR: "segmentation (Table 3: 3HKT lifts PocketNet's global Dice from 93.0 to 94.1 with an H-DenseUNet parent)",
}
#: the optical-flow pair in the paper's regime (Table 1: RAFT -> RAFT-S, here both at a quarter of the
#: widths): only sized (``quality_sizing.py``), not in :data:`PAIRS`: 20 seeds of every row do not fit
#: the budget on 2 CPU cores (docs/RESULTS.md, Optical flow)
FLOW_SIZING_PAIR = "flow-scarce-raftdemo"
#: the pairs (cards) of the benchmark, in report order
PAIRS: list[str] = [CONTROL_PAIR, *HETERO_PAIRS, TRANSFORMER_PAIR, SEG_PAIR]

#: the seeds every configuration of the search is trained on (selection on their mean validation
#: accuracy); the chosen configurations' runs are reused as these seeds of the comparison
TUNE_SEEDS: tuple[int, ...] = (0, 1, 2)

#: the four main rows: compared on every seed
MAIN_METHODS = ("baseline", "kd", "hkt", "hkt-kd")
#: pairs that run only some of the main rows (the rest do not fit the budget): pair -> its rows
PAIR_METHODS: dict[str, tuple[str, ...]] = {TRANSFORMER_PAIR: ("baseline", "kd")}
#: feature distillation at the automatic alignment (FitNet hints, alone and with KD): searched like
#: the main rows, on the pairs of :data:`STAGE_PAIRS`
FEATURE_METHODS = ("fitnet", "fitnet-kd")
#: the stages of the multi-stage rows and of FitNet's hint points (``hkt-3``'s alignment: N - 1 = 2
#: points, the last one before the predictions)
HINT_STAGES = 3
#: pairs with the multi-stage rows (``hkt-3`` ...), the FitNet rows and their random-alignment controls
STAGE_PAIRS: tuple[str, ...] = (CONTROL_PAIR, SEG_PAIR)
#: those rows, in report order (``hkt-4`` only where the budget allows: see the pair's budget line)
STAGE_ROWS = ("hkt-3", "hkt-4", "hkt-3-random", "fitnet", "fitnet-random", "fitnet-kd",
              "attention-transfer", "attention-transfer-random", "dkd")
#: rows a pair leaves out, with the reason the report gives (pair -> row -> reason)
NOT_RUN: dict[str, dict[str, str]] = {
    SEG_PAIR: {"hkt-3": "the card is itself 3HKT at the paper's points (an encoder stage, the bottleneck, the "
                        "output), so `hkt` is that row and `hkt-3` would repeat its runs; `hkt-3-random` controls `hkt`.",
               "hkt-4": "the pair's budget (about 45 minutes on 2 workers) did not fit it.",
               "dkd": "DKD splits class scores per sample; the segmentation task's are per pixel."},
}
#: each random-alignment control and the auto-aligned row it controls
RANDOM_CONTROLS = {"hkt-3-random": "hkt-3", "fitnet-random": "fitnet",
                   "attention-transfer-random": "attention-transfer"}


def random_controls(pair: str | None = None) -> dict[str, str]:
    """:data:`RANDOM_CONTROLS` of ``pair``: where ``hkt-3`` is not run because the card is itself 3HKT
    (:data:`NOT_RUN`), ``hkt-3-random`` controls ``hkt``."""
    skipped = NOT_RUN.get(pair or "", {})
    return {control: ("hkt" if auto == "hkt-3" and "hkt-3" in skipped else auto)
            for control, auto in RANDOM_CONTROLS.items()}


#: DKD's warm-up on the control pair: mdistiller's 20 epochs of 240, as the same share of the card's 40
DKD_WARMUP_EPOCHS = 3
#: rows trained at their papers' settings, not searched (as ``hkt-paper``; on the shared recipe), on
#: the pairs of :data:`PAPER_ROW_PAIRS`: row -> (configuration name, configuration).
#: ``attention-transfer``: Zagoruyko & Komodakis' beta 1000 and p 2 at the automatic points of
#: ``HINT_STAGES`` stages (``hkt-3``'s and ``fitnet``'s; a vector point is skipped), with its
#: random-alignment control; ``dkd``: the DKD paper's ResNet-56 -> ResNet-20 setting (mdistiller's
#: configs/cifar100/dkd/res56_res20.yaml: alpha 1, beta 2, T 4), warm-up :data:`DKD_WARMUP_EPOCHS`
PAPER_ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "attention-transfer": ("paper", {"method_options": {"beta": 1000.0, "p": 2.0, "stages": HINT_STAGES}}),
    "dkd": ("paper-res56-res20", {"method_options": {"alpha": 1.0, "beta": 2.0, "temperature": 4.0,
                                                     "warmup_epochs": DKD_WARMUP_EPOCHS}}),
}
#: the pairs the rows of :data:`PAPER_ROWS` run on (``dkd`` needs class scores)
PAPER_ROW_PAIRS: tuple[str, ...] = (CONTROL_PAIR,)
#: further pairs ``attention-transfer`` and its random control run on (maps at the aligned points), not ``dkd``
ATTENTION_PAIRS: tuple[str, ...] = (SEG_PAIR,)
#: configurations per method in the search: the same for every method
CONFIGS = 3

_TASK_181 = {"inherit_loss": "task", "alphas": [0.1, 0.8, 0.1]}
# Mixing only towards the parent: the child's features are mixed into the parent's stream and the
# parent's head must still predict the labels from them (L3); no parent features enter the child's
# stream, so L1 has no inherited output to weigh (a1 = 0).
_TO_PARENT = {"inherit_loss": "task", "alphas": [0.0, 0.8, 0.2], "directions": "to_parent"}

def _learning_rates(*lrs: float) -> dict[str, dict[str, Any]]:
    return {f"lr{lr:g}": {"train": {"lr": lr}} for lr in lrs}


#: the baseline's search (the shared recipe's learning rate) of pairs whose card uses another
#: optimiser than the default search assumes (AdamW cards search around their card's rate)
BASELINE_SEARCH: dict[str, dict[str, dict[str, Any]]] = {
    "hetero-digits-vit-cnn": _learning_rates(0.05, 0.1, 0.2),
    "hetero-digits-cnn-vit": _learning_rates(0.0025, 0.005, 0.01),
    "hetero-tabular-transformer-mlp": _learning_rates(0.0025, 0.005, 0.01),
    TRANSFORMER_PAIR: _learning_rates(0.0015, 0.003, 0.006),
    SEG_PAIR: _learning_rates(0.0015, 0.003, 0.006),
}

#: a pair's own search of a method, where the shared one does not fit its task (``CONFIGS`` entries
#: each, like every search). Segmentation: the pixel-wise KD at T = 1 and 2 (the shared search's T 4 and
#: weight 0.9 left a foreground class unlearned in a pilot on seed 0, validation Dice only)
PAIR_SEARCH: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    SEG_PAIR: {"kd": {
        "T1-w0.5": {"train": {"kd_temperature": 1.0, "kd_weight": 0.5}},
        "T1-w0.9": {"train": {"kd_temperature": 1.0, "kd_weight": 0.9}},
        "T2-w0.5": {"train": {"kd_temperature": 2.0, "kd_weight": 0.5}},
    }},
}

#: rows whose configurations are trained on top of another method's chosen ``train`` settings:
#: HKT + KD uses KD's chosen temperature and weight, so its difference to KD is the HKT part alone
BUILT_ON: dict[str, str] = {"hkt-kd": "kd", "fitnet-kd": "kd"}

def _hint_weights(*weights: float) -> dict[str, dict[str, Any]]:
    """FitNet's search: the weight of its relative hint (``hkt_core.train.methods.FITNET_HINT_WEIGHT``
    is 1), at the hint points of ``hkt-3``'s automatic alignment."""
    return {f"hint{w:g}": {"card": {"stages": HINT_STAGES}, "method_options": {"hint_weight": w}} for w in weights}


#: method -> configuration name -> configuration (``CONFIGS`` each)
SEARCH: dict[str, dict[str, dict[str, Any]]] = {
    "baseline": _learning_rates(0.02, 0.05, 0.1),
    "kd": {
        "T4-w0.9": {"train": {"kd_temperature": 4.0, "kd_weight": 0.9}},
        "T2-w0.9": {"train": {"kd_temperature": 2.0, "kd_weight": 0.9}},
        "T4-w0.5": {"train": {"kd_temperature": 4.0, "kd_weight": 0.5}},
    },
    "hkt": {
        # the card's own [hkt]: the paper's settings (MAE in L1/L3, alphas 0.25/0.5/0.25, lam 0.6, ga), which
        # every registered card states (HKTConfig's defaults are now what this search chose)
        "paper": {"hkt": {}},
        "task-.1.8.1": {"hkt": dict(_TASK_181)},
        "to-parent-.0.8.2": {"hkt": dict(_TO_PARENT)},
    },
    "hkt-kd": {  # on KD's chosen kd_temperature and kd_weight (BUILT_ON)
        "paper": {"hkt": {}},
        "task-.1.8.1": {"hkt": dict(_TASK_181)},
        "to-parent-.0.8.2": {"hkt": dict(_TO_PARENT)},
    },
    "fitnet": _hint_weights(0.3, 1, 3),
    "fitnet-kd": _hint_weights(0.3, 1, 3),  # on KD's chosen kd_temperature and kd_weight (BUILT_ON)
}

#: configurations that entered the search after a pilot whose test accuracy was seen, with the
#: pilot's seeds: the report also compares them on the other seeds alone
PILOTED: dict[str, tuple[int, ...]] = {"to-parent-.0.8.2": (0, 1, 2, 3, 4)}

#: the registered training method behind each row (rows not listed use their own name)
METHOD_OF_ROW = {"hkt-paper": "hkt", "hkt-anneal": "hkt", "hkt-learned-gate": "hkt", "hkt-3": "hkt", "hkt-4": "hkt",
                 "hkt-3-random": "hkt", "fitnet-random": "fitnet", "attention-transfer-random": "attention-transfer"}
#: the searched method each row of :data:`STAGE_ROWS` takes its chosen configuration from
STAGE_SOURCE = {"hkt-3": "hkt", "hkt-4": "hkt", "hkt-3-random": "hkt", "fitnet": "fitnet",
                "fitnet-random": "fitnet", "fitnet-kd": "fitnet-kd"}


def main_methods(pair: str) -> tuple[str, ...]:
    """The main rows ``pair`` runs: all of :data:`MAIN_METHODS` unless :data:`PAIR_METHODS` names fewer."""
    return PAIR_METHODS.get(pair, MAIN_METHODS)


def searched_methods(pair: str) -> tuple[str, ...]:
    """The methods searched on ``pair``: its main rows, and FitNet's on :data:`STAGE_PAIRS`."""
    return (*main_methods(pair), *(FEATURE_METHODS if pair in STAGE_PAIRS else ()))


def _random(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` on a random valid alignment, drawn with each run's seed (recorded per run)."""
    return {**config, "method_options": {**config.get("method_options", {}), "alignment": "random"}}


def stage_rows(chosen: dict[str, Any], pair: str | None = None) -> dict[str, tuple[str, dict[str, Any]]]:
    """The multi-stage rows (``row -> (configuration name, configuration)``) from the chosen
    configurations of the methods they are built on (:data:`STAGE_SOURCE`; a row whose source has
    no choice yet is left out): ``hkt-3`` / ``hkt-4`` are the chosen HKT at 3 / 4 stages, the
    ``-random`` rows their row on a random valid alignment, ``fitnet`` and ``fitnet-kd`` their own
    search's choice; the rows of :data:`PAPER_ROWS` (and ``attention-transfer-random``) need no choice,
    and are left out for a ``pair`` not in :data:`PAPER_ROW_PAIRS`."""
    rows: dict[str, tuple[str, dict[str, Any]]] = {}
    if "hkt" in chosen:
        hkt = chosen["hkt"]["config"]
        for stages in (3, 4):
            rows[f"hkt-{stages}"] = (f"tuned-{stages}stages", {**hkt, "card": {"stages": stages}})
        rows["hkt-3-random"] = ("tuned-3stages-random", _random(rows["hkt-3"][1]))
    for method in FEATURE_METHODS:
        if method in chosen:
            rows[method] = (chosen[method]["name"], chosen[method]["config"])
    if "fitnet" in chosen:
        rows["fitnet-random"] = (f"{chosen['fitnet']['name']}-random", _random(chosen["fitnet"]["config"]))
    if pair is None or pair in PAPER_ROW_PAIRS:
        rows.update(PAPER_ROWS)
    if pair is None or pair in PAPER_ROW_PAIRS or pair in ATTENTION_PAIRS:
        rows["attention-transfer"] = PAPER_ROWS["attention-transfer"]
        name, config = PAPER_ROWS["attention-transfer"]
        rows["attention-transfer-random"] = (f"{name}-random", _random(config))
    return {row: rows[row] for row in STAGE_ROWS if row in rows}


def searched_for(rows: list[str]) -> list[str]:
    """The searched methods ``rows`` need a choice of (their own, what they are built on), baseline first."""
    needed = {"baseline"}
    for row in rows:
        source = STAGE_SOURCE.get(row) or METHOD_OF_ROW.get(row, row)
        needed |= {source, *([BUILT_ON[source]] if source in BUILT_ON else [])}
    return [m for m in (*MAIN_METHODS, *FEATURE_METHODS) if m in needed]


def variants(chosen_hkt: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """The further HKT rows (``row -> (configuration name, configuration)``), built on the chosen
    ``hkt`` configuration: the paper's defaults, lam annealed to 0, a learned per-point gate."""
    hkt = dict(chosen_hkt.get("hkt", {}))
    return {
        "hkt-paper": ("paper", SEARCH["hkt"]["paper"]),
        "hkt-anneal": ("tuned-anneal", {**chosen_hkt, "method_options": {"lam_schedule": "anneal"}}),
        "hkt-learned-gate": ("tuned-ga-learned", {**chosen_hkt, "hkt": {**hkt, "mixture": "ga-learned"}}),
    }


def search_for(pair: str) -> dict[str, dict[str, dict[str, Any]]]:
    """The search space of ``pair``: the shared one, with the pair's own baseline search when it has
    one (:data:`BASELINE_SEARCH`) and its own search of other methods (:data:`PAIR_SEARCH`); every
    method has ``CONFIGS`` entries."""
    space = {**SEARCH, "baseline": BASELINE_SEARCH.get(pair, SEARCH["baseline"]), **PAIR_SEARCH.get(pair, {})}
    bad = {m: len(c) for m, c in space.items() if len(c) != CONFIGS}
    if bad:
        raise ValueError(f"unequal tuning budget for {pair}: {bad}; every method needs {CONFIGS} configurations")
    return space
