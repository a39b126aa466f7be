"""Benchmark: automatic alignment on zoo pairs against a ground truth written before any tuning.

    .venv/bin/python benchmarks/align_zoo.py [--quick] [--out docs/results/align_zoo.json] [--seed 0]
    .venv/bin/python benchmarks/align_zoo.py --doc     # the tables in docs/alignment.md, from the JSON
                                                       # (and docs/results/align_zoo_before.json)

Each pair is built from its library's own config constructors at small widths, random
initialisation, nothing downloaded (transformers always; torchvision and timm pairs are skipped
when those libraries are absent). Each pair's :class:`Truth` lists, per model, its blocks in
forward order (module paths) and the mixing points expected for the pair's ``stages``. A chosen
point is

- **exact** when both sides are the expected block outputs of that point;
- **near** when each side lies in (or is the output of) a block at most one block away from the
  expected one, in that model's block list;
- **wrong** otherwise.

The share of chosen nodes that are block outputs counts nodes equal to the output of one of the
listed blocks (or of one of the pair's ``extra_boundaries``: pooled features, final norms). The
control scores random valid alignments (order-preserving, pairs that can mix, drawn uniformly over
the aligner's own candidate lists... see :func:`random_alignment`) the same way, ``controls`` draws
per pair. Time to align is the wall time of :func:`hkt_core.align` (trace both models included),
the median of ``repeats`` runs.

Rule for the last mixing point (docs/alignment.md, section 2): the pooled features the head reads
when the model pools before its head (a CNN's global pool, BERT's pooler, DistilBERT's
pre-classifier); otherwise the last stage's output (GPT-2's and ViT's final norm).

``held_back`` pairs are not looked at while tuning the candidate rule and the placement; their
figures are reported on their own.

Development and test sets. Every pair looked at while the rules were written (the tuning pairs,
both held-back rounds, the torchvision/timm pairs and the pairs of the families the issue
"alignment by principles" names) is the **development** set. The **test** set (:func:`_test_set`,
``test=True``) is 14 pairs of 24 families that none of the other pairs, no test and no doc used,
with its ground truth committed before its first run; rules are tuned on the development set only,
and both sets' figures are reported side by side (``development`` and ``test`` rows).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "results" / "align_zoo.json"


@attrs.frozen
class Truth:
    """Ground truth of one pair: each model's blocks in order and the expected mixing points."""

    parent_blocks: tuple[str, ...]
    child_blocks: tuple[str, ...]
    #: expected (parent block, child block) per mixing point, in forward order
    points: tuple[tuple[str, str], ...]
    #: further values that are block boundaries (pooled features, final norms) beyond the blocks
    extra_boundaries: tuple[str, ...] = ()


@attrs.frozen
class ZooPair:
    name: str
    library: str
    build: Callable[[], tuple[nn.Module, nn.Module, tuple[torch.Tensor, ...]]]
    truth: Truth
    held_back: bool = False
    quick: bool = False
    #: 1: written before any tuning; 2: written after the first round of tuning, before its first run
    round: int = 1
    #: the test set: families no other pair, test or doc uses, ground truth committed before the
    #: first run; never looked at while the rules are tuned (``_test_set``)
    test: bool = False

    @property
    def stages(self) -> int:
        return len(self.truth.points) + 1


class Logits(nn.Module):
    """A transformers model whose forward returns its logits tensor (the prediction)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.m = model

    def forward(self, x):
        return self.m(x).logits


def _tokens(batch: int = 2, length: int = 16, vocab: int = 100) -> tuple[torch.Tensor, ...]:
    return (torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(0)),)


def _image(batch: int = 2, size: int = 32) -> tuple[torch.Tensor, ...]:
    return (torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)),)


# ------------------------------------------------------------------ models of this benchmark

class TextCNN(nn.Module):
    """A 1-D CNN over token embeddings: two stages of residual conv blocks, the second at half length."""

    def __init__(self, vocab: int = 100, dim: int = 32, classes: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.stage1 = nn.Sequential(ConvBlock1d(dim, dim, 1), ConvBlock1d(dim, dim, 1))
        self.stage2 = nn.Sequential(ConvBlock1d(dim, 2 * dim, 2), ConvBlock1d(2 * dim, 2 * dim, 1))
        self.head = nn.Linear(2 * dim, classes)

    def forward(self, x):
        h = self.embed(x).transpose(1, 2)
        h = self.stage2(self.stage1(h))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool1d(h, 1), 1))


class ConvBlock1d(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)
        self.short = (nn.Sequential() if stride == 1 and cin == cout
                      else nn.Sequential(nn.Conv1d(cin, cout, 1, stride, bias=False), nn.BatchNorm1d(cout)))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class TokenLayer(nn.Module):
    def __init__(self, dim: int, heads: int = 2) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.ffn(self.norm2(x))


class TokenTransformer(nn.Module):
    """A pre-norm token transformer in two stages of two layers; stage 2 halves the sequence."""

    def __init__(self, vocab: int = 100, dim: int = 32, classes: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.stage1 = nn.Sequential(TokenLayer(dim), TokenLayer(dim))
        self.merge = nn.Linear(2 * dim, dim)
        self.stage2 = nn.Sequential(TokenLayer(dim), TokenLayer(dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        h = self.stage1(self.embed(x))
        b, t, d = h.shape
        h = self.stage2(self.merge(h.reshape(b, t // 2, 2 * d)))
        return self.head(self.norm(h).mean(dim=1))


class ConvNormAct1d(nn.Module):
    """A plain convolution layer (convolution, norm, activation): a feature extractor's layer."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride, bias=False)
        self.norm = nn.GroupNorm(1, cout)

    def forward(self, x):
        return nn.functional.gelu(self.norm(self.conv(x)))


class AudioCNN(nn.Module):
    """A 1-D CNN on waveforms: a convolutional front end (three plain layers, 1600 samples to 79
    frames), then two stages of residual blocks (79 frames, then 40), mean pooling and a linear head."""

    def __init__(self, dim: int = 32, classes: int = 5) -> None:
        super().__init__()
        self.frontend = nn.ModuleList([ConvNormAct1d(1, 16, 10, 5), ConvNormAct1d(16, 16, 3, 2),
                                       ConvNormAct1d(16, dim, 3, 2)])
        self.stage1 = nn.Sequential(ConvBlock1d(dim, dim, 1), ConvBlock1d(dim, dim, 1))
        self.stage2 = nn.Sequential(ConvBlock1d(dim, 2 * dim, 2), ConvBlock1d(2 * dim, 2 * dim, 1))
        self.head = nn.Linear(2 * dim, classes)

    def forward(self, x):
        h = x.unsqueeze(1)
        for layer in self.frontend:
            h = layer(h)
        h = self.stage2(self.stage1(h))
        return self.head(h.mean(dim=2))


# ------------------------------------------------------------------ transformers builders

def _bert_config(layers: int, hidden: int = 32):
    from transformers import BertConfig

    return BertConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                      intermediate_size=2 * hidden, max_position_embeddings=32, num_labels=5)


def _bert(layers: int, hidden: int = 32) -> nn.Module:
    from transformers import BertForSequenceClassification

    return Logits(BertForSequenceClassification(_bert_config(layers, hidden)))


def _gpt2(layers: int, hidden: int = 32) -> nn.Module:
    from transformers import GPT2Config, GPT2ForSequenceClassification

    cfg = GPT2Config(vocab_size=100, n_embd=hidden, n_layer=layers, n_head=2, n_positions=32, num_labels=5,
                     pad_token_id=0)
    return Logits(GPT2ForSequenceClassification(cfg))


def _distilbert(layers: int, hidden: int = 32) -> nn.Module:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    cfg = DistilBertConfig(vocab_size=100, dim=hidden, n_layers=layers, n_heads=2, hidden_dim=2 * hidden,
                           max_position_embeddings=32, num_labels=5)
    return Logits(DistilBertForSequenceClassification(cfg))


def _hf_resnet(depths, hidden=(16, 32, 64, 128), layer_type: str = "basic") -> nn.Module:
    from transformers import ResNetConfig, ResNetForImageClassification

    cfg = ResNetConfig(embedding_size=16, hidden_sizes=list(hidden), depths=list(depths), layer_type=layer_type,
                       num_labels=5)
    return Logits(ResNetForImageClassification(cfg))


