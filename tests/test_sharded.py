"""Sharded models, counted whole from any rank: FSDP2, tensor parallelism (DTensor), FSDP1 (with and without
``use_orig_params``) and DeepSpeed ZeRO-3 style parameters.

The distributed cases run in one world of two CPU processes (gloo, file:// rendezvous), spawned once for the
module and bounded in time. Each rank builds the same model, computes the ground truth itself (the unsharded
model's ``sum(p.numel())``, and what the rank holds from ``to_local()`` and the flat parameters' storages), shards
it, inspects it, and writes both to a JSON file that the tests read.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import paramscope
from paramscope._units import format_bytes

WORLD_SIZE = 2
TIME_LIMIT_S = 150
SCENARIOS = (
    "fsdp2", "fsdp2-checkpointed", "fsdp2-gathered", "fsdp2-gathered-bf16", "fsdp2-gathered-int",
    "fsdp2-gathered-root", "fsdp2-gathered-unshard", "tp", "fsdp1", "fsdp1-orig-params",
    "fsdp1-summoned", "fsdp1-orig-params-summoned", "fsdp1-forward", "fsdp1-orig-params-forward", "fsdp1-subclass",
)  # fmt: skip
FULLY_SHARDED = [scenario for scenario in SCENARIOS if scenario != "tp"]

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo is not available"
)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 8)
        self.norm = nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.fc2(self.fc1(x)))


class TiedNet(nn.Module):
    """A small transformer-like stack whose output head is tied to its embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.blocks = nn.ModuleList([Block(), Block(), Block()])
        self.head = nn.Linear(8, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden = self.emb(ids)
        for block in self.blocks:
            hidden = block(hidden)
        return self.head(hidden)


def frozen_first_block(model: TiedNet) -> TiedNet:
    """The model with its first block frozen, as in fine-tuning (one FSDP1 unit: a flat parameter is all frozen or
    all trained)."""
    model.blocks[0].requires_grad_(False)
    return model


def unsharded_truth() -> dict[str, Any]:
    model = frozen_first_block(TiedNet())
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "param_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "names": sorted(name for name, _ in model.named_parameters()),
        "shapes": {name: list(p.shape) for name, p in model.named_parameters()},
    }


def _shard(model: nn.Module, scenario: str) -> nn.Module:
    if scenario.startswith("fsdp2"):
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh("cpu", (WORLD_SIZE,))
        if scenario == "fsdp2-checkpointed":  # fully_shard turns each CheckpointWrapper into FSDPCheckpointWrapper
            model.blocks = nn.ModuleList(checkpoint_wrapper(block) for block in model.blocks)  # type: ignore[union-attr]
        # gathered: kept unsharded after a forward, as reshard_after_forward=False does between forward and backward;
        # int: reshard_after_forward=1, a group of one rank, which torch takes as False; root: reshard_after_forward
        # not given, which keeps the root module's parameters only; unshard: gathered by hand, resharded after forwards
        keep = scenario in ("fsdp2-gathered", "fsdp2-gathered-bf16")
        reshard: bool | int | None = {"fsdp2-gathered-int": 1, "fsdp2-gathered-root": None}.get(scenario, not keep)
        # bf16: the gathered copies are in the policy's param_dtype, the sharded parameters stay float32
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if scenario.endswith("bf16") else None)
        for block in model.blocks:  # type: ignore[union-attr]
            fully_shard(block, mesh=mesh, reshard_after_forward=reshard, mp_policy=policy)
        fully_shard(model, mesh=mesh, reshard_after_forward=reshard, mp_policy=policy)
        if scenario == "fsdp2-gathered-unshard":
            model.unshard()  # type: ignore[operator]
        elif scenario.startswith("fsdp2-gathered"):
            model(torch.zeros(2, 3, dtype=torch.long))
        return model
    if scenario == "tp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

        mesh = init_device_mesh("cpu", (WORLD_SIZE,))
        for block in model.blocks:  # type: ignore[union-attr]
            parallelize_module(block, mesh, {"fc1": ColwiseParallel(), "fc2": RowwiseParallel()})
        return model
    from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    class ProjectFSDP(FullyShardedDataParallel):  # a project's own subclass, which is FSDP1 as much
        pass

    # forward: SHARD_GRAD_OP does not reshard after a forward, each unit keeps its gathered flat parameter
    forward = scenario.endswith("forward")
    wrapped = (ProjectFSDP if scenario == "fsdp1-subclass" else FullyShardedDataParallel)(
        model,
        device_id=torch.device("cpu"),
        use_orig_params=scenario.startswith("fsdp1-orig-params"),
        auto_wrap_policy=ModuleWrapPolicy({Block}),
        sharding_strategy=ShardingStrategy.SHARD_GRAD_OP if forward else ShardingStrategy.FULL_SHARD,
    )
    if forward:
        wrapped(torch.zeros(2, 3, dtype=torch.long))
    return wrapped


def _held_here(model: nn.Module, scenario: str) -> tuple[int, int]:
    """What this rank holds, from torch's own objects: (elements, storage bytes with padding)."""
    if scenario.startswith(
        "fsdp2-gathered"
    ):  # the registered parameters are the gathered copies: the shards are in the state
        from torch.distributed.fsdp import FSDPModule

        groups = [m._get_fsdp_state()._fsdp_param_group for m in model.modules() if isinstance(m, FSDPModule)]
        shards = [p.sharded_param.to_local() for group in groups if group is not None for p in group.fsdp_params]
        return sum(t.numel() for t in shards), sum(t.untyped_storage().nbytes() for t in shards)
    if scenario in ("fsdp2", "fsdp2-checkpointed", "tp"):
        from torch.distributed.tensor import DTensor

        unique = {id(p): p for p in model.parameters()}.values()
        locals_ = [p.to_local() if isinstance(p, DTensor) else p for p in unique]
        return sum(t.numel() for t in locals_), sum(t.untyped_storage().nbytes() for t in locals_)
    from torch.distributed.fsdp import FullyShardedDataParallel

    flats = [
        module._handle.flat_param
        for module in FullyShardedDataParallel.fsdp_modules(model)
        if module._handle is not None
    ]
    if scenario.endswith(("summoned", "forward")):  # the flat parameters are gathered: the shards are kept beside
        shards = [flat._local_shard for flat in flats]
        in_shard = sum(info.numel_in_shard or 0 for flat in flats for info in flat._shard_param_infos)
        return in_shard, sum(shard.untyped_storage().nbytes() for shard in shards)
    storage = sum(flat.untyped_storage().nbytes() for flat in flats)
    if scenario in ("fsdp1", "fsdp1-subclass"):
        elements = sum(flat.numel() - flat._shard_numel_padded for flat in flats)
    else:  # use_orig_params: the registered parameters are this rank's views
        elements = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return elements, storage


