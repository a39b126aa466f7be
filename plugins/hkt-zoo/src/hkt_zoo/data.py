"""``token-recall``: an offline token-id classification task of variable length, with padding masks.

Each sample is a query key, ``n`` key-value pairs and the query key once more::

    [q, k1, v1, k2, v2, ..., kn, vn, q, 0, 0, ...]      attention_mask 1 ... 1 0 0 ...

``n`` is drawn from ``[min_pairs, max_pairs]``, so the true lengths vary from ``2 + 2 * min_pairs``
to ``2 + 2 * max_pairs`` tokens and every sequence is padded (id 0, mask 0) to the longest. The
keys of a sample are distinct; ``q`` is one of them, and the label is the class of the value that
follows it (values are ids ``1 .. num_classes``, keys ``num_classes + 1 .. num_classes + num_keys``).
The query stands first and last so that both a first-token classifier (BERT's pooler) and a
last-token one (GPT-2's, with ``pad_token_id = 0``) can read the answer where they pool.

It is an associative recall: the value must be found through its key, which a single attention
layer cannot do (the value does not know which key it follows until a layer has looked one
position back), while two layers can. Depth and width matter, yet the task is learnable in seconds
on a CPU at small sizes, which makes it a quality benchmark where a bigger transformer genuinely
beats a smaller one.

With ``dynamic_padding`` (the default) a training batch is cut to its longest sequence, as a
padding collator does: training batches come in several sequence lengths, none necessarily the
example's (evaluation batches keep the full length).

Everything is generated from ``seed``: nothing is read or downloaded. A sample is
``((input_ids, attention_mask), label)``, both inputs int64 of length ``2 + 2 * max_pairs``.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from hkt_core import DatasetBundle
from hkt_core import ConfigError

#: The id that pads a sequence (attention mask 0 there).
PAD = 0


def _fail(message: str) -> None:
    raise ConfigError(f"data set 'token-recall': {message}")


def _check(n_train: int, n_test: int, num_classes: int, num_keys: int, min_pairs: int, max_pairs: int) -> None:
    for name, value, low in (("n_train", n_train, 1), ("n_test", n_test, 1), ("num_classes", num_classes, 2),
                             ("num_keys", num_keys, 1), ("min_pairs", min_pairs, 1), ("max_pairs", max_pairs, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            _fail(f"{name} = {value!r} is invalid: an integer >= {low}")
    if min_pairs > max_pairs:
        _fail(f"min_pairs = {min_pairs} exceeds max_pairs = {max_pairs}")
    if max_pairs > num_keys:
        _fail(f"max_pairs = {max_pairs} exceeds num_keys = {num_keys}: the keys of a sample are distinct")


def recall_samples(n: int, generator: torch.Generator, *, num_classes: int, num_keys: int, min_pairs: int,
                   max_pairs: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` samples: ``(input_ids, attention_mask, labels)``, ids and mask ``(n, 2 + 2 * max_pairs)``."""
    length = 2 + 2 * max_pairs
    pairs = torch.randint(min_pairs, max_pairs + 1, (n,), generator=generator)
    keys = torch.rand(n, num_keys, generator=generator).argsort(dim=1)[:, :max_pairs] + num_classes + 1
    values = torch.randint(1, num_classes + 1, (n, max_pairs), generator=generator)
    # the query is one of the sample's own pairs
    which = (torch.rand(n, generator=generator) * pairs).long()
    rows = torch.arange(n)
    query = keys[rows, which]
    labels = values[rows, which] - 1
    ids = torch.full((n, length), PAD, dtype=torch.long)
    ids[:, 0] = query
    body = torch.stack([keys, values], dim=2).reshape(n, 2 * max_pairs)
    positions = torch.arange(2 * max_pairs)
    inside = positions[None, :] < 2 * pairs[:, None]
    ids[:, 1:1 + 2 * max_pairs] = torch.where(inside, body, torch.full_like(body, PAD))
    ids[rows, 1 + 2 * pairs] = query
    mask = (torch.arange(length)[None, :] < (2 + 2 * pairs)[:, None]).long()
    return ids, mask, labels


def token_recall(n_train: int = 4000, n_test: int = 1000, num_classes: int = 4, num_keys: int = 8,
                 min_pairs: int = 2, max_pairs: int = 6, seed: int = 0,
                 dynamic_padding: bool = True) -> DatasetBundle:
    """Associative recall over token ids with variable lengths and padding masks (see the module
    docstring); ``vocab_size`` in ``info`` is ``1 + num_classes + num_keys``."""
    _check(n_train, n_test, num_classes, num_keys, min_pairs, max_pairs)
    if not isinstance(dynamic_padding, bool):
        _fail(f"dynamic_padding = {dynamic_padding!r} is invalid: true or false")
    generator = torch.Generator().manual_seed(int(seed))
    options = {"num_classes": num_classes, "num_keys": num_keys, "min_pairs": min_pairs, "max_pairs": max_pairs}
    train = TensorDataset(*recall_samples(n_train, generator, **options))
    test = TensorDataset(*recall_samples(n_test, generator, **options))
    length = 2 + 2 * max_pairs
    return DatasetBundle(_Pairs(train), _Pairs(test), input_shapes=((length,), (length,)),
                         info={"num_classes": num_classes, "vocab_size": 1 + num_classes + num_keys,
                               "pad_token_id": PAD, "task": "classification"},
                         augment=trim_padding if dynamic_padding else None)


def trim_padding(inputs, target, generator=None):
    """A batch ``(input_ids, attention_mask), target`` cut to its longest unpadded sequence."""
    ids, mask = inputs
    keep = max(int(mask.sum(dim=1).max()), 1)
    return (ids[:, :keep], mask[:, :keep]), target


class _Pairs(torch.utils.data.Dataset):
    """``((input_ids, attention_mask), label)`` per sample."""

    def __init__(self, data: TensorDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        ids, mask, label = self.data[index]
        return (ids, mask), label


__all__ = ["PAD", "recall_samples", "token_recall", "trim_padding"]