def _hf_vit(layers: int, hidden: int = 32) -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(image_size=32, patch_size=4, hidden_size=hidden, num_hidden_layers=layers,
                    num_attention_heads=2, intermediate_size=2 * hidden, num_labels=5)
    return Logits(ViTForImageClassification(cfg))


def _hf_convnext(depths, hidden=(16, 32, 64, 128)) -> nn.Module:
    from transformers import ConvNextConfig, ConvNextForImageClassification

    cfg = ConvNextConfig(hidden_sizes=list(hidden), depths=list(depths), num_labels=5)
    return Logits(ConvNextForImageClassification(cfg))


def _layers(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}.{i}" for i in range(n))


def _resnet_blocks(depths) -> tuple[str, ...]:
    out = ["m.resnet.embedder"]
    for s, d in enumerate(depths):
        out += [f"m.resnet.encoder.stages.{s}.layers.{i}" for i in range(d)]
    return tuple(out)


def _stage_end(depths, s: int) -> str:
    return f"m.resnet.encoder.stages.{s}.layers.{depths[s] - 1}"


def _convnext_blocks(depths) -> tuple[str, ...]:
    out = ["m.convnext.embeddings"]
    for s, d in enumerate(depths):
        out += [f"m.convnext.encoder.stages.{s}.layers.{i}" for i in range(d)]
    return tuple(out)


BERT = "m.bert.encoder.layer"
GPT = "m.transformer.h"
DISTIL = "m.distilbert.transformer.layer"
VIT = "m.vit.layers"  # transformers 5 names ViT's layer list ``layers``


def _pairs() -> list[ZooPair]:
    tx = "transformers"
    r2222, r1111, r2332 = (2, 2, 2, 2), (1, 1, 1, 1), (2, 3, 3, 2)
    res_pool = ("m.resnet.pooler",)
    pairs = [
        ZooPair("bert4-bert2", tx, lambda: (_bert(4), _bert(2), _tokens()), Truth(
            ("m.bert.embeddings", *_layers(BERT, 4), "m.bert.pooler"),
            ("m.bert.embeddings", *_layers(BERT, 2), "m.bert.pooler"),
            ((f"{BERT}.1", f"{BERT}.0"), ("m.bert.pooler", "m.bert.pooler"))), quick=True),
        ZooPair("bert6-bert3", tx, lambda: (_bert(6, 48), _bert(3), _tokens()), Truth(
            ("m.bert.embeddings", *_layers(BERT, 6), "m.bert.pooler"),
            ("m.bert.embeddings", *_layers(BERT, 3), "m.bert.pooler"),
            ((f"{BERT}.1", f"{BERT}.0"), (f"{BERT}.3", f"{BERT}.1"), ("m.bert.pooler", "m.bert.pooler")))),
        ZooPair("gpt2-4-gpt2-2", tx, lambda: (_gpt2(4), _gpt2(2), _tokens()), Truth(
            ("m.transformer.wte", *_layers(GPT, 4), "m.transformer.ln_f"),
            ("m.transformer.wte", *_layers(GPT, 2), "m.transformer.ln_f"),
            ((f"{GPT}.1", f"{GPT}.0"), ("m.transformer.ln_f", "m.transformer.ln_f"))), quick=True),
        ZooPair("gpt2-6-gpt2-3", tx, lambda: (_gpt2(6, 48), _gpt2(3), _tokens()), Truth(
            ("m.transformer.wte", *_layers(GPT, 6), "m.transformer.ln_f"),
            ("m.transformer.wte", *_layers(GPT, 3), "m.transformer.ln_f"),
            ((f"{GPT}.1", f"{GPT}.0"), (f"{GPT}.3", f"{GPT}.1"), ("m.transformer.ln_f", "m.transformer.ln_f")))),
        ZooPair("bert4-distilbert2", tx, lambda: (_bert(4), _distilbert(2), _tokens()), Truth(
            ("m.bert.embeddings", *_layers(BERT, 4), "m.bert.pooler"),
            ("m.distilbert.embeddings", *_layers(DISTIL, 2), "m.pre_classifier"),
            ((f"{BERT}.1", f"{DISTIL}.0"), ("m.bert.pooler", "m.pre_classifier")))),
        ZooPair("bert4-textcnn", tx, lambda: (_bert(4), TextCNN(), _tokens()), Truth(
            ("m.bert.embeddings", *_layers(BERT, 4), "m.bert.pooler"),
            ("embed", "stage1.0", "stage1.1", "stage2.0", "stage2.1", "flatten"),
            ((f"{BERT}.1", "stage1.1"), (f"{BERT}.3", "stage2.1"), ("m.bert.pooler", "flatten")))),
        ZooPair("resnet2222-resnet1111", tx, lambda: (_hf_resnet(r2222), _hf_resnet(r1111), _image()), Truth(
            (*_resnet_blocks(r2222), *res_pool), (*_resnet_blocks(r1111), *res_pool),
            ((_stage_end(r2222, 0), _stage_end(r1111, 0)), (_stage_end(r2222, 1), _stage_end(r1111, 1)),
             (_stage_end(r2222, 2), _stage_end(r1111, 2)), ("m.resnet.pooler", "m.resnet.pooler"))), quick=True),
        ZooPair("resnet-bottleneck-resnet1111", tx,
                lambda: (_hf_resnet(r2332, (32, 64, 128, 256), "bottleneck"), _hf_resnet(r1111), _image()), Truth(
            (*_resnet_blocks(r2332), *res_pool), (*_resnet_blocks(r1111), *res_pool),
            ((_stage_end(r2332, 0), _stage_end(r1111, 0)), (_stage_end(r2332, 1), _stage_end(r1111, 1)),
             (_stage_end(r2332, 2), _stage_end(r1111, 2)), ("m.resnet.pooler", "m.resnet.pooler")))),
        ZooPair("convnext-resnet1111", tx, lambda: (_hf_convnext(r2222), _hf_resnet(r1111), _image()), Truth(
            (*_convnext_blocks(r2222), "m.convnext.layernorm"), (*_resnet_blocks(r1111), *res_pool),
            (("m.convnext.encoder.stages.0.layers.1", _stage_end(r1111, 0)),
             ("m.convnext.encoder.stages.1.layers.1", _stage_end(r1111, 1)),
             ("m.convnext.encoder.stages.2.layers.1", _stage_end(r1111, 2)),
             ("m.convnext.layernorm", "m.resnet.pooler")))),
        ZooPair("vit4-vit2", tx, lambda: (_hf_vit(4), _hf_vit(2), _image()), Truth(
            ("m.vit.embeddings", *_layers(VIT, 4), "m.vit.layernorm"),
            ("m.vit.embeddings", *_layers(VIT, 2), "m.vit.layernorm"),
            ((f"{VIT}.1", f"{VIT}.0"), ("m.vit.layernorm", "m.vit.layernorm")))),
        ZooPair("vit4-resnet1111", tx, lambda: (_hf_vit(4), _hf_resnet(r1111), _image()), Truth(
            ("m.vit.embeddings", *_layers(VIT, 4), "m.vit.layernorm"), (*_resnet_blocks(r1111), *res_pool),
            ((f"{VIT}.1", _stage_end(r1111, 1)), ("m.vit.layernorm", "m.resnet.pooler")))),
        # held back: not looked at while tuning
        ZooPair("gpt2-4-bert2", tx, lambda: (_gpt2(4), _bert(2), _tokens()), Truth(
            ("m.transformer.wte", *_layers(GPT, 4), "m.transformer.ln_f"),
            ("m.bert.embeddings", *_layers(BERT, 2), "m.bert.pooler"),
            ((f"{GPT}.1", f"{BERT}.0"), ("m.transformer.ln_f", "m.bert.pooler"))), held_back=True),
        ZooPair("resnet2332-resnet2222", tx, lambda: (_hf_resnet(r2332, (24, 48, 96, 192)), _hf_resnet(r2222), _image()),
                Truth((*_resnet_blocks(r2332), *res_pool), (*_resnet_blocks(r2222), *res_pool),
                      ((_stage_end(r2332, 0), _stage_end(r2222, 0)), (_stage_end(r2332, 1), _stage_end(r2222, 1)),
                       (_stage_end(r2332, 2), _stage_end(r2222, 2)), ("m.resnet.pooler", "m.resnet.pooler"))),
                held_back=True),
        ZooPair("tokentransformer-textcnn", "benchmark", lambda: (TokenTransformer(), TextCNN(), _tokens()), Truth(
            ("embed", "stage1.0", "stage1.1", "merge", "stage2.0", "stage2.1", "norm"),
            ("embed", "stage1.0", "stage1.1", "stage2.0", "stage2.1", "flatten"),
            (("stage1.1", "stage1.1"), ("stage2.1", "stage2.1"), ("mean", "flatten")),
            extra_boundaries=("mean",)), held_back=True, quick=True),
    ]
    pairs += _second_round()
    pairs += _torchvision_pairs() + _timm_pairs()
    pairs += _issue_families()
    pairs += _test_set()
    return pairs