def _gathered_here(model: nn.Module, scenario: str) -> int:
    """The bytes of the gathered copies this rank holds beside its shards, from torch's own objects."""
    if scenario.startswith("fsdp2-gathered"):  # the gathered copies are registered as plain tensors, not DTensors
        from torch.distributed.tensor import DTensor

        # views of the all-gather's outputs, each storage once, its padding included
        storages = [p.untyped_storage() for p in model.parameters() if not isinstance(p, DTensor)]
        return sum({storage.data_ptr(): storage.nbytes() for storage in storages}.values())
    if scenario.endswith("summoned"):
        from torch.distributed.fsdp import FullyShardedDataParallel

        modules = FullyShardedDataParallel.fsdp_modules(model)
        return sum(m._handle.flat_param.untyped_storage().nbytes() for m in modules if m._handle is not None)
    if scenario.endswith("forward"):  # the flat parameters' data is the shard again, the gathered ones stay allocated
        return fsdp1_gathered_bytes(use_orig_params=scenario.startswith("fsdp1-orig-params"))
    return 0


def fsdp1_gathered_bytes(use_orig_params: bool) -> int:
    """The bytes FSDP1 keeps gathered after a forward that does not reshard, worked out from the unsharded model: one
    flat parameter per unit (each Block, and the root with the rest; a tied parameter flattened once), its
    parameters' numels laid end to end (with use_orig_params each one starting at a 16-byte aligned element), the
    whole padded up to a multiple of the world size so that it chunks evenly, in the parameters' dtype (a
    mixed-precision policy would gather in its param_dtype, and align to that dtype's size; these scenarios set
    none)."""
    model = frozen_first_block(TiedNet())
    in_blocks = {id(p) for p in model.blocks.parameters()}
    units = [list(block.parameters()) for block in model.blocks]
    units.append([p for p in {id(p): p for p in model.parameters()}.values() if id(p) not in in_blocks])
    total_bytes = 0
    for params in units:
        size = params[0].element_size()
        align = 16 // size if use_orig_params else 1
        numel = 0
        for param in params:
            numel = math.ceil(numel / align) * align + param.numel()
        total_bytes += math.ceil(numel / WORLD_SIZE) * WORLD_SIZE * size
    return total_bytes


def _state(model: nn.Module, scenario: str) -> contextlib.AbstractContextManager[Any]:
    """The state the model is inspected in: inside summon_full_params for the summoned scenarios."""
    if not scenario.endswith("summoned"):
        return contextlib.nullcontext()
    from torch.distributed.fsdp import FullyShardedDataParallel

    return FullyShardedDataParallel.summon_full_params(model)


def _worker(rank: int, rendezvous: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD_SIZE)
    results: dict[str, Any] = {}
    try:
        for scenario in SCENARIOS:
            torch.manual_seed(0)
            try:
                model = _shard(frozen_first_block(TiedNet()), scenario)
            except (RuntimeError, ValueError, AssertionError) as error:
                results[scenario] = {"refused": f"{type(error).__name__}: {error}"}
                continue
            with _state(model, scenario):
                before = {name: (type(p).__name__, tuple(p.shape)) for name, p in model.named_parameters()}
                report = paramscope.inspect(model, all_ranks=True)
                after = {name: (type(p).__name__, tuple(p.shape)) for name, p in model.named_parameters()}
                held = _held_here(model, scenario)
                gathered = _gathered_here(model, scenario)
                plan = paramscope.memory(model, train=True, precision="fp32", optimizer="sgd", gpus=WORLD_SIZE, zero=3)
            results[scenario] = {
                "report": report.to_dict(),
                "held": list(held),
                "planned_weights": plan.memory.item("weights").per_device_bytes,  # type: ignore[union-attr]
                "unchanged": before == after,
                "gathered": gathered,
                "text": str(report),
            }
            dist.barrier()
        results["dtensor-buffer"] = _dtensor_buffer()
        results["uneven"] = _uneven_plans()
        results["no-shard"] = _no_shard()
        results["gathered-padded"] = _gathered_padded()
        results["planned-against-held"] = _planned_against_held()
        results["pipeline-stage"] = _pipeline_stage()
    finally:
        Path(out).write_text(json.dumps(results))
        dist.destroy_process_group()


def _dtensor_buffer() -> dict[str, Any]:
    """A buffer sharded as a DTensor (a tensor-parallel model's rotary table): inspect's notes, and the bytes this
    rank holds of it, from torch."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    model = nn.Linear(4, 4)
    table = distribute_tensor(torch.randn(64, 8), init_device_mesh("cpu", (WORLD_SIZE,)), [Shard(0)])
    model.register_buffer("table", table)
    local = table.to_local()
    report = paramscope.inspect(model)
    return {"notes": list(report.notes), "buffer_bytes": report.totals.buffer_bytes,
            "held": local.numel() * local.element_size()}  # fmt: skip


def test_a_sharded_dtensor_buffer_is_counted_whole_and_noted(ranks: list[dict[str, Any]]) -> None:
    # from review: counted at its global size with no word of the share this rank holds
    for rank in range(WORLD_SIZE):
        found = _result(ranks, "dtensor-buffer", rank)
        assert found["buffer_bytes"] == 64 * 8 * 4
        assert found["held"] == 64 * 8 * 4 // WORLD_SIZE
        assert found["notes"] == [
            f"table is a buffer sharded as a DTensor (Shard(0)): counted at its global size, 2.00 KiB; this rank "
            f"holds {found['held'] / 1024:.2f} KiB of it"
        ]


UNEVEN = ("fsdp2", "fsdp1-orig-params", "dtensor", "zero3")


def _uneven_plans() -> dict[str, Any]:
    """Models whose sizes do not divide by the world size, sharded four ways: the bytes this rank's parameter storages
    hold (from torch), and the weights ZeRO 3 plans for them over the same ranks, in fp32 and bf16-mixed."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FullyShardedDataParallel, fully_shard
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    found = {}
    for scheme in UNEVEN:
        torch.manual_seed(0)
        model: nn.Module = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 1))
        if scheme == "fsdp2":  # rows of 5 and 1 on two ranks: each shard padded to 3 rows and 1 row
            fully_shard(model, mesh=init_device_mesh("cpu", (WORLD_SIZE,)))
            storages = [p.to_local().untyped_storage() for p in model.parameters()]
        elif scheme == "fsdp1-orig-params":  # each original aligned in the flat parameter, then the shard padded
            model = FullyShardedDataParallel(model, device_id=torch.device("cpu"), use_orig_params=True)
            storages = [model._handle.flat_param.untyped_storage()]
        elif scheme == "dtensor":  # one weight split by rows, the other parameters replicated
            mesh = init_device_mesh("cpu", (WORLD_SIZE,))
            for name, param in list(model.named_parameters()):
                placement = Shard(0) if name == "0.weight" else Replicate()
                model.get_submodule(name.rpartition(".")[0]).register_parameter(
                    name.rpartition(".")[2], nn.Parameter(distribute_tensor(param.detach(), mesh, [placement]))
                )
            storages = [p.to_local().untyped_storage() for p in model.parameters()]
        else:
            partitions = zero3_partitioned(model, dist.get_rank(), WORLD_SIZE)
            storages = [partition.untyped_storage() for partition in partitions.values()]
        planned = {}
        for precision in ("fp32", "bf16-mixed"):
            plan = paramscope.memory(model, train=True, precision=precision, optimizer="sgd", gpus=WORLD_SIZE, zero=3)
            planned[precision] = plan.memory.item("weights").per_device_bytes  # type: ignore[union-attr]
        found[scheme] = {"held": sum(storage.nbytes() for storage in storages), "planned": planned}
        if scheme == "fsdp2":
            found[scheme]["step"] = _fsdp2_step(model)
    return found


