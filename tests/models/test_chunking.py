"""CPU micro-batching: chunked training steps equal whole-batch ones, and the automatic rule's choices."""

from __future__ import annotations

import timm
import torch
from torch import nn

import hf_condense  # noqa: F401  (registers the ConvNets)
from hf_condense.models import chunking
from hf_condense.models.training import train_epoch


def _train(micro_batch, seen=None):
    torch.manual_seed(0)
    model = timm.create_model("test_convnet", num_classes=3, in_chans=1, img_size=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(23, 1, 8, 8, generator=g), torch.arange(23) % 3
    values = train_epoch(model, opt, x, y, 10, None, g, torch.device("cpu"), on_batch=seen, micro_batch=micro_batch)
    return torch.cat([p.detach().flatten() for p in model.parameters()]), values


def test_chunked_training_steps_equal_whole_batch_steps():
    whole, v_whole = _train(0)
    batches = []
    chunked, v_chunked = _train(3, lambda idx, logits: batches.append((len(idx), tuple(logits.shape))))
    assert not torch.equal(whole, _train(0)[0] * 0)
    assert ((chunked - whole).norm() / whole.norm()) < 1e-5
    assert abs(v_chunked["loss"] - v_whole["loss"]) < 1e-5 and v_chunked["accuracy"] == v_whole["accuracy"]
    assert batches == [(10, (10, 3)), (10, (10, 3)), (3, (3, 3))]  # on_batch sees whole batches


def test_the_rule_chunks_buffer_free_cpu_networks_by_activation_size(monkeypatch):
    model = timm.create_model("convnet_d3w32", num_classes=10, in_chans=3, img_size=32)
    x = torch.randn(256, 3, 32, 32)
    per_example = 32 * 32 * 32 * 4  # the first block's output
    assert chunking.activation_bytes(model, x) == per_example
    assert chunking.micro_batch(None, model, x, "train") == chunking.CHUNK_BYTES["train"] // per_example
    assert chunking.micro_batch(None, model, x, "unroll") == chunking.CHUNK_BYTES["unroll"] // per_example
    assert chunking.micro_batch(None, model, x[:8], "train") is None  # a batch under one chunk runs whole
    assert chunking.micro_batch(7, model, x, "train") == 7  # a recipe value wins
    assert chunking.micro_batch(0, model, x, "train") is None  # 0: the whole batch
    assert chunking.micro_batch(None, model, x.to("meta"), "train") is None  # not a CPU: whole batches
    bn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    assert chunking.micro_batch(None, bn, x, "train") is None  # batch statistics: never chunked


def test_measuring_a_network_leaves_the_random_state_alone():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 50), nn.Dropout(0.5), nn.Linear(50, 2))
    x = torch.randn(4, 3, 2, 2)
    state = torch.get_rng_state()
    assert chunking.activation_bytes(model, x) == 50 * 4
    assert torch.equal(torch.get_rng_state(), state)
    assert chunking.describe(None, 16) == "16 (auto)" and chunking.describe(0, None) == "whole batch (recipe)"