def _second_round() -> list[ZooPair]:
    """Held-back pairs written after the first round of tuning, committed before their first run;
    reported on their own row (``held_back_round2``)."""
    tx = "transformers"
    r1111, r2222 = (1, 1, 1, 1), (2, 2, 2, 2)
    res_pool = ("m.resnet.pooler",)
    vit_blocks = lambda n: ("m.vit.embeddings", *_layers(VIT, n), "m.vit.layernorm")  # noqa: E731
    textcnn = ("embed", "stage1.0", "stage1.1", "stage2.0", "stage2.1", "flatten")
    tokentf = ("embed", "stage1.0", "stage1.1", "merge", "stage2.0", "stage2.1", "norm")

    def conv_end(s: int) -> str:
        return f"m.convnext.encoder.stages.{s}.layers.{r2222[s] - 1}"

    def pair(name, build, truth, library=tx):
        return ZooPair(name, library, build, truth, held_back=True, round=2)

    return [
        pair("distilbert4-bert2", lambda: (_distilbert(4), _bert(2), _tokens()), Truth(
            ("m.distilbert.embeddings", *_layers(DISTIL, 4), "m.pre_classifier"),
            ("m.bert.embeddings", *_layers(BERT, 2), "m.bert.pooler"),
            ((f"{DISTIL}.1", f"{BERT}.0"), ("m.pre_classifier", "m.bert.pooler")))),
        pair("gpt2-6-distilbert3", lambda: (_gpt2(6, 48), _distilbert(3), _tokens()), Truth(
            ("m.transformer.wte", *_layers(GPT, 6), "m.transformer.ln_f"),
            ("m.distilbert.embeddings", *_layers(DISTIL, 3), "m.pre_classifier"),
            ((f"{GPT}.1", f"{DISTIL}.0"), (f"{GPT}.3", f"{DISTIL}.1"), ("m.transformer.ln_f", "m.pre_classifier")))),
        pair("vit6-vit3", lambda: (_hf_vit(6, 48), _hf_vit(3), _image()), Truth(
            vit_blocks(6), vit_blocks(3),
            ((f"{VIT}.1", f"{VIT}.0"), (f"{VIT}.3", f"{VIT}.1"), ("m.vit.layernorm", "m.vit.layernorm")))),
        pair("resnet1111-vit2", lambda: (_hf_resnet(r1111), _hf_vit(2), _image()), Truth(
            (*_resnet_blocks(r1111), *res_pool), vit_blocks(2),
            ((_stage_end(r1111, 1), f"{VIT}.0"), ("m.resnet.pooler", "m.vit.layernorm")))),
        pair("vit4-resnet2222", lambda: (_hf_vit(4), _hf_resnet(r2222), _image()), Truth(
            vit_blocks(4), (*_resnet_blocks(r2222), *res_pool),
            ((f"{VIT}.0", _stage_end(r2222, 0)), (f"{VIT}.1", _stage_end(r2222, 1)),
             (f"{VIT}.2", _stage_end(r2222, 2)), ("m.vit.layernorm", "m.resnet.pooler")))),
        pair("convnext2222-convnext1111", lambda: (_hf_convnext(r2222), _hf_convnext(r1111, (8, 16, 32, 64)),
                                                   _image()), Truth(
            (*_convnext_blocks(r2222), "m.convnext.layernorm"), (*_convnext_blocks(r1111), "m.convnext.layernorm"),
            ((conv_end(0), "m.convnext.encoder.stages.0.layers.0"), (conv_end(1), "m.convnext.encoder.stages.1.layers.0"),
             (conv_end(2), "m.convnext.encoder.stages.2.layers.0"), ("m.convnext.layernorm", "m.convnext.layernorm")))),
        pair("convnext2222-vit4", lambda: (_hf_convnext(r2222), _hf_vit(4), _image()), Truth(
            (*_convnext_blocks(r2222), "m.convnext.layernorm"), vit_blocks(4),
            ((conv_end(1), f"{VIT}.1"), ("m.convnext.layernorm", "m.vit.layernorm")))),
        pair("bert6-textcnn", lambda: (_bert(6), TextCNN(), _tokens()), Truth(
            ("m.bert.embeddings", *_layers(BERT, 6), "m.bert.pooler"), textcnn,
            ((f"{BERT}.2", "stage1.1"), ("m.bert.pooler", "flatten")))),
        pair("gpt2-4-textcnn", lambda: (_gpt2(4), TextCNN(), _tokens()), Truth(
            ("m.transformer.wte", *_layers(GPT, 4), "m.transformer.ln_f"), textcnn,
            ((f"{GPT}.1", "stage1.1"), ("m.transformer.ln_f", "flatten")))),
        pair("tokentransformer-textcnn-3", lambda: (TokenTransformer(), TextCNN(), _tokens()), Truth(
            tokentf, textcnn, (("stage1.1", "stage1.1"), ("mean", "flatten")), extra_boundaries=("mean",)),
            library="benchmark"),
        pair("textcnn-tokentransformer", lambda: (TextCNN(), TokenTransformer(), _tokens()), Truth(
            textcnn, tokentf, (("stage1.1", "stage1.1"), ("stage2.1", "stage2.1"), ("flatten", "mean")),
            extra_boundaries=("mean",)), library="benchmark"),
    ]