def _fsdp2_step(model: nn.Module) -> dict[str, list[int]]:
    """The bytes this rank's gradients and AdamW states take after a real step of ``model`` (sharded by FSDP2), each
    storage once, beside those the plan gives them on this rank."""
    plan = paramscope.memory(model, train=True, precision="fp32", optimizer="adamw", gpus=WORLD_SIZE, zero=3)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 3)).sum().backward()
    optimizer.step()

    def local(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to_local() if hasattr(tensor, "to_local") else tensor

    grads = {local(p.grad).untyped_storage().data_ptr(): local(p.grad).untyped_storage().nbytes()
             for p in model.parameters() if p.grad is not None}  # fmt: skip
    states = {local(t).untyped_storage().data_ptr(): local(t).untyped_storage().nbytes()
              for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor)}  # fmt: skip
    memory = plan.memory
    assert memory is not None
    return {
        "gradients": [sum(grads.values()), memory.item("gradients").per_device_bytes],
        "states": [sum(states.values()), memory.item("optimizer states (adamw)").per_device_bytes],
    }


def _gathered_padded() -> dict[str, Any]:
    """FSDP2 kept gathered after a forward, its parameters' rows not divisible by the world size: the bytes of the
    gathered copies' storages (the all-gather pads each parameter to whole shards), each once, and inspect's notes."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model = nn.Sequential(nn.Embedding(11, 6), nn.Linear(6, 7), nn.Linear(7, 3))
    fully_shard(model, mesh=init_device_mesh("cpu", (WORLD_SIZE,)), reshard_after_forward=False)
    model(torch.zeros(2, 3, dtype=torch.long))
    copies = [p._unsharded_param for p in model._get_fsdp_state()._fsdp_param_group.fsdp_params]
    storages = {copy.untyped_storage().data_ptr(): copy.untyped_storage().nbytes() for copy in copies}
    return {
        "held": sum(storages.values()),
        "unpadded": sum(copy.numel() * copy.element_size() for copy in copies),
        "notes": list(paramscope.inspect(model).notes),
    }


def _planned_against_held() -> dict[str, Any]:
    """Plans of models sharded otherwise than evenly and alike: a DTensor split unevenly without padding (Shard(1) of
    odd widths), the bytes this rank's storages hold and the weights and gradients planned; FSDP2 with a frozen layer
    in fp32 (frozen values priced as trainable ones); a tensor-parallel model planned with tp=2, and its notes."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    mesh = init_device_mesh("cpu", (WORLD_SIZE,))
    found: dict[str, Any] = {}
    uneven = nn.Sequential(nn.Linear(7, 5), nn.Linear(5, 3))
    for name, param in list(uneven.named_parameters()):
        placement = Shard(1) if name.endswith("weight") else Replicate()
        uneven.get_submodule(name.rpartition(".")[0]).register_parameter(
            name.rpartition(".")[2], nn.Parameter(distribute_tensor(param.detach(), mesh, [placement]))
        )
    plan = paramscope.memory(uneven, train=True, precision="fp32", optimizer="sgd", gpus=WORLD_SIZE, zero=3).memory
    assert plan is not None
    found["uneven"] = {
        "held": sum(p.to_local().untyped_storage().nbytes() for p in uneven.parameters()),
        "weights": plan.item("weights").per_device_bytes,
        "gradients": plan.item("gradients").per_device_bytes,
        "notes": list(plan.notes),
    }
    frozen = nn.Sequential(nn.Linear(8, 7), nn.Linear(7, 5), nn.Linear(5, 3))
    frozen[0].requires_grad_(False)
    fully_shard(frozen, mesh=mesh)
    plan = paramscope.memory(frozen, train=True, precision="fp32", optimizer="sgd", gpus=WORLD_SIZE, zero=3).memory
    assert plan is not None
    found["frozen"] = {
        "held": sum(p.to_local().untyped_storage().nbytes() for p in frozen.parameters()),
        "weights": plan.item("weights").per_device_bytes,
    }
    parallel = nn.Sequential(nn.Embedding(100, 8), nn.Linear(8, 16), nn.Linear(16, 8))
    parallelize_module(parallel, mesh, {"1": ColwiseParallel(), "2": RowwiseParallel()})
    plan = paramscope.memory(parallel, train=True, precision="fp32", optimizer="sgd", tp=WORLD_SIZE).memory
    assert plan is not None
    found["tp"] = {
        "local": paramscope.inspect(parallel).totals.local_param_bytes,
        "weights": plan.item("weights").per_device_bytes,
        "notes": list(plan.notes),
    }
    return found


def _pipeline_stage() -> str:
    """The table of ``inspect(all_ranks=True)`` of a pipeline stage: each rank a model of its own, held whole (20
    parameters on rank 0, 112 on rank 1)."""
    rank = dist.get_rank()
    stage = nn.Sequential(nn.Linear(4, 4)) if rank == 0 else nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8))
    return str(paramscope.inspect(stage, all_ranks=True))


