"""Parameters sharded across ranks: their global size, and this rank's share, without gathering anything.

- DTensor (FSDP2's ``fully_shard``, tensor parallelism): ``.shape`` is global; the local shard is ``to_local()``.
- DeepSpeed ZeRO-3: the parameter itself is empty; ``ds_shape``/``ds_numel`` are global, ``ds_tensor`` the
  partition this rank holds.
- FSDP1: the original parameters are flattened into one ``FlatParameter`` per wrapped module; its metadata
  (``_param_infos``, ``_shapes``, ``_shared_param_infos``, ``_shard_param_infos``) records every original
  parameter's shape and owner module, and how much of it this rank holds. The parameters are shown as they were
  before wrapping, through stand-in meta tensors of their global shape.

Nothing here imports ``torch.distributed``: a sharded tensor can only exist once it has been imported.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._errors import UsageError, first_line
from .._report import RankShare, Sharding, Totals


def dtensor_class() -> type | None:
    """torch's DTensor class, when torch.distributed.tensor has been imported (else no DTensor can exist)."""
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None) if module is not None else None


def placement_text(placement: Any) -> str:
    # repr, not str: str is the short form (S(0), R). Shard(dim=0) is written Shard(0).
    return repr(placement).replace("dim=", "")


HeldStorage = tuple[Any, int]
"""A storage a rank holds: a key that tensors sharing it have in common (``None`` when it has no address: meta, or
no bytes), and its bytes."""


def held_storage(tensor: torch.Tensor) -> HeldStorage:
    """The storage ``tensor`` is a view of, as a rank holds it: several tensors can be views of one buffer (DeepSpeed
    ZeRO-3 moves the partitions of an optimizer's parameters into one flat buffer), held once."""
    storage = tensor.untyped_storage()
    address = storage.data_ptr()
    return ((str(tensor.device), address) if address else None), storage.nbytes()


def dtensor_sharding(tensor: Any) -> tuple[Sharding, HeldStorage]:
    """A DTensor's sharding, and its local storage (padding included)."""
    local = tensor.to_local()
    numel = local.numel()
    sharding = Sharding(
        "dtensor",
        tuple(tensor.device_mesh.shape),
        tuple(placement_text(p) for p in tensor.placements),
        tuple(local.shape),
        numel,
        numel * local.element_size(),
    )
    return sharding, held_storage(local)


def _world_size(group: Any = None) -> int | None:
    distributed = sys.modules.get("torch.distributed")
    if distributed is None or not distributed.is_available() or not distributed.is_initialized():
        return None
    return int(distributed.get_world_size(group))


def fsdp2_gathered(module: nn.Module) -> tuple[dict[int, Any], str]:
    """For an FSDP2 module whose parameters are gathered now, the registered tensors (by id) mapped to the sharded
    parameters they were gathered from, and why they are gathered, as torch's state records it; empty when the module
    holds its shards."""
    # FSDP2 keeps the sharded parameters only in its private state; a torch whose internals differ leaves the
    # gathered tensors counted as registered, whole on this rank.
    try:
        state = module._get_fsdp_state()  # type: ignore[operator]
        group = state._fsdp_param_group
        if group is None or group.is_sharded:
            return {}, ""
        gathered = {}
        for fsdp_param in group.fsdp_params:
            for name in ("_unsharded_param", "_sharded_post_forward_param"):
                held = getattr(fsdp_param, name, None)
                if held is not None:
                    gathered[id(held)] = fsdp_param.sharded_param
        post_forward = group.post_forward_mesh_info
        if group.is_sharded_post_forward:
            # reshard_after_forward=N: each parameter all-gathered, then resharded over groups of N ranks
            cause = (
                f"resharded after a forward to groups of {post_forward.shard_mesh_size} ranks "
                "(reshard_after_forward as an int)"
            )
        elif post_forward is not None:  # it reshards after a forward: gathered by hand, or within a forward
            cause = "inside unshard(), or within a forward or backward"
        elif state._auto_reshard_after_forward and state._is_root:
            # reshard_after_forward left unset: fully_shard keeps the root module's parameters after a forward
            cause = (
                "after a forward of the root module, which keeps them when reshard_after_forward is not given; or "
                "inside unshard()"
            )
        else:  # reshard_after_forward=False, or 1 (a group of one rank), which torch takes as False
            cause = "after a forward with reshard_after_forward=False, or 1; or inside unshard()"
        return gathered, cause
    except (AttributeError, RuntimeError):
        return {}, ""