def _issue_families() -> list[ZooPair]:
    """Development pairs of the families the issue "alignment by principles" names (the ones
    transformers builds: Qwen3, GPT-NeoX, OPT, Phi, DeBERTa, wav2vec2, WavLM, HuBERT, BEiT,
    ConvNeXtV2, PvT, PoolFormer, DINOv2, MobileViTv2) and a 1-D audio CNN written here. The rules are
    tuned on these with the other development pairs; ground truth by the rules of :func:`_test_set`,
    written before their first run."""
    tx = "transformers"

    def pair(name, build, truth, library=tx):
        return ZooPair(name, library, build, truth, held_back=False, round=3)

    def layers(prefix: str, n: int) -> tuple[str, ...]:
        return tuple(f"{prefix}.{i}" for i in range(n))

    d1121 = (1, 1, 2, 1)
    image = lambda: _image(2, 64)  # noqa: E731
    qwen, neox = "m.model.layers", "m.gpt_neox.layers"
    opt, phi = "m.model.decoder.layers", "m.model.layers"
    deberta = "m.deberta.encoder.layer"
    w2v, wavlm, hubert = "m.wav2vec2.encoder.layers", "m.wavlm.encoder.layers", "m.hubert.encoder.layers"
    beit, dino = "m.beit.layers", "m.dinov2.encoder.layer"
    cnv2 = tuple(f"m.convnextv2.encoder.stages.{s_}.layers.{i}" for s_, d in enumerate(d1121) for i in range(d))
    pvt = tuple(f"m.pvt.encoder.block.{s_}.{i}" for s_, d in enumerate(d1121) for i in range(d))
    pool = tuple(f"m.poolformer.encoder.block.{s_}.{i}" for s_, d in enumerate(d1121) for i in range(d))
    mvit = ("m.mobilevitv2.encoder.layer.0.layer.0", "m.mobilevitv2.encoder.layer.1.layer.0",
            "m.mobilevitv2.encoder.layer.1.layer.1", "m.mobilevitv2.encoder.layer.2",
            "m.mobilevitv2.encoder.layer.3", "m.mobilevitv2.encoder.layer.4")
    audio_cnn = ("frontend.0", "frontend.1", "frontend.2", "stage1.0", "stage1.1", "stage2.0", "stage2.1", "mean")

    def qwen3(n):
        return _hf("Qwen3ForSequenceClassification", "Qwen3Config", **_text_options(n, num_key_value_heads=2,
                                                                                     head_dim=16))

    def convnextv2():
        return _hf("ConvNextV2ForImageClassification", "ConvNextV2Config", hidden_sizes=[16, 32, 64, 128],
                   depths=list(d1121), num_labels=5)

    def poolformer():
        return _hf("PoolFormerForImageClassification", "PoolFormerConfig", hidden_sizes=[16, 32, 64, 128],
                   depths=list(d1121), num_labels=5)

    def speech(arch: str, n: int):
        return _hf(f"{arch}ForSequenceClassification", f"{arch}Config", **_audio_options(n))

    return [
        pair("dev-qwen3-4-gptneox2", lambda: (qwen3(4), _hf("GPTNeoXForSequenceClassification", "GPTNeoXConfig",
                                                              **_text_options(2)), _tokens()), Truth(
            (*layers(qwen, 4), "m.model.norm"), (*layers(neox, 2), "m.gpt_neox.final_layer_norm"),
            ((f"{qwen}.1", f"{neox}.0"), ("m.model.norm", "m.gpt_neox.final_layer_norm")))),
        pair("dev-opt6-phi3", lambda: (
            _hf("OPTForSequenceClassification", "OPTConfig", vocab_size=100, hidden_size=32, num_hidden_layers=6,
                num_attention_heads=2, ffn_dim=64, max_position_embeddings=64, num_labels=5, pad_token_id=0,
                word_embed_proj_dim=32),
            _hf("PhiForSequenceClassification", "PhiConfig", **_text_options(3)), _tokens()), Truth(
            (*layers(opt, 6), "m.model.decoder.final_layer_norm"), (*layers(phi, 3), "m.model.final_layernorm"),
            ((f"{opt}.1", f"{phi}.0"), (f"{opt}.3", f"{phi}.1"),
             ("m.model.decoder.final_layer_norm", "m.model.final_layernorm")))),
        pair("dev-deberta4-qwen3-2", lambda: (
            _hf("DebertaForSequenceClassification", "DebertaConfig", **_text_options(4)), qwen3(2), _tokens()),
            Truth((*layers(deberta, 4), "m.pooler"), (*layers(qwen, 2), "m.model.norm"),
                  ((f"{deberta}.1", f"{qwen}.0"), ("m.pooler", "m.model.norm")))),
        # the issue's audio pairs: transformer layers, not the convolutional front end
        pair("dev-wav2vec2-4-wavlm2", lambda: (speech("Wav2Vec2", 4), speech("WavLM", 2), _wave()), Truth(
            (*layers(w2v, 4), "mean"), (*layers(wavlm, 2), "mean"), ((f"{w2v}.1", f"{wavlm}.0"), ("mean", "mean")))),
        pair("dev-hubert4-audiocnn", lambda: (speech("Hubert", 4), AudioCNN(), _wave()), Truth(
            (*layers(hubert, 4), "mean"), audio_cnn,
            ((f"{hubert}.1", "stage1.1"), (f"{hubert}.3", "stage2.1"), ("mean", "mean"))), library="transformers"),
        pair("dev-beit4-convnextv2-1121", lambda: (
            _hf("BeitForImageClassification", "BeitConfig", image_size=64, patch_size=8, hidden_size=32,
                num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, num_labels=5), convnextv2(),
            image()), Truth(
            (*layers(beit, 4), "m.beit.pooler"), (*cnv2, "m.convnextv2.layernorm"),
            ((f"{beit}.1", "m.convnextv2.encoder.stages.1.layers.0"), ("m.beit.pooler", "m.convnextv2.layernorm")))),
        # four levels on both sides (16x16 to 2x2) and four points: the last stage's map is not a
        # point of its own, its pooled features are
        pair("dev-convnextv2-1121-pvt1121", lambda: (
            convnextv2(),
            _hf("PvtForImageClassification", "PvtConfig", image_size=64, hidden_sizes=[16, 32, 64, 128],
                depths=list(d1121), num_attention_heads=[1, 2, 4, 8], sequence_reduction_ratios=[8, 4, 2, 1],
                num_labels=5), image()), Truth(
            (*cnv2, "m.convnextv2.layernorm"), (*pvt, "m.pvt.encoder.layer_norm"),
            (("m.convnextv2.encoder.stages.0.layers.0", "m.pvt.encoder.block.0.0"),
             ("m.convnextv2.encoder.stages.1.layers.0", "m.pvt.encoder.block.1.0"),
             ("m.convnextv2.encoder.stages.2.layers.1", "m.pvt.encoder.block.2.1"),
             ("m.convnextv2.layernorm", "m.pvt.encoder.layer_norm")))),
        # DINOv2's head reads the class token joined with the patch tokens' mean (cat_1; cat joins the embeddings)
        pair("dev-dinov2-6-poolformer1121", lambda: (
            _hf("Dinov2ForImageClassification", "Dinov2Config", image_size=64, patch_size=8, hidden_size=32,
                num_hidden_layers=6, num_attention_heads=2, mlp_ratio=2, num_labels=5), poolformer(), image()), Truth(
            (*layers(dino, 6), "cat_1"), (*pool, "mean"),
            ((f"{dino}.1", "m.poolformer.encoder.block.1.0"), (f"{dino}.3", "m.poolformer.encoder.block.2.1"),
             ("cat_1", "mean")))),
        # five levels (32x32 to 2x2) against four, three points: the level ends nearest 1/3 and 2/3
        pair("dev-mobilevitv2-poolformer1121", lambda: (
            _hf("MobileViTV2ForImageClassification", "MobileViTV2Config", image_size=64, width_multiplier=0.5,
                num_labels=5), poolformer(), image()), Truth(
            (*mvit, "mean"), (*pool, "mean"),
            (("m.mobilevitv2.encoder.layer.2", "m.poolformer.encoder.block.1.0"),
             ("m.mobilevitv2.encoder.layer.3", "m.poolformer.encoder.block.2.1"), ("mean", "mean")))),
    ]


# ------------------------------------------------------------------ the test set

def _wave(batch: int = 2, length: int = 1600) -> tuple[torch.Tensor, ...]:
    return (torch.randn(batch, length, generator=torch.Generator().manual_seed(0)),)


def _hf(arch: str, config: str, **options) -> nn.Module:
    """``transformers.<arch>(transformers.<config>(**options))``, its logits the prediction."""
    import transformers

    return Logits(getattr(transformers, arch)(getattr(transformers, config)(**options)))


def _text_options(layers: int, hidden: int = 32, **extra) -> dict:
    return {"vocab_size": 100, "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 2,
            "intermediate_size": 2 * hidden, "max_position_embeddings": 64, "num_labels": 5, "pad_token_id": 0,
            **extra}


def _audio_options(layers: int, hidden: int = 32, **extra) -> dict:
    return {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 2,
            "intermediate_size": 2 * hidden, "conv_dim": (16, 16, 16), "conv_stride": (5, 2, 2),
            "conv_kernel": (10, 3, 3), "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2,
            "num_labels": 5, "classifier_proj_size": 16, **extra}