def _no_shard() -> dict[str, Any]:
    """FSDP1 with ShardingStrategy.NO_SHARD: every rank keeps the whole flat parameter, as DDP does."""
    from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy

    model = FullyShardedDataParallel(nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 1)), device_id=torch.device("cpu"),
                                     sharding_strategy=ShardingStrategy.NO_SHARD)  # fmt: skip
    report = paramscope.inspect(model)
    plan = paramscope.memory(model, train=True, precision="fp32", optimizer="sgd", gpus=WORLD_SIZE, zero=3)
    return {
        "placements": sorted({record.sharding.placements for record in report.tensors}),  # type: ignore[union-attr]
        "local": [report.totals.local_params, report.totals.local_param_bytes],
        "held": [model._handle.flat_param.numel(), model._handle.flat_param.untyped_storage().nbytes()],
        "planned": plan.memory.item("weights").per_device_bytes,  # type: ignore[union-attr]
    }


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("distributed")
    outputs = [str(directory / f"rank{rank}.json") for rank in range(WORLD_SIZE)]
    context = mp.start_processes(
        _spawned, args=(str(directory / "rendezvous"), outputs), nprocs=WORLD_SIZE, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + TIME_LIMIT_S
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the gloo world did not finish within {TIME_LIMIT_S} s")
    return [json.loads(Path(path).read_text()) for path in outputs]


def _spawned(rank: int, rendezvous: str, outputs: list[str]) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _worker(rank, rendezvous, outputs[rank])


def _result(ranks: list[dict[str, Any]], scenario: str, rank: int) -> dict[str, Any]:
    result = ranks[rank][scenario]
    if "refused" in result:
        pytest.skip(f"torch refused {scenario} on CPU: {result['refused']}")
    return result  # type: ignore[no-any-return]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_global_counts_equal_the_unsharded_model(ranks: list[dict[str, Any]], scenario: str) -> None:
    truth = unsharded_truth()
    for rank in range(WORLD_SIZE):
        report = _result(ranks, scenario, rank)["report"]
        assert report["totals"]["params"] == truth["params"]
        assert report["totals"]["trainable"] == truth["trainable"] < truth["params"]
        assert report["totals"]["param_bytes"] == truth["param_bytes"]
        names = sorted(record["name"] for record in report["tensors"] if record["kind"] == "parameter")
        assert names == truth["names"]  # no _fsdp_wrapped_module. prefixes, the tied head once
        assert {r["name"]: r["shape"] for r in report["tensors"]} == truth["shapes"]
        assert report["modules"][0]["type"] == "TiedNet"
        assert report["source"]["target"] == f"{TiedNet.__module__}.TiedNet"  # not fully_shard's FSDPTiedNet
        block = (8 * 16 + 16) + (16 * 8 + 8) + 2 * 8  # fc1, fc2, norm
        assert [node["params"] for node in report["modules"] if node["depth"] == 1] == [10 * 8, 3 * block, 0]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_both_ranks_agree_on_the_global_figures(ranks: list[dict[str, Any]], scenario: str) -> None:
    first, second = (_result(ranks, scenario, rank)["report"] for rank in range(WORLD_SIZE))
    for key in ("totals", "modules", "by_dtype"):
        if key == "totals":
            strip = ("local_params", "local_param_bytes")
            assert {k: v for k, v in first[key].items() if k not in strip} == {
                k: v for k, v in second[key].items() if k not in strip
            }
        else:
            assert first[key] == second[key]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_local_share_is_what_the_rank_holds(ranks: list[dict[str, Any]], scenario: str) -> None:
    shares = []
    for rank in range(WORLD_SIZE):
        result = _result(ranks, scenario, rank)
        elements, storage = result["held"]
        totals = result["report"]["totals"]
        assert (totals["local_params"], totals["local_param_bytes"]) == (elements, storage)
        shares.append({"rank": rank, "params": elements, "param_bytes": storage,
                       "model_params": unsharded_truth()["params"]})  # fmt: skip
    for rank in range(WORLD_SIZE):
        assert _result(ranks, scenario, rank)["report"]["ranks"] == shares  # all_ranks: every rank sees all


@pytest.mark.parametrize("scenario", FULLY_SHARDED)
def test_the_memory_plan_of_full_sharding_is_what_each_rank_holds(ranks: list[dict[str, Any]], scenario: str) -> None:
    # Every dimension here divides by two, so no rank holds padding and ZeRO-3's Ψ/N is exact.
    for rank in range(WORLD_SIZE):
        result = _result(ranks, scenario, rank)
        assert result["planned_weights"] == result["held"][1]


def test_fsdp1_no_shard_is_whole_on_every_rank(ranks: list[dict[str, Any]]) -> None:
    unsharded = sum(p.numel() for p in nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 1)).parameters())
    for rank in range(WORLD_SIZE):
        found = ranks[rank]["no-shard"]
        assert found["placements"] == [["FSDP1 flat parameter, not sharded (NO_SHARD)"]]
        assert found["local"] == found["held"] == [unsharded, unsharded * 4]
        # the plan's ZeRO 3 over two ranks is not the model's sharding: ZeRO's Ψ/N, not what the rank holds now
        assert found["planned"] == unsharded * 4 // WORLD_SIZE


@pytest.mark.parametrize("scheme", UNEVEN)
def test_the_memory_plan_of_uneven_sharding_is_what_each_rank_holds(ranks: list[dict[str, Any]], scheme: str) -> None:
    for rank in range(WORLD_SIZE):
        found = ranks[rank]["uneven"][scheme]
        float32_values = found["held"] // 4  # every parameter here is float32
        unsharded = sum(p.numel() for p in nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 1)).parameters())
        assert found["held"] > unsharded * 4 / WORLD_SIZE  # padded or replicated: more than Ψ/N
        assert found["planned"] == {"fp32": found["held"], "bf16-mixed": float32_values * 2}
        if scheme == "fsdp2":  # from review: the gradients and states were Ψ/N, the shards torch makes are padded
            gradients, states = found["step"]["gradients"], found["step"]["states"]
            assert gradients[0] == gradients[1]
            # the states are made like the shards' values, of which the last rank's hold fewer (no rows of 1 × 5):
            # the plan is of the rank holding most
            assert states[0] == states[1] if rank == 0 else states[0] < states[1]