def zero3_sharding(tensor: torch.Tensor) -> tuple[tuple[int, ...], int, Sharding, HeldStorage] | None:
    """For a DeepSpeed ZeRO-3 parameter: its global shape and numel, its sharding, and the storage of its partition
    (padding included); ``None`` for any other tensor."""
    attributes = tensor.__dict__
    if "ds_numel" not in attributes or "ds_shape" not in attributes:
        return None
    shape = tuple(int(dim) for dim in attributes["ds_shape"])
    numel = int(attributes["ds_numel"])
    partition = attributes.get("ds_tensor")
    if isinstance(partition, torch.Tensor):
        local_numel = int(getattr(partition, "ds_numel", partition.numel()))
        storage = held_storage(partition)
        local_shape: tuple[int, ...] | None = tuple(partition.shape)
    else:
        local_numel, storage, local_shape = 0, (None, 0), None
    world = _world_size(attributes.get("ds_process_group"))
    sharding = Sharding(
        "zero3",
        None if world is None else (world,),
        ("ZeRO-3 partition",),
        local_shape,
        local_numel,
        local_numel * tensor.element_size(),
    )
    return shape, numel, sharding, storage


@dataclass
class FlatParameters:
    """FSDP1's flat parameters, unflattened: what the walk shows instead of them."""

    on_module: dict[int, list[tuple[str, torch.Tensor]]] = field(default_factory=dict)
    """Per module object (by id): the original parameters it held, as stand-ins of their global shape."""
    replaced: dict[int, torch.Tensor] = field(default_factory=dict)
    """Registered tensors (by id) to show as a stand-in: ``use_orig_params`` views, and the stand-ins themselves."""
    hidden: set[int] = field(default_factory=set)
    """Flat parameters registered on a module, which the stand-ins replace."""
    shards: dict[int, Sharding] = field(default_factory=dict)
    """Per stand-in (by id): what this rank holds of the original parameter."""
    devices: set[torch.device] = field(default_factory=set)
    local_storage_bytes: int = 0
    """The flat shards' bytes on this rank, padding included."""
    gathered_paths: list[str] = field(default_factory=list)
    """The wrappers whose flat parameter is gathered now (inside ``summon_full_params``)."""
    gathered_bytes: int = 0
    """The bytes of those gathered flat parameters, held beside the shards."""

    def __bool__(self) -> bool:
        return bool(self.shards)


def of_class(module: nn.Module, class_name: str) -> bool:
    """Whether ``module`` is an instance of a class named ``class_name`` or of a subclass of it (a project's own
    FSDP subclass is FSDP; FSDP2's fully_shard turns CheckpointWrapper into a subclass, FSDPCheckpointWrapper)."""
    # By name: importing torch.distributed to test isinstance would cost more than the whole walk of a small model.
    return any(cls.__name__ == class_name for cls in type(module).__mro__)


def _flat_parameter(module: nn.Module) -> Any:
    if not of_class(module, "FullyShardedDataParallel"):
        return None
    handle = getattr(module, "_handle", None)
    flat = getattr(handle, "flat_param", None)
    return flat if getattr(flat, "_is_flat_param", False) else None


def unflatten(wrapper: nn.Module, found: FlatParameters, path: str = "") -> None:
    """Add the original parameters behind an FSDP1 wrapper's flat parameter to ``found`` (the walk calls this when
    it meets the wrapper, at ``path``, before the modules it wraps)."""
    flat = _flat_parameter(wrapper)
    if flat is not None:
        # NO_SHARD keeps the whole flat parameter on every rank, as DDP does
        sharded = getattr(wrapper._handle, "uses_sharded_strategy", True)
        placement = "FSDP1 flat shard" if sharded else "FSDP1 flat parameter, not sharded (NO_SHARD)"
        _unflatten_one(flat, found, _world_size(getattr(wrapper, "process_group", None)), path, placement)


def _local_shard(flat: Any) -> torch.Tensor:
    """The flat shard this rank keeps: inside ``summon_full_params`` (or unsharded for a forward) the flat
    parameter's data is the whole flat parameter, the shard kept apart in ``_local_shard``."""
    shard = getattr(flat, "_local_shard", None)
    sharded_size = getattr(flat, "_sharded_size", None)
    if not isinstance(shard, torch.Tensor) or sharded_size is None or flat.size() == sharded_size:
        return flat  # type: ignore[no-any-return]
    return shard