def _test_set() -> list[ZooPair]:
    """The test set: 14 pairs of 24 families that no other pair, no test and no doc used before, and
    none of those the issue "alignment by principles" names (Qwen3, GPT-NeoX, OPT, Phi, DeBERTa,
    wav2vec2, WavLM, HuBERT, BEiT, ConvNeXtV2, PvT, PoolFormer, DINOv2, MobileViTv2 and the timm
    and torchvision families it lists: those are the development set). The ground truth below was
    written from the module trees and the output shapes of one forward pass (no alignment was run)
    and committed before the first run; the rules are never tuned on these pairs.

    The ground truth follows the rules a reader applies (docs/alignment.md, section 2), written down
    before any run:

    - points lie on the **trunk**: the outputs of its repeated blocks (layers, stage blocks, the
      output of a stage that ends in its own norm), after the front end (embeddings, a convolutional
      stem, an audio feature extractor, a patch embedding) and before the head; the last point may
      be the features the head reads (a pooler, a final norm, the pooled mean or the flattened pool);
    - the trunk's **levels** are its resolutions (a map's or a token grid's extent, a token count);
      the features the head reads stand for the last level (they are its pooled or normed output);
    - every level gets one point, at its end (the last block output before the resolution changes),
      before any level gets a second; with fewer points than levels, the points before the last
      lie at the level ends nearest to k/K of the trunk's blocks (K points), and the last is the
      features the head reads; a model of one level (a text or audio transformer) spreads its points
      over its blocks the same way (layer 2 of 4 for the middle point);
    - the two models' points correspond level by level, each at its own depth.
    """
    tx = "transformers"

    def pair(name, build, truth):
        return ZooPair(name, tx, build, truth, held_back=True, round=3, test=True)

    def layers(prefix: str, n: int) -> tuple[str, ...]:
        return tuple(f"{prefix}.{i}" for i in range(n))

    def staged(prefix: str, inner: str, depths) -> tuple[str, ...]:
        return tuple(f"{prefix}.{s}.{inner}.{i}" for s, d in enumerate(depths) for i in range(d))

    d1121 = (1, 1, 2, 1)
    text = _tokens
    image = lambda: _image(2, 64)  # noqa: E731
    falcon, bloom = "m.transformer.h", "m.transformer.h"
    gemma, stablelm = "m.model.layers", "m.model.layers"
    gptj, d2vt = "m.transformer.h", "m.data2vec_text.encoder.layer"
    mobilebert, fnet = "m.mobilebert.encoder.layer", "m.fnet.encoder.layer"
    funnel, roformer = "m.funnel.encoder.blocks", "m.roformer.encoder.layer"
    mpnet, convbert = "m.mpnet.encoder.layer", "m.convbert.encoder.layer"
    d2va, unispeech = "m.data2vec_audio.encoder.layers", "m.unispeech.encoder.layers"
    sew, unisat = "m.sew.encoder.layers", "m.unispeech_sat.encoder.layers"
    bit = staged("m.bit.encoder.stages", "layers", d1121)
    hgnet = staged("m.encoder.stages", "blocks", d1121)
    # HGNetV2's head pools and flattens in m.classifier (0: the pool, 1: the flattened features it reads)
    hgnet_head = ("m.classifier.0", "m.classifier.1")
    # a Segformer stage ends in its own norm: its blocks, then its output, stage by stage
    segformer = tuple(x for s_, d in enumerate(d1121)
                      for x in (*layers(f"m.segformer.stages.{s_}.blocks", d), f"m.segformer.stages.{s_}"))
    textnet = staged("m.textnet.encoder.stages", "stage", (3, 4, 4, 4))
    # SwiftFormer's network alternates stages (0, 2, 4, 6) and downsampling embeddings (1, 3, 5)
    swift = tuple(x for k, n in ((0, 1), (1, 0), (2, 1), (3, 0), (4, 2), (5, 0), (6, 1))
                  for x in (*layers(f"m.swiftformer.encoder.network.{k}.blocks", n), f"m.swiftformer.encoder.network.{k}"))
    focal = staged("m.focalnet.encoder.stages", "layers", d1121)
    clip, siglip = "m.vision_model.encoder.layers", "m.vision_model.encoder.layers"

    def bit_model():
        return _hf("BitForImageClassification", "BitConfig", embedding_size=16, hidden_sizes=[16, 32, 64, 128],
                   depths=list(d1121), layer_type="preactivation", num_groups=4, num_labels=5)

    def hgnet_model():
        return _hf("HGNetV2ForImageClassification", "HGNetV2Config", stem_channels=[3, 8, 16],
                   stage_in_channels=[16, 32, 64, 128], stage_mid_channels=[8, 16, 32, 64],
                   stage_out_channels=[32, 64, 128, 256], stage_num_blocks=list(d1121),
                   stage_downsample=[False, True, True, True], stage_light_block=[False, False, True, True],
                   stage_kernel_size=[3, 3, 5, 5], stage_numb_of_layers=[2, 2, 2, 2],
                   hidden_sizes=[32, 64, 128, 256], num_labels=5)

    def vision_tower(kind: str):
        sub = {"image_size": 64, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 4,
               "num_attention_heads": 2, "intermediate_size": 64}
        txt = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
        return _hf(f"{kind}ForImageClassification", f"{kind}Config", vision_config=sub, text_config=txt,
                   num_labels=5)

    return [
        # text: one level each, the middle point half-way through the layers
        pair("test-falcon4-bloom2", lambda: (
            _hf("FalconForSequenceClassification", "FalconConfig", vocab_size=100, hidden_size=32,
                num_hidden_layers=4, num_attention_heads=2, num_labels=5, pad_token_id=0),
            _hf("BloomForSequenceClassification", "BloomConfig", vocab_size=100, hidden_size=32, n_layer=2,
                n_head=2, num_labels=5, pad_token_id=0), text()), Truth(
            (*layers(falcon, 4), "m.transformer.ln_f"), (*layers(bloom, 2), "m.transformer.ln_f"),
            ((f"{falcon}.1", f"{bloom}.0"), ("m.transformer.ln_f", "m.transformer.ln_f")))),
        pair("test-gemma6-stablelm3", lambda: (
            _hf("GemmaForSequenceClassification", "GemmaConfig", **_text_options(6, num_key_value_heads=2,
                                                                                 head_dim=16)),
            _hf("StableLmForSequenceClassification", "StableLmConfig", **_text_options(3, num_key_value_heads=2)),
            text()), Truth(
            (*layers(gemma, 6), "m.model.norm"), (*layers(stablelm, 3), "m.model.norm"),
            ((f"{gemma}.1", f"{stablelm}.0"), (f"{gemma}.3", f"{stablelm}.1"), ("m.model.norm", "m.model.norm")))),
        pair("test-gptj4-data2vectext2", lambda: (
            _hf("GPTJForSequenceClassification", "GPTJConfig", vocab_size=100, n_embd=32, n_layer=4, n_head=2,
                n_positions=64, rotary_dim=8, num_labels=5, pad_token_id=0),
            _hf("Data2VecTextForSequenceClassification", "Data2VecTextConfig", **_text_options(2)), text()), Truth(
            (*layers(gptj, 4), "m.transformer.ln_f"), layers(d2vt, 2),
            # the child's head reads its last layer's output (its first token)
            ((f"{gptj}.1", f"{d2vt}.0"), ("m.transformer.ln_f", f"{d2vt}.1")))),
        pair("test-mobilebert4-fnet2", lambda: (
            _hf("MobileBertForSequenceClassification", "MobileBertConfig",
                **_text_options(4, embedding_size=16, intra_bottleneck_size=16, true_hidden_size=16,
                                num_feedforward_networks=2)),
            _hf("FNetForSequenceClassification", "FNetConfig",
                **{k: v for k, v in _text_options(2).items() if k != "num_attention_heads"}), text()), Truth(
            (*layers(mobilebert, 4), "m.mobilebert.pooler"), (*layers(fnet, 2), "m.fnet.pooler"),
            ((f"{mobilebert}.1", f"{fnet}.0"), ("m.mobilebert.pooler", "m.fnet.pooler")))),
        # a token model of two levels (16 tokens, then 8): the first level's end, then the head's features
        pair("test-funnel22-roformer4", lambda: (
            _hf("FunnelForSequenceClassification", "FunnelConfig", vocab_size=100, block_sizes=[2, 2], d_model=32,
                n_head=2, d_head=16, d_inner=64, num_labels=5, pad_token_id=0),
            _hf("RoFormerForSequenceClassification", "RoFormerConfig", **_text_options(4, embedding_size=32)),
            text()), Truth(
            (f"{funnel}.0.0", f"{funnel}.0.1", f"{funnel}.1.0", f"{funnel}.1.1"), layers(roformer, 4),
            ((f"{funnel}.0.1", f"{roformer}.1"), (f"{funnel}.1.1", f"{roformer}.3")))),
        pair("test-mpnet6-convbert3", lambda: (
            _hf("MPNetForSequenceClassification", "MPNetConfig", **_text_options(6)),
            _hf("ConvBertForSequenceClassification", "ConvBertConfig", **_text_options(3, embedding_size=32)),
            text()), Truth(
            layers(mpnet, 6), layers(convbert, 3),
            ((f"{mpnet}.1", f"{convbert}.0"), (f"{mpnet}.3", f"{convbert}.1"), (f"{mpnet}.5", f"{convbert}.2")))),
        # audio: a convolutional feature extractor (the front end), then transformer layers; the head
        # projects the tokens and reads their mean
        pair("test-data2vecaudio4-unispeech2", lambda: (
            _hf("Data2VecAudioForSequenceClassification", "Data2VecAudioConfig",
                **_audio_options(4, conv_pos_kernel_size=5, num_conv_pos_embeddings=5)),
            _hf("UniSpeechForSequenceClassification", "UniSpeechConfig", **_audio_options(2)), _wave()), Truth(
            (*layers(d2va, 4), "mean"), (*layers(unispeech, 2), "mean"),
            ((f"{d2va}.1", f"{unispeech}.0"), ("mean", "mean")))),
        pair("test-sew4-unispeechsat2", lambda: (
            _hf("SEWForSequenceClassification", "SEWConfig", **_audio_options(4, squeeze_factor=2)),
            _hf("UniSpeechSatForSequenceClassification", "UniSpeechSatConfig", **_audio_options(2)), _wave()), Truth(
            (*layers(sew, 4), "mean"), (*layers(unisat, 2), "mean"),
            ((f"{sew}.1", f"{unisat}.0"), ("mean", "mean")))),
        pair("test-unispeechsat6-data2vecaudio3", lambda: (
            _hf("UniSpeechSatForSequenceClassification", "UniSpeechSatConfig", **_audio_options(6)),
            _hf("Data2VecAudioForSequenceClassification", "Data2VecAudioConfig",
                **_audio_options(3, conv_pos_kernel_size=5, num_conv_pos_embeddings=5)), _wave()), Truth(
            (*layers(unisat, 6), "mean"), (*layers(d2va, 3), "mean"),
            ((f"{unisat}.1", f"{d2va}.0"), (f"{unisat}.3", f"{d2va}.1"), ("mean", "mean")))),
        # vision, 64x64: four levels (16x16, 8x8, 4x4, 2x2) on both sides, four points
        pair("test-bit1121-hgnetv2-1121", lambda: (bit_model(), hgnet_model(), image()), Truth(
            (*bit, "m.bit.pooler"), (*hgnet, *hgnet_head),
            (("m.bit.encoder.stages.0.layers.0", "m.encoder.stages.0.blocks.0"),
             ("m.bit.encoder.stages.1.layers.0", "m.encoder.stages.1.blocks.0"),
             ("m.bit.encoder.stages.2.layers.1", "m.encoder.stages.2.blocks.1"),
             ("m.bit.pooler", "m.classifier.1")))),
        # fewer points than levels: the level ends nearest 1/3 and 2/3 of the trunk, then the pool
        pair("test-segformer1121-textnet", lambda: (
            _hf("SegformerForImageClassification", "SegformerConfig", num_encoder_blocks=4, depths=list(d1121),
                sr_ratios=[8, 4, 2, 1], hidden_sizes=[16, 32, 64, 128], num_attention_heads=[1, 2, 4, 8],
                num_labels=5),
            _hf("TextNetForImageClassification", "TextNetConfig", num_labels=5), image()), Truth(
            (*segformer, "mean"), (*textnet, "m.flatten"),
            (("m.segformer.stages.1", "m.textnet.encoder.stages.1.stage.3"),
             ("m.segformer.stages.2", "m.textnet.encoder.stages.2.stage.3"), ("mean", "m.flatten")))),
        pair("test-swiftformer1121-focalnet1121", lambda: (
            _hf("SwiftFormerForImageClassification", "SwiftFormerConfig", depths=list(d1121),
                embed_dims=[16, 32, 64, 128], num_labels=5),
            _hf("FocalNetForImageClassification", "FocalNetConfig", image_size=64, patch_size=4, embed_dim=16,
                depths=list(d1121), num_labels=5), image()), Truth(
            # FocalNet pools with its pooler and flattens; the flattened pool carries the model's name
            (*swift, "mean"), (*focal, "m.focalnet.pooler", "m.focalnet"),
            (("m.swiftformer.encoder.network.2", "m.focalnet.encoder.stages.1.layers.0"),
             ("m.swiftformer.encoder.network.4", "m.focalnet.encoder.stages.2.layers.1"), ("mean", "m.focalnet")))),
        # a ViT-style tower (8x8 patches and a class token) and a CNN: the middle at the CNN's 8x8 level
        pair("test-clip4-hgnetv2-1121", lambda: (vision_tower("CLIP"), hgnet_model(), image()), Truth(
            (*layers(clip, 4), "mean"), (*hgnet, *hgnet_head),
            ((f"{clip}.1", "m.encoder.stages.1.blocks.0"), ("mean", "m.classifier.1")))),
        pair("test-siglip4-bit1121", lambda: (vision_tower("Siglip"), bit_model(), image()), Truth(
            # SigLIP's attention-pooling head (unused by the classifier) computes a mean first: the
            # mean over the tokens the classifier reads is the second
            (*layers(siglip, 4), "mean_1"), (*bit, "m.bit.pooler"),
            ((f"{siglip}.1", "m.bit.encoder.stages.1.layers.0"), ("mean_1", "m.bit.pooler")))),
    ]