def test_a_dtensor_split_unevenly_is_planned_as_the_rank_holding_most(ranks: list[dict[str, Any]]) -> None:
    # from review: each rank planned its own share (rank 0 148 B, rank 1 116 B), so one job's ranks disagreed on
    # whether it fits. Shard(1) of widths 7 and 5 over two ranks: torch's chunks of 4 and 3, 3 and 2 columns.
    found = [ranks[rank]["planned-against-held"]["uneven"] for rank in range(WORLD_SIZE)]
    most = max(rank["held"] for rank in found)
    assert found[0]["held"] == most > found[1]["held"]
    for rank in found:
        assert rank["weights"] == rank["gradients"] == most
    note = [note for note in found[1]["notes"] if note.startswith("the model's DTensors are split unevenly")]
    assert note == [
        f"the model's DTensors are split unevenly, without padding: this rank holds {found[1]['held'] // 4} parameter "
        f"values, the rank holding most {most // 4} (torch's chunks: the first ranks), whose share the plan is of"
    ]
    assert not [note for note in found[0]["notes"] if note.startswith("the model's DTensors are split unevenly")]


def test_frozen_parameters_priced_as_trainable_ones_keep_the_rank_s_exact_share(ranks: list[dict[str, Any]]) -> None:
    # from review: one frozen layer made the plan Ψ/N (242 B) where the rank holds 288 B, in fp32, which prices frozen
    # and trainable values alike
    for rank in range(WORLD_SIZE):
        found = ranks[rank]["planned-against-held"]["frozen"]
        assert found["weights"] == found["held"]


def test_a_plan_of_another_split_than_the_model_s_says_what_the_rank_holds(ranks: list[dict[str, Any]]) -> None:
    # from review: a tensor-parallel plan 40 % below what each rank holds (the embedding not parallelised), said to be
    # "slightly low"
    for rank in range(WORLD_SIZE):
        found = ranks[rank]["planned-against-held"]["tp"]
        assert found["weights"] < found["local"]
        local, planned = (format_bytes(found[key]) for key in ("local", "weights"))
        assert (
            f"this rank holds {local} of parameter storages as the model is sharded now; the plan's weights, "
            f"{planned} a device, are of the split it plans (--gpus, --zero, --tp), not of that sharding"
        ) in found["notes"]


def test_fsdp2_shards_every_parameter_on_dim_0(ranks: list[dict[str, Any]]) -> None:
    report = _result(ranks, "fsdp2", 0)["report"]
    for record in report["tensors"]:
        sharding = record["sharding"]
        assert (sharding["scheme"], sharding["mesh"], sharding["placements"]) == ("dtensor", [2], ["Shard(0)"])
        assert sharding["local_shape"][0] == math.ceil(record["shape"][0] / 2)
    assert sum(r["sharding"]["local_numel"] for r in report["tensors"]) == report["totals"]["params"] // 2


def test_fsdp2_keeps_the_tie(ranks: list[dict[str, Any]]) -> None:
    report = _result(ranks, "fsdp2", 1)["report"]
    embedding = next(r for r in report["tensors"] if r["name"] == "emb.weight")
    assert embedding["aliases"] == ["head.weight"]
    assert "head.weight is the same tensor as emb.weight (tied): counted once, under emb.weight" in report["notes"]


def test_tensor_parallel_placements(ranks: list[dict[str, Any]]) -> None:
    records = {r["name"]: r for r in _result(ranks, "tp", 0)["report"]["tensors"]}
    assert records["blocks.0.fc1.weight"]["sharding"]["placements"] == ["Shard(0)"]
    assert records["blocks.0.fc2.weight"]["sharding"]["placements"] == ["Shard(1)"]
    assert records["blocks.0.fc2.bias"]["sharding"]["placements"] == ["Replicate()"]
    assert records["blocks.0.fc2.weight"]["sharding"]["local_shape"] == [8, 8]
    assert records["emb.weight"]["sharding"] is None  # not parallelised: held whole on every rank


@pytest.mark.parametrize("scenario", ["fsdp1", "fsdp1-orig-params", "fsdp1-subclass"])
def test_fsdp1_is_unwrapped_and_flat_shards_are_attributed(ranks: list[dict[str, Any]], scenario: str) -> None:
    report = _result(ranks, scenario, 0)["report"]
    assert (
        "unwrapped FSDP1's FullyShardedDataParallel: names are shown without its '_fsdp_wrapped_module.' prefix"
        in report["notes"]
    )
    for record in report["tensors"]:
        sharding = record["sharding"]
        assert (sharding["scheme"], sharding["mesh"], sharding["placements"]) == ("fsdp1", [2], ["FSDP1 flat shard"])
    local = [r["sharding"]["local_numel"] for r in report["tensors"]]
    other = [r["sharding"]["local_numel"] for r in _result(ranks, scenario, 1)["report"]["tensors"]]
    assert [a + b for a, b in zip(local, other, strict=True)] == [r["numel"] for r in report["tensors"]]


def test_fsdp2_gathered_parameters_are_counted_as_their_shards(ranks: list[dict[str, Any]]) -> None:
    report = _result(ranks, "fsdp2-gathered", 0)["report"]
    assert all(record["sharding"]["placements"] == ["Shard(0)"] for record in report["tensors"])
    gathered = sum(record["bytes"] for record in report["tensors"])  # every parameter is gathered here
    assert (
        "FSDP2 parameters of (model), blocks.0, blocks.1, blocks.2 are gathered now (after a forward with "
        "reshard_after_forward=False, or 1; or inside unshard()): this rank's share is of their shards; it also holds "
        "the "
        f"gathered copies, {gathered:,} B, until they are resharded"
    ) in report["notes"]


def test_fsdp2_gathered_in_a_lower_precision_counts_the_parameters_in_theirs(ranks: list[dict[str, Any]]) -> None:
    # MixedPrecisionPolicy(param_dtype=bfloat16): the gathered copies are bf16, the parameters (the shards) float32
    result = _result(ranks, "fsdp2-gathered-bf16", 0)
    report = result["report"]
    assert {record["dtype"] for record in report["tensors"]} == {"float32"}
    assert report["by_dtype"] == {
        "float32": {"params": unsharded_truth()["params"], "bytes": unsharded_truth()["param_bytes"]}
    }
    assert result["gathered"] == unsharded_truth()["params"] * 2
    assert (
        "FSDP2 parameters of (model), blocks.0, blocks.1, blocks.2 are gathered now (after a forward with "
        "reshard_after_forward=False, or 1; or inside unshard()): this rank's share is of their shards; it also holds "
        "the "
        f"gathered copies, {result['gathered']:,} B, until they are resharded"
    ) in report["notes"]