def _gathered_bytes(flat: Any, shard: torch.Tensor) -> int:
    """The bytes of the unsharded copies of a flat parameter this rank holds beside its shard. Inside
    ``summon_full_params`` its data is the whole flat parameter; after a forward that does not reshard
    (``SHARD_GRAD_OP``, and ``FULL_SHARD``'s root unit) its data is the shard again, but the gathered flat parameter
    (``_full_param_padded``, in a mixed-precision policy's dtype) stays allocated until the backward."""
    own, _ = held_storage(shard)
    held = {}
    for name in ("data", "_full_param_padded", "_full_prec_full_param_padded"):
        tensor = getattr(flat, name, None)
        if isinstance(tensor, torch.Tensor):
            # by device and address: storages on two devices can start at the same address
            key, nbytes = held_storage(tensor)
            if key is not None and key != own:
                held[key] = nbytes
    return sum(held.values())


def _unflatten_one(flat: Any, found: FlatParameters, world: int | None, path: str, placement: str) -> None:
    found.devices.add(flat.device)
    found.hidden.add(id(flat))
    shard = _local_shard(flat)
    found.local_storage_bytes += shard.untyped_storage().nbytes()
    gathered = _gathered_bytes(flat, shard)
    if gathered:
        found.gathered_paths.append(path or "(model)")
        found.gathered_bytes += gathered
    originals = getattr(flat, "_params", None)  # use_orig_params: the registered views, in order
    shared_originals = getattr(flat, "_shared_params", None)
    stand_ins = []
    shard_infos = getattr(flat, "_shard_param_infos", ())
    for index, (info, shape) in enumerate(zip(flat._param_infos, flat._shapes, strict=True)):
        # use_orig_params keeps each original's own requires_grad (frozen layers, LoRA); else the flat one's holds
        trains = originals[index].requires_grad if originals is not None else flat.requires_grad
        stand_in = torch.empty(tuple(shape), dtype=shard.dtype, device="meta").requires_grad_(trains)
        stand_ins.append(stand_in)
        found.on_module.setdefault(id(info.module), []).append((info.param_name, stand_in))
        local = (shard_infos[index].numel_in_shard or 0) if index < len(shard_infos) else 0
        found.shards[id(stand_in)] = Sharding(
            "fsdp1",
            None if world is None else (world,),
            (placement,),
            (local,),
            local,
            local * shard.element_size(),
        )
        if originals is not None:
            found.replaced[id(originals[index])] = stand_in
        # inside summon_full_params, views of the gathered flat parameter are registered in its place
        registered = info.module._parameters.get(info.param_name)
        if registered is not None:
            found.replaced[id(registered)] = stand_in
    primary = {
        (id(info.module), info.param_name): stand_in
        for info, stand_in in zip(flat._param_infos, stand_ins, strict=True)
    }
    for index, shared in enumerate(flat._shared_param_infos):
        stand_in = primary[(id(shared.prim_module), shared.prim_param_name)]
        found.on_module.setdefault(id(shared.module), []).append((shared.param_name, stand_in))
        if shared_originals is not None and index < len(shared_originals):
            found.replaced[id(shared_originals[index])] = stand_in
    for stand_in in stand_ins:
        found.replaced[id(stand_in)] = stand_in


# gloo's "Timed out waiting 3000ms for recv operation", NCCL's watchdog "collective operation timeout", gloo's
# "Connection closed by peer" from a rank that left, and the mismatch torch's debug mode reports
_NOT_JOINED = re.compile(r"timed out|timeout|closed by peer|reset by peer|mismatch between collectives", re.IGNORECASE)


def gather_ranks(totals: Totals) -> tuple[RankShare, ...]:
    """Every rank's share, gathered from all ranks (a collective: every rank must call it). Only four numbers per
    rank travel, never a weight."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is None or not distributed.is_available() or not distributed.is_initialized():
        raise UsageError(
            "all_ranks gathers each rank's share: initialise torch.distributed (init_process_group) and call inspect "
            "on every rank"
        )
    params = totals.params if totals.local_params is None else totals.local_params
    nbytes = totals.param_bytes if totals.local_param_bytes is None else totals.local_param_bytes
    shares: list[Any] = [None] * distributed.get_world_size()
    rank = distributed.get_rank()
    try:
        distributed.all_gather_object(shares, (rank, params, nbytes, totals.params))
    except RuntimeError as error:
        # A rank that never calls leaves the others waiting until the group's timeout; one that calls another
        # collective times out there and leaves, closing its connections. Any other failure (a CUDA or NCCL error)
        # is torch's own, and says what it is.
        reason = first_line(error)
        if not _NOT_JOINED.search(reason):
            raise
        raise UsageError(
            f"all_ranks is a collective, and it failed on rank {rank} (a rank that does not call it leaves the "
            "others waiting until the process group's timeout): call inspect(model, all_ranks=True) on every rank. "
            f"torch: {reason}"
        ) from None
    return tuple(sorted(RankShare(*share) for share in shares))