def _torchvision_pairs() -> list[ZooPair]:
    def build(p, c):
        def make():
            import torchvision.models as tvm

            return getattr(tvm, p)(num_classes=5), getattr(tvm, c)(num_classes=5), _image(2, 64)
        return make

    layer = lambda s: f"layer{s}"  # noqa: E731
    r50 = tuple(f"layer{s}.{i}" for s, n in zip((1, 2, 3, 4), (3, 4, 6, 3)) for i in range(n))
    r18 = tuple(f"layer{s}.{i}" for s in (1, 2, 3, 4) for i in range(2))
    return [
        ZooPair("tv-resnet50-resnet18", "torchvision", build("resnet50", "resnet18"), Truth(
            (*r50, "flatten"), (*r18, "flatten"),
            (("layer1.2", "layer1.1"), ("layer2.3", "layer2.1"), ("layer3.5", "layer3.1"), ("flatten", "flatten")),
            extra_boundaries=(layer(1), layer(2), layer(3), layer(4))), held_back=True),
    ]


def _timm_pairs() -> list[ZooPair]:
    def make():
        import timm

        return (timm.create_model("resnet26", num_classes=5), timm.create_model("resnet18", num_classes=5),
                _image(2, 64))

    r26 = tuple(f"layer{s}.{i}" for s in (1, 2, 3, 4) for i in range(2))
    r18 = tuple(f"layer{s}.{i}" for s in (1, 2, 3, 4) for i in range(2))
    return [ZooPair("timm-resnet26-resnet18", "timm", make, Truth(
        (*r26, "global_pool"), (*r18, "global_pool"),
        (("layer1.1", "layer1.1"), ("layer2.1", "layer2.1"), ("layer3.1", "layer3.1"), ("global_pool", "global_pool"))),
        held_back=True)]


# ------------------------------------------------------------------ scoring

def _resolve(traced, name: str) -> str | None:
    """The value ``name`` denotes; for the path of a module whose call returns a tuple (so that no
    value carries its name), the value computed inside that module that the rest of the network
    reads (the last in forward order): the hidden state a layer hands on."""
    try:
        return traced.canonical(name)
    except KeyError:
        pass
    g = traced.graph
    prefix = name + "."

    def inside(node: str) -> bool:
        module = str(g.nodes[node].get("module") or "")
        return module == name or module.startswith(prefix)

    handed = [n for n in traced.order if inside(n) and g.nodes[n]["shape"] is not None
              and len(g.nodes[n]["shape"]) >= 2 and any(not inside(s) for s in g.successors(n))]
    return handed[-1] if handed else None


def _owner(traced, node: str, blocks: tuple[str, ...]) -> int | None:
    """Index of the listed block ``node`` is the output of, or lies in (deepest listed path prefix)."""
    outputs = [_resolve(traced, b) for b in blocks]
    if node in outputs:
        return outputs.index(node)
    module = traced.graph.nodes[node].get("module", "") if node in traced.graph else ""
    best = None
    for k, b in enumerate(blocks):
        if module == b or module.startswith(b + "."):
            if best is None or len(b) > len(blocks[best]):
                best = k
    return best