def test_fsdp2_gathered_copies_count_the_all_gathers_padding(ranks: list[dict[str, Any]]) -> None:
    # from review: the note gave the copies' elements' bytes, 556 B where the padded storages hold 640 B
    for rank in range(WORLD_SIZE):
        found = ranks[rank]["gathered-padded"]
        assert found["held"] > found["unpadded"]
        gathered = [note for note in found["notes"] if note.startswith("FSDP2 parameters")]
        assert gathered == [
            "FSDP2 parameters of (model) are gathered now (after a forward with reshard_after_forward=False, or 1; or "
            f"inside unshard()): this rank's share is of their shards; it also holds the gathered copies, "
            f"{found['held']:,} B, until they are resharded"
        ]


@pytest.mark.parametrize(
    ("scenario", "paths", "cause"),
    [
        # reshard_after_forward=1: torch takes a group of one rank as False, and keeps every module gathered
        ("fsdp2-gathered-int", "(model), blocks.0, blocks.1, blocks.2",
         "after a forward with reshard_after_forward=False, or 1; or inside unshard()"),
        # reshard_after_forward not given: the blocks reshard after their forward, the root module does not
        ("fsdp2-gathered-root", "(model)",
         "after a forward of the root module, which keeps them when reshard_after_forward is not given; or inside "
         "unshard()"),
        # reshard_after_forward=True, then unshard() on the root module: nothing a forward left behind
        ("fsdp2-gathered-unshard", "(model)", "inside unshard(), or within a forward or backward"),
    ],
)  # fmt: skip
def test_fsdp2_gathered_notes_say_why(ranks: list[dict[str, Any]], scenario: str, paths: str, cause: str) -> None:
    for rank in range(WORLD_SIZE):
        result = _result(ranks, scenario, rank)
        gathered = [note for note in result["report"]["notes"] if note.startswith("FSDP2 parameters")]
        assert gathered == [
            f"FSDP2 parameters of {paths} are gathered now ({cause}): this rank's share is of their shards; it also "
            f"holds the gathered copies, {result['gathered']:,} B, until they are resharded"
        ]
        # the root module holds the embedding (tied to the head): 10 × 8 float32, gathered whole on each rank
        assert result["gathered"] == (unsharded_truth()["param_bytes"] if paths != "(model)" else 10 * 8 * 4)


@pytest.mark.parametrize("scenario", ["fsdp1-summoned", "fsdp1-orig-params-summoned"])
def test_fsdp1_inside_summon_full_params_is_counted_as_its_shards(ranks: list[dict[str, Any]], scenario: str) -> None:
    for rank in range(WORLD_SIZE):
        result = _result(ranks, scenario, rank)
        report = result["report"]
        assert all(record["sharding"]["scheme"] == "fsdp1" for record in report["tensors"])
        assert (
            "FSDP1 flat parameters of (model), blocks.0, blocks.1, blocks.2 are gathered now (inside "
            "summon_full_params, or after a forward that does not reshard): this rank's share is of their shards; it "
            f"also holds the gathered copies, {result['gathered']:,} B, until they are resharded"
        ) in report["notes"]


@pytest.mark.parametrize("scenario", ["fsdp1-forward", "fsdp1-orig-params-forward"])
def test_fsdp1_after_a_forward_that_does_not_reshard_notes_the_gathered_copies(
    ranks: list[dict[str, Any]], scenario: str
) -> None:
    for rank in range(WORLD_SIZE):
        result = _result(ranks, scenario, rank)
        # every unit's whole flat parameter, beside its shard: 3 blocks of 296 floats and the root's embedding of 80
        assert result["gathered"] == (3 * 296 + 80) * 4 >= 2 * result["held"][1]
        assert (
            "FSDP1 flat parameters of (model), blocks.0, blocks.1, blocks.2 are gathered now (inside "
            "summon_full_params, or after a forward that does not reshard): this rank's share is of their shards; it "
            f"also holds the gathered copies, {result['gathered']:,} B, until they are resharded"
        ) in result["report"]["notes"]


def test_checkpoint_wrappers_under_fsdp2_are_unwrapped(ranks: list[dict[str, Any]]) -> None:
    report = _result(ranks, "fsdp2-checkpointed", 0)["report"]
    assert (
        "unwrapped CheckpointWrapper: names are shown without its '_checkpoint_wrapped_module.' prefix"
        in report["notes"]
    )
    assert [node["type"] for node in report["modules"] if node["path"].startswith("blocks.")] == [
        "Block", "Linear", "Linear", "LayerNorm"
    ] * 3  # fmt: skip


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_model_is_not_changed(ranks: list[dict[str, Any]], scenario: str) -> None:
    assert all(_result(ranks, scenario, rank)["unchanged"] for rank in range(WORLD_SIZE))


def test_the_table_shows_this_rank_and_every_rank(ranks: list[dict[str, Any]]) -> None:
    text = _result(ranks, "tp", 0)["text"]
    assert "On this rank" in text
    assert "Parameters held per rank" in text
    # DTensors have no flat shards: their padding is their shards' (from review)
    assert "B, shards' padding included" in text
    assert "B, flat shards' padding included" in _result(ranks, "fsdp1", 0)["text"]


def test_each_rank_s_share_is_of_its_own_model(ranks: list[dict[str, Any]]) -> None:
    # from review: rank 1's share was of rank 0's model, 560 %, for pipeline stages of 20 and 112 parameters
    for rank in range(WORLD_SIZE):
        rows = ranks[rank]["pipeline-stage"].split("Parameters held per rank")[1].splitlines()
        shares = [row.split()[-2:] for row in rows if row.strip()[:1].isdigit()]
        assert shares == [["100.0", "%"], ["100.0", "%"]]


# ---------------------------------------------------------------------------------------------------------------------
# DeepSpeed ZeRO-3 style parameters, made by hand as DeepSpeed makes them (no deepspeed needed)


def zero3_partitioned(model: nn.Module, rank: int, world: int) -> dict[str, torch.Tensor]:
    """Partition every parameter as ZeRO-3 does: the parameter emptied, ``ds_shape``/``ds_numel`` global, and
    ``ds_tensor`` this rank's padded slice with its real element count in ``ds_numel``."""
    partitions = {}
    for name, param in model.named_parameters():
        numel = param.numel()
        size = math.ceil(numel / world)
        real = max(0, min(size, numel - rank * size))
        partition = torch.zeros(size, dtype=param.dtype)
        partition.ds_numel = real  # type: ignore[attr-defined]
        param.ds_shape = param.shape  # type: ignore[attr-defined]
        param.ds_numel = numel  # type: ignore[attr-defined]
        param.ds_tensor = partition  # type: ignore[attr-defined]
        param.data = torch.empty(0, dtype=param.dtype)
        partitions[name] = partition
    return partitions