def score_points(chosen: list[tuple[str, str]], truth: Truth, tp, tc) -> dict:
    """exact / near / wrong per chosen mixing point and the count of block-output nodes."""
    exact = near = wrong = 0
    verdicts = []
    bound_p = {_resolve(tp, b) for b in (*truth.parent_blocks, *truth.extra_boundaries)} - {None}
    bound_c = {_resolve(tc, b) for b in (*truth.child_blocks, *truth.extra_boundaries)} - {None}
    boundary = 0
    for k, (p, c) in enumerate(chosen):
        boundary += (p in bound_p) + (c in bound_c)
        want = truth.points[k] if k < len(truth.points) else truth.points[-1]
        wp, wc = _resolve(tp, want[0]), _resolve(tc, want[1])
        if p == wp and c == wc:
            exact += 1
            verdicts.append("exact")
            continue
        ip, ic = _owner(tp, p, truth.parent_blocks), _owner(tc, c, truth.child_blocks)
        ep = _owner(tp, wp, truth.parent_blocks) if wp else None
        ec = _owner(tc, wc, truth.child_blocks) if wc else None
        if ip is not None and ep is not None and ic is not None and ec is not None and ic is not None and abs(ip - ep) <= 1 and abs(ic - ec) <= 1:
            near += 1
            verdicts.append("near")
        else:
            wrong += 1
            verdicts.append("wrong")
    return {"exact": exact, "near": near, "wrong": wrong, "points": len(chosen), "block_outputs": boundary,
            "nodes": 2 * len(chosen), "verdicts": verdicts}


def random_alignment(bp, bc, count: int, rng: np.random.Generator) -> list[tuple[str, str]] | None:
    """Order-preserving pairs that can mix, drawn uniformly among the values between inputs and
    prediction of each model (every batched tensor, not only the aligner's candidates)."""
    from hkt_core.trace.kinds import mixing_pair_problem

    def values(bg):
        out = []
        for name in bg.traced.order:
            shape = bg.traced.graph.nodes[name]["shape"]
            if (name == bg.traced.prediction or name in bg.traced.inputs or shape is None or len(shape) < 2
                    or not bg.is_ancestor(name, bg.traced.prediction)):
                continue
            out.append(name)
        return out

    vp, vc = values(bp), values(bc)
    for _ in range(200):
        ip = np.sort(rng.choice(len(vp), size=count, replace=False))
        ic = np.sort(rng.choice(len(vc), size=count, replace=False))
        picked = [(vp[i], vc[j]) for i, j in zip(ip, ic)]
        try:
            if all(mixing_pair_problem(bp.block(p).value_kind, bc.block(c).value_kind) is None for p, c in picked):
                return picked
        except Exception:
            continue
    return None


def run_pair(pair: ZooPair, repeats: int, controls: int, seed: int) -> dict:
    from hkt_core.align import align, analyse

    torch.manual_seed(seed)
    try:
        parent, child, inputs = pair.build()
    except ImportError as exc:
        return {"name": pair.name, "library": pair.library, "skipped": f"{type(exc).__name__}: {exc}"}
    times = []
    result = None
    from hkt_core.errors import HKTError

    for _ in range(repeats):
        start = time.perf_counter()
        try:
            result = align(parent, child, inputs, stages=pair.stages)
        except HKTError as exc:  # an alignment or a trace that fails: counted as all points wrong
            n = len(pair.truth.points)
            return {"name": pair.name, "library": pair.library, "held_back": pair.held_back, "round": pair.round,
                    "test": pair.test, "stages": pair.stages, "failed": str(exc), "align_s": time.perf_counter() - start,
                    "exact": 0, "near": 0, "wrong": n, "points": n, "block_outputs": 0, "nodes": 2 * n,
                    "control": {"exact": 0, "near": 0, "wrong": n, "points": n, "block_outputs": 0,
                                "nodes": 2 * n}}
        times.append(time.perf_counter() - start)
    assert result is not None
    tp, tc = result.traced
    chosen = [(p.parent, p.child) for p in result.pairs[:-1]]
    scored = score_points(chosen, pair.truth, tp, tc)
    bp, bc = analyse(parent, inputs, side="parent"), analyse(child, inputs, side="child")
    rng = np.random.default_rng(seed)
    control = {"exact": 0, "near": 0, "wrong": 0, "points": 0, "block_outputs": 0, "nodes": 0}
    for _ in range(controls):
        picked = random_alignment(bp, bc, len(chosen), rng)
        if picked is None:
            continue
        s = score_points(picked, pair.truth, tp, tc)
        for key in control:
            control[key] += s[key]
    return {"name": pair.name, "library": pair.library, "held_back": pair.held_back, "round": pair.round,
            "test": pair.test, "stages": pair.stages, "backends": [tp.backend, tc.backend], "chosen": [list(x) for x in chosen],
            "expected": [list(x) for x in pair.truth.points],
            "kinds": [f"{p.parent_kind} -> {p.child_kind}" for p in result.pairs[:-1]],
            "reasons": [p.reason for p in result.pairs[:-1]],
            "align_s": statistics.median(times), **scored, "control": control}


def summarise(rows: list[dict]) -> dict:
    def total(sel, key, sub=None):
        return sum((r[sub] if sub else r)[key] for r in sel)

    out = {}
    ran = [r for r in rows if "skipped" not in r]
    for label, sel in (("all", ran),
                       ("development", [r for r in ran if not r.get("test")]),
                       ("test", [r for r in ran if r.get("test")]),
                       ("tuning", [r for r in ran if not r["held_back"] and r.get("round", 1) != 3]),
                       ("held_back", [r for r in ran if r["held_back"] and not r.get("test")]),
                       ("held_back_round2", [r for r in ran if r.get("round", 1) == 2]),
                       ("issue_families", [r for r in ran if r.get("round", 1) == 3 and not r.get("test")])):
        points, nodes = total(sel, "points"), total(sel, "nodes")
        cp, cn = total(sel, "points", "control"), total(sel, "nodes", "control")
        out[label] = {
            "pairs": len(sel), "points": points,
            "exact": total(sel, "exact"), "near": total(sel, "near"), "wrong": total(sel, "wrong"),
            "exact_share": total(sel, "exact") / points if points else None,
            "exact_or_near_share": (total(sel, "exact") + total(sel, "near")) / points if points else None,
            "wrong_share": total(sel, "wrong") / points if points else None,
            "block_output_share": total(sel, "block_outputs") / nodes if nodes else None,
            "control_exact_share": total(sel, "exact", "control") / cp if cp else None,
            "control_exact_or_near_share": ((total(sel, "exact", "control") + total(sel, "near", "control")) / cp
                                            if cp else None),
            "control_wrong_share": total(sel, "wrong", "control") / cp if cp else None,
            "control_block_output_share": total(sel, "block_outputs", "control") / cn if cn else None,
            "median_align_s": statistics.median([r["align_s"] for r in sel]) if sel else None,
        }
    return out


DOC = ROOT / "docs" / "alignment.md"
BEGIN, END = "<!-- align_zoo table: generated by benchmarks/align_zoo.py --doc -->", "<!-- end align_zoo table -->"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _set_label(row: dict) -> str:
    if row.get("test"):
        return "test"
    if row.get("round", 1) == 3:
        return "development, issue families"
    if not row["held_back"]:
        return "tuning"
    return "held back, round 2" if row.get("round", 1) == 2 else "held back"


def table(record: dict) -> str:
    """The markdown table of docs/alignment.md, from a results record (docs/results/align_zoo.json)."""
    lines = ["| pair | library | set | exact | near | wrong | block outputs | align s | chosen (parent=child) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in record["pairs"]:
        if "skipped" in r:
            lines.append(f"| {r['name']} | {r['library']} | | skipped: not installed | | | | | |")
            continue
        chosen = "failed: counted wrong" if "failed" in r else "<br>".join(f"`{p}`=`{c}`" for p, c in r["chosen"])
        library = r["library"] + (f" (torch {r['measured_with']['torch']})" if "measured_with" in r else "")
        lines.append(f"| {r['name']} | {library} | {_set_label(r)} | "
                     f"{r['exact']} | {r['near']} | {r['wrong']} | {r['block_outputs']}/{r['nodes']} | "
                     f"{r['align_s']:.2f} | {chosen} |")
    lines += ["", "| set | pairs | points | exact | exact or near | wrong | block outputs | control: exact | "
              "control: exact or near | control: block outputs | median align s |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, s in record["summary"].items():
        if not s["points"]:
            continue
        lines.append(f"| {label} | {s['pairs']} | {s['points']} | {_pct(s['exact_share'])} | "
                     f"{_pct(s['exact_or_near_share'])} | {_pct(s['wrong_share'])} | {_pct(s['block_output_share'])} | "
                     f"{_pct(s['control_exact_share'])} | {_pct(s['control_exact_or_near_share'])} | "
                     f"{_pct(s['control_block_output_share'])} | {s['median_align_s']:.2f} |")
    return "\n".join(lines)


BEFORE = ROOT / "docs" / "results" / "align_zoo_before.json"
BEGIN_CMP = "<!-- align_zoo before/after: generated by benchmarks/align_zoo.py --doc -->"
END_CMP = "<!-- end align_zoo before/after -->"
#: the sets compared before and after, in the order the doc shows them
COMPARED = ("development", "test", "tuning", "held_back", "held_back_round2", "issue_families")


def _verdicts(row: dict) -> str:
    if "skipped" in row:
        return "-"
    return f"{row['exact']}/{row['near']}/{row['wrong']}, {row['block_outputs']}/{row['nodes']}"


def comparison(before: dict, after: dict) -> str:
    """The before/after table of docs/alignment.md: each set's figures under the earlier rules
    (``before``, docs/results/align_zoo_before.json) and the current ones (``after``), summaries
    recomputed from the rows with one definition of the sets; then every pair whose verdicts moved."""
    sb, sa = summarise(before["pairs"]), summarise(after["pairs"])
    lines = ["| set | pairs | points | before: exact | before: exact or near | before: wrong | before: block outputs "
             "| after: exact | after: exact or near | after: wrong | after: block outputs |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label in COMPARED:
        b, a = sb.get(label), sa.get(label)
        if not a or not a["points"]:
            continue
        lines.append(f"| {label} | {a['pairs']} | {a['points']} | {_pct(b['exact_share'])} | "
                     f"{_pct(b['exact_or_near_share'])} | {_pct(b['wrong_share'])} | {_pct(b['block_output_share'])} | "
                     f"{_pct(a['exact_share'])} | {_pct(a['exact_or_near_share'])} | {_pct(a['wrong_share'])} | "
                     f"{_pct(a['block_output_share'])} |")
    rows_b = {r["name"]: r for r in before["pairs"]}
    moved = [r for r in after["pairs"] if "skipped" not in r and r["name"] in rows_b
             and _verdicts(r) != _verdicts(rows_b[r["name"]])]
    lines += ["", "| pair | set | before: exact/near/wrong, block outputs | after | chosen after (parent=child) |",
              "|---|---|---|---|---|"]
    for r in moved:
        chosen = "failed: counted wrong" if "failed" in r else "<br>".join(f"`{p}`=`{c}`" for p, c in r["chosen"])
        lines.append(f"| {r['name']} | {_set_label(r)} | {_verdicts(rows_b[r['name']])} | {_verdicts(r)} | {chosen} |")
    return "\n".join(lines)


def write_doc(record: dict, doc: Path = DOC, before: dict | None = None) -> None:
    text = doc.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    text = text[:start] + "\n" + table(record) + "\n" + text[end:]
    if before is not None and BEGIN_CMP in text:
        start, end = text.index(BEGIN_CMP) + len(BEGIN_CMP), text.index(END_CMP)
        text = text[:start] + "\n" + comparison(before, record) + "\n" + text[end:]
    doc.write_text(text, encoding="utf-8")


def merge(path: Path, environment: str, out: Path = DEFAULT_OUT) -> dict:
    """Rows measured elsewhere (``path``) replace the rows of the same pairs in ``out``."""
    other = json.loads(path.read_text())
    record = json.loads(out.read_text())
    names = [r["name"] for r in record["pairs"]]
    merged = []
    for row in other["pairs"]:
        if "skipped" in row:
            continue
        if row["name"] not in names:
            raise SystemExit(f"--merge: {path} has pair {row['name']!r}, which {out.name} does not list")
        row = {**row, "measured_with": {"torch": other["torch"], "python": other["python"],
                                        "command": other["command"], "environment": environment}}
        record["pairs"][names.index(row["name"])] = row
        merged.append(row["name"])
    record["summary"] = summarise(record["pairs"])
    record.setdefault("merged", []).append({"from": other["command"], "torch": other["torch"],
                                            "environment": environment, "pairs": merged})
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"merged {', '.join(merged) or 'nothing'} into {out}")
    return record


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the quick pairs only, one repeat, few controls")
    ap.add_argument("--out", default=None, help=f"write the results JSON here (default {DEFAULT_OUT} unless --quick)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--controls", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--doc", action="store_true",
                    help=f"only regenerate the table in docs/alignment.md from {DEFAULT_OUT.relative_to(ROOT)}")
    ap.add_argument("--pairs", default=None, help="comma-separated pair names: run only these")
    ap.add_argument("--merge", default=None, metavar="FILE",
                    help=f"merge the measured rows of FILE (a run of --pairs in another environment, e.g. one "
                         f"with torchvision and timm) into {DEFAULT_OUT.relative_to(ROOT)}, each row marked "
                         f"with the torch that measured it, and recompute the summary")
    ap.add_argument("--environment", default="",
                    help="with --merge: a note on the environment FILE was measured in")
    args = ap.parse_args(argv)
    if args.doc:
        record = json.loads(DEFAULT_OUT.read_text())
        write_doc(record, before=json.loads(BEFORE.read_text()) if BEFORE.exists() else None)
        return record
    if args.merge:
        return merge(Path(args.merge), args.environment)
    torch.set_num_threads(1)
    pairs = [p for p in _pairs() if p.quick] if args.quick else _pairs()
    if args.pairs:
        wanted = args.pairs.split(",")
        unknown = sorted(set(wanted) - {p.name for p in _pairs()})
        if unknown:
            ap.error(f"--pairs: unknown pair(s) {', '.join(unknown)}; known: {', '.join(p.name for p in _pairs())}")
        pairs = [p for p in pairs if p.name in wanted]
    repeats, controls = (1, 5) if args.quick else (args.repeats, args.controls)
    rows = []
    for pair in pairs:
        row = run_pair(pair, repeats, controls, args.seed)
        rows.append(row)
        if "skipped" in row:
            print(f"{pair.name:32s} skipped ({row['skipped']})")
        elif "failed" in row:
            print(f"{pair.name:32s} failed, counted wrong: {row['failed'][:160]}")
        else:
            print(f"{pair.name:32s} exact {row['exact']} near {row['near']} wrong {row['wrong']} "
                  f"block outputs {row['block_outputs']}/{row['nodes']} align {row['align_s']:.2f}s  "
                  f"{' | '.join(f'{p}={c}' for p, c in row['chosen'])}")
    command = "benchmarks/align_zoo.py" + (" --quick" if args.quick else "") + (f" --pairs {args.pairs}" if args.pairs else "")
    record = {"version": 1, "command": command,
              "quick": args.quick, "repeats": repeats, "controls": controls, "seed": args.seed,
              "torch": torch.__version__, "python": platform.python_version(),
              "pairs": rows, "summary": summarise(rows)}
    for label, s in record["summary"].items():
        if s["points"]:
            print(f"{label}: {s['pairs']} pairs, {s['points']} points: exact {s['exact_share']:.0%}, exact or near "
                  f"{s['exact_or_near_share']:.0%}, wrong {s['wrong_share']:.0%}, block outputs "
                  f"{s['block_output_share']:.0%}; control exact {s['control_exact_share']:.0%}, exact or near "
                  f"{s['control_exact_or_near_share']:.0%}, block outputs {s['control_block_output_share']:.0%}")
    out = args.out or (None if args.quick else str(DEFAULT_OUT))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()