@pytest.mark.parametrize("rank", [0, 1])
def test_zero3_parameters_count_globally(rank: int) -> None:
    truth = unsharded_truth()
    model = TiedNet()
    partitions = zero3_partitioned(model, rank, WORLD_SIZE)
    assert sum(p.numel() for p in model.parameters()) == 0  # what naive counting reports
    report = paramscope.inspect(model)
    assert report.totals.params == truth["params"]
    assert report.totals.param_bytes == truth["param_bytes"]
    assert {r.name: list(r.shape or ()) for r in report.tensors} == truth["shapes"]
    assert report.totals.local_params == sum(int(p.ds_numel) for p in partitions.values())  # type: ignore[attr-defined]
    assert report.totals.local_param_bytes == sum(p.untyped_storage().nbytes() for p in partitions.values())
    sharding = report.tensor("blocks.0.fc1.weight").sharding
    assert sharding is not None
    assert (sharding.scheme, sharding.mesh, sharding.placements) == ("zero3", None, ("ZeRO-3 partition",))
    assert sharding.local_numel == partitions["blocks.0.fc1.weight"].ds_numel  # type: ignore[attr-defined]


def test_zero3_partitions_in_one_flat_buffer_are_held_once() -> None:
    """DeepSpeed's ZeRO-3 optimizer moves the partitions of the parameters it trains into one flat buffer per sub
    group (``_move_to_flat_buffer``: each ``ds_tensor`` becomes a view of it): the rank holds that buffer once."""
    model = TiedNet()
    partitions = zero3_partitioned(model, 1, WORLD_SIZE)
    flat = torch.zeros(sum(partition.numel() for partition in partitions.values()))
    start = 0
    for partition in partitions.values():
        partition.data = flat.narrow(0, start, partition.numel()).data
        start += partition.numel()
    report = paramscope.inspect(model)
    assert report.totals.local_param_bytes == flat.untyped_storage().nbytes() == flat.numel() * 4
    assert report.totals.local_params == sum(int(p.ds_numel) for p in partitions.values())  # type: ignore[attr-defined]


def test_a_zero3_parameter_gathered_counts_as_its_partition() -> None:
    """Inside DeepSpeed's GatheredParameters (or a forward), a parameter's data is the whole tensor while its
    partition stays in ds_tensor: the rank's share is still the partition."""
    model = TiedNet()
    partitions = zero3_partitioned(model, 0, WORLD_SIZE)
    sharded = paramscope.inspect(model)
    weight = model.blocks[0].fc1.weight
    weight.data = torch.zeros(weight.ds_shape)  # type: ignore[attr-defined]
    report = paramscope.inspect(model)
    assert report.totals == sharded.totals
    assert report.tensor("blocks.0.fc1.weight").sharding == sharded.tensor("blocks.0.fc1.weight").sharding
    assert report.tensor("blocks.0.fc1.weight").sharding.local_numel == partitions["blocks.0.fc1.weight"].ds_numel  # type: ignore[union-attr, attr-defined]
    assert (
        "ZeRO-3 parameters gathered now (blocks.0.fc1.weight): this rank's share is of their partitions; it also "
        "holds the gathered copies, 512 B, until they are released"
    ) in report.notes


def test_an_unsharded_model_has_no_local_share() -> None:
    report = paramscope.inspect(TiedNet())
    assert (report.totals.local_params, report.totals.local_param_bytes, report.ranks) == (None, None, None)
    assert all(record.sharding is None for record in report.tensors)


def test_all_ranks_needs_torch_distributed() -> None:
    if dist.is_initialized():
        pytest.skip("a process group is initialised in this process")
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.inspect(TiedNet(), all_ranks=True)
    assert str(caught.value) == (
        "all_ranks gathers each rank's share: initialise torch.distributed (init_process_group) and call inspect on "
        "every rank"
    )


def _failing_gather(monkeypatch: pytest.MonkeyPatch, message: str) -> None:
    """torch.distributed as a 2-rank world whose gather raises ``RuntimeError(message)`` on rank 0."""

    def all_gather_object(shares: list[Any], share: Any) -> None:
        raise RuntimeError(message)

    for name, value in [("is_available", lambda: True), ("is_initialized", lambda: True),
                        ("get_world_size", lambda group=None: 2), ("get_rank", lambda group=None: 0),
                        ("all_gather_object", all_gather_object)]:  # fmt: skip
        monkeypatch.setattr(dist, name, value)


def test_all_ranks_passes_on_a_failure_that_is_not_a_missing_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    """A collective can fail for reasons of its own (NCCL's CUDA errors): torch's error is raised as it is, not
    taken for a rank that did not call."""
    out_of_memory = "CUDA error: out of memory\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side assertions."
    _failing_gather(monkeypatch, out_of_memory)
    with pytest.raises(RuntimeError) as caught:
        paramscope.inspect(TiedNet(), all_ranks=True)
    assert type(caught.value) is RuntimeError
    assert str(caught.value) == out_of_memory


# What gloo raised on rank 0 in a 2-rank world where rank 1 called all_reduce instead: rank 1 timed out in its
# own collective and left.
_PEER_LEFT = (
    "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
    "[127.0.0.1]:12171. This is typically caused by a remote worker crashing. Check the logs of the remote worker "
    "before reporting an error. GLHF!"
)


def test_all_ranks_with_a_rank_in_another_collective_says_to_call_it_on_every_rank(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _failing_gather(monkeypatch, _PEER_LEFT)
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.inspect(TiedNet(), all_ranks=True)
    assert str(caught.value) == (
        "all_ranks is a collective, and it failed on rank 0 (a rank that does not call it leaves the others waiting "
        "until the process group's timeout): call inspect(model, all_ranks=True) on every rank. torch: " + _PEER_LEFT
    )


def _all_ranks_on_one_rank(rank: int, rendezvous: str, out: str) -> None:
    """Rank 0 asks for every rank's share; rank 1 never does (it waits past the process group's timeout)."""
    import datetime

    timeout = datetime.timedelta(seconds=3)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2, timeout=timeout)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model = fully_shard(nn.Linear(4, 4), mesh=init_device_mesh("cpu", (2,)))
    if rank == 0:
        try:
            paramscope.inspect(model, all_ranks=True)
            Path(out).write_text("returned")
        except paramscope.ParamscopeError as error:
            Path(out).write_text(f"{type(error).__name__}: {error}")
    else:
        time.sleep(6)
    os._exit(0)  # the process group is left mid-collective: no teardown


def test_all_ranks_called_on_one_rank_only_fails_clearly(tmp_path: Path) -> None:
    out = tmp_path / "rank0.txt"
    context = mp.start_processes(
        _all_ranks_on_one_rank, args=(str(tmp_path / "rendezvous"), str(out)), nprocs=2, join=False,
        start_method="spawn",
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("inspect(all_ranks=True) on one rank did not return within 60 s")
    message = out.read_text()
    assert message.startswith(
        "UsageError: all_ranks is a collective, and it failed on rank 0 (a rank that does not call it leaves the "
        "others waiting until the process group's timeout): call inspect(model, all_ranks=True) on every rank. "
        "torch: "
    ), message


def test_all_ranks_is_for_live_models() -> None:
    with pytest.raises(paramscope.UsageError) as caught:
        paramscope.inspect("paramscope.examples:gpt2", all_ranks=True)
    assert str(caught.value) == "all_ranks applies to a live model sharded across ranks, not to a target string"


# ---------------------------------------------------------------------------------------------------------------------
# FSDP1's flat parameter metadata, built by hand as FSDP1 builds it: the code path without a process group, for a
# torch that refuses FSDP1 on CPU


class ParamInfo(NamedTuple):  # torch.distributed.fsdp._flat_param.ParamInfo
    param_name: str
    module: nn.Module
    module_name: str


class ShardInfo(NamedTuple):  # torch.distributed.fsdp._flat_param._ShardParamInfo, the field read here
    numel_in_shard: int


class FullyShardedDataParallel(nn.Module):
    """Named as FSDP1's wrapper: holds the wrapped module and a handle to the flat parameter."""

    def __init__(self, module: nn.Module, flat: nn.Parameter) -> None:
        super().__init__()
        self._fsdp_wrapped_module = module
        self._handle = SimpleNamespace(flat_param=flat)


def hand_flattened(model: nn.Module, rank: int, world: int) -> tuple[FullyShardedDataParallel, int]:
    """``model`` wrapped as FSDP1 wraps it on ``rank`` of ``world``: the originals removed from their modules, one
    padded flat shard holding this rank's slice of them all. Returns the wrapper and the elements of this rank."""
    originals = [(name, module, param) for module in model.modules() for name, param in module._parameters.items()]
    total = sum(param.numel() for *_, param in originals)
    per_rank = math.ceil(total / world)
    begin, end = rank * per_rank, min(total, (rank + 1) * per_rank)
    flat = nn.Parameter(torch.zeros(per_rank))  # the last rank's shard is padded to the same size
    infos, in_shard, offset = [], [], 0
    for name, module, param in originals:
        infos.append(ParamInfo(name, module, ""))
        in_shard.append(ShardInfo(max(0, min(end, offset + param.numel()) - max(begin, offset))))
        offset += param.numel()
        del module._parameters[name]
    flat._is_flat_param = True  # type: ignore[attr-defined]
    flat._param_infos = infos  # type: ignore[attr-defined]
    flat._shapes = [param.shape for *_, param in originals]  # type: ignore[attr-defined]
    flat._shard_param_infos = in_shard  # type: ignore[attr-defined]
    flat._shared_param_infos = []  # type: ignore[attr-defined]
    return FullyShardedDataParallel(model, flat), end - begin


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_fsdp1_flat_parameter_metadata_built_by_hand(rank: int) -> None:
    model = Block()
    truth = {name: tuple(param.shape) for name, param in model.named_parameters()}
    wrapper, held = hand_flattened(model, rank, world=3)
    report = paramscope.inspect(wrapper)
    assert {record.name: record.shape for record in report.tensors} == truth
    assert report.totals.params == sum(math.prod(shape) for shape in truth.values())
    assert report.totals.local_params == held
    assert report.totals.local_param_bytes == wrapper._handle.flat_param.untyped_storage().nbytes()
    assert sum(record.sharding.local_numel for record in report.tensors) == held  # type: ignore[union-attr]


_DTENSOR_BUFFERS = """
import json, sys
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import distribute_module
import paramscope
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
model = distribute_module(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), init_device_mesh("cpu", (1,)))
totals = paramscope.inspect(model).totals
try:
    paramscope.summary(model, input_size=(2, 4))
    refused = ""
except paramscope.UsageError as error:
    refused = str(error)
print(json.dumps([totals.params, totals.buffers, totals.buffer_bytes, refused]))
dist.destroy_process_group()
"""


def test_dtensor_buffers_count_at_their_global_size(tmp_path: Path) -> None:
    """distribute_module makes every buffer a DTensor too (BatchNorm's statistics): they count as buffers do, and a
    forward through them is refused as a sharded model's."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _DTENSOR_BUFFERS, str(tmp_path / "rendezvous")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    params, buffers, buffer_bytes, refused = json.loads(done.stdout)
    truth = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    assert params == sum(p.numel() for p in truth.parameters())
    assert buffers == sum(b.numel() for b in truth.buffers())
    assert buffer_bytes == sum(b.numel() * b.element_size() for b in truth.buffers())
    assert refused.startswith("the model is sharded (FSDP, DTensor or ZeRO-3)")


class _Elsewhere(torch.Tensor):
    """A CPU tensor that says it is on another device: two devices' storages can start at the same address."""

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return torch.device("cuda", 0)


def test_fsdp1_gathered_copies_on_two_devices_at_one_address_are_both_held() -> None:
    from paramscope.sources._sharded import _gathered_bytes

    shard, full = torch.zeros(4), torch.zeros(16)  # 16 B of shard, a 64 B gathered copy
    elsewhere = full.as_subclass(_Elsewhere)  # another 64 B copy, on the other device at the same address
    assert elsewhere.untyped_storage().data_ptr() == full.untyped_storage().data_ptr()
    assert str(elsewhere.device) != str(full.device)
    flat = SimpleNamespace(data=shard, _full_param_padded=elsewhere, _full_prec_full_param_padded=full)
    assert _gathered_bytes(flat, shard) == 64 + 64
    # the same storage named twice on one device is held once, and the shard itself not at all
    assert (
        _gathered_bytes(SimpleNamespace(data=shard, _full_param_padded=full, _full_prec_full_param_padded=full), shard)
        == 64
    )
