"""``--check``: a model (built from its config) against a checkpoint, before anything is loaded.

The classic ``load_state_dict`` error, ahead of time: tensors the model has and the checkpoint lacks (missing),
tensors the checkpoint has and the model lacks (unexpected), and tensors whose shapes differ. Tied weights and
non-persistent buffers, which a checkpoint leaves out on purpose, are not reported missing.

Names are matched as the loader matches them (:class:`Loading`): transformers renames some keys, adds or removes
the base-model prefix (``transformer.`` for GPT-2) when a base model's checkpoint is loaded into a model with a head
or the reverse, and ignores the keys a model lists as ignorable. A quantised weight (GPTQ ``qweight``, AWQ,
bitsandbytes, FP8, MXFP4 ``_blocks``) is compared as the logical weight it encodes, and its scales and zeros are
neither missing nor unexpected.

Tensors the loader converts (Mixtral's experts, stored one by one and merged into one fused tensor per layer) have no
shape of their own to compare: the checkpoint tensors mapped to one model tensor must hold, together, as many values
as it has. Sources whose expert index lies beyond the model's experts are unexpected, and a note names the expert a
merge lacks or the tensor whose shape differs from its siblings'.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from ._diff import LoadedNames
from ._report import Report, TensorRecord
from ._units import MAX_NAME_IN_NOTE, listed, shortened
from .sources.quantization import logical_name

Renamer = Callable[[str], tuple[str, bool]]
"""Maps a checkpoint's tensor name to the model's, and says whether loading converts it (merges experts, …)."""

# A packed weight's stored name ends with the first suffix; the weight it encodes, with the second.
_DETAILED = 5  # converted model tensors explained one by one in the notes; the rest are counted


@dataclass(frozen=True, slots=True)
class ShapeMismatch:
    name: str
    model_shape: tuple[int, ...] | None
    checkpoint_shape: tuple[int, ...] | None


@dataclass(frozen=True)
class Loading:
    """How a loader matches a checkpoint's tensor names with a model's (transformers' ``from_pretrained``).

    ``rename`` maps a stored name to the model's and says whether loading converts the tensor. ``base_model_prefix``
    is added to a stored name, or removed from it, when that makes it one of the model's names, as transformers
    does for a base model's checkpoint loaded into a model with a head (and the reverse); transformers 5 decides
    name by name, as here, 4.x once for the whole checkpoint, which gives the same result unless a checkpoint mixes
    prefixed and unprefixed names. ``ignore_missing`` and
    ``ignore_unexpected`` are regular expressions, searched in the model's names, for the tensors the loader does not
    report (``_keys_to_ignore_on_load_missing``/``_unexpected``).
    """

    rename: Renamer | None = None
    base_model_prefix: str = ""
    ignore_missing: tuple[str, ...] = ()
    ignore_unexpected: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    """What a model and a checkpoint disagree on; empty tuples when the checkpoint loads into the model."""

    against: str
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[ShapeMismatch, ...]
    notes: tuple[str, ...] = ()
    """How names were matched: the base-model prefix added or removed, packed weights, ignored tensors."""

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def check_findings(check: Check) -> str:
    """How many tensors a check found missing, unexpected and of another shape, in words.

    >>> check_findings(Check("config.json", ("a.weight", "b.weight"), (), ()))
    '2 missing, 0 unexpected, 0 of another shape'
    """
    counts = (len(check.missing), len(check.unexpected), len(check.mismatched))
    return "{:,} missing, {:,} unexpected, {:,} of another shape".format(*counts)


def _names(record: TensorRecord) -> tuple[str, ...]:
    return (record.name, *record.aliases)


def _fits(found: TensorRecord, wanted: TensorRecord) -> bool:
    """Whether a checkpoint tensor has the model tensor's shape; for a packed weight, the logical shape it encodes."""
    if found.shape == wanted.shape or found.packing is None:
        return found.shape == wanted.shape
    if found.shape is None or wanted.shape is None or found.numel != wanted.numel:
        return False
    if len(found.shape) == 1:
        return True  # bitsandbytes 4-bit without a readable quant state: only the count is known
    # MXFP4 blocks encode (…, out, in); gpt-oss builds its experts (…, in, out) and transposes them when it loads
    swapped = (*wanted.shape[:-2], wanted.shape[-1], wanted.shape[-2])
    return found.name.endswith("_blocks") and len(wanted.shape) >= 2 and found.shape == swapped


def _prefixed(name: str, prefix: str, expected: set[str]) -> tuple[str, str | None]:
    """``name`` with the base-model prefix removed or added when only that makes it a model name, and which."""
    if not prefix or name in expected:
        return name, None
    if name.startswith(f"{prefix}.") and name[len(prefix) + 1 :] in expected:
        return name[len(prefix) + 1 :], "removed"
    if f"{prefix}.{name}" in expected:
        return f"{prefix}.{name}", "added"
    return name, None


def _search(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    if not patterns:
        return lambda name: False
    regex = re.compile("|".join(f"({pattern})" for pattern in patterns))
    return lambda name: regex.search(name) is not None


@dataclass
class _Converted:
    """What comparing converted tensors by count found, for the check and its notes."""

    sources: int = 0
    example: str = ""
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[ShapeMismatch] = field(default_factory=list)
    covered: set[str] = field(default_factory=set)
    """Model tensors with no source of their own that a one-to-many conversion fills (``qkv`` split into q, k, v)."""
    details: list[str] = field(default_factory=list)


def _numbers(name: str) -> list[tuple[int, int]]:
    # isdecimal(), not isdigit(): "²" is a digit that int() refuses
    return [(position, _index(part)) for position, part in enumerate(name.split(".")) if part.isdecimal()]


_PAST_EVERY_COUNT = 2**63  # counts are int64 sizes


def _index(digits: str) -> int:
    # int() refuses more than 4,300 digits (sys.get_int_max_str_digits), and any index over 19 is past every count
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= 19 else _PAST_EVERY_COUNT


def _merged_index(source: str, target: str) -> tuple[int, int] | None:
    """The position and value of the index a merge removes: ``layers.0.experts.3.w1.weight`` into
    ``layers.0.mlp.experts.gate_up_proj`` stacks expert 3. None when the names' numbers do not differ by one."""
    found, wanted = _numbers(source), [value for _, value in _numbers(target)]
    for drop in reversed(range(len(found))):
        if [value for at, (_, value) in enumerate(found) if at != drop] == wanted:
            return found[drop]
    return None


def _siblings(target: str, unsourced: dict[str, TensorRecord]) -> list[TensorRecord]:
    """Model tensors without a source whose names differ from ``target`` in one part (``q_proj``/``k_proj``)."""
    parts = target.split(".")
    found = []
    for name, record in unsourced.items():
        other = name.split(".")
        if len(other) == len(parts) and sum(a != b for a, b in zip(parts, other, strict=True)) == 1:
            found.append(record)
    return found


def _compare_converted(
    wanted: TensorRecord, sources: Sequence[TensorRecord], unsourced: dict[str, TensorRecord], result: _Converted
) -> None:
    """Whether the checkpoint tensors a conversion maps to ``wanted`` hold as many values as it has, and if not why."""
    total = sum(source.numel or 0 for source in sources)
    if wanted.numel is None:
        return
    if total == wanted.numel:
        odd = _odd_merge(wanted, sources)
        if odd:  # as many values, but not experts the loader stacks into this shape
            result.mismatched.append(ShapeMismatch(wanted.name, wanted.shape, (total,)))
            result.details.append("; ".join(odd))
        return
    siblings = _siblings(wanted.name, unsourced) if total > wanted.numel else []
    if siblings and total == wanted.numel + sum(sibling.numel or 0 for sibling in siblings):
        result.covered |= {sibling.name for sibling in siblings}  # one source split into several model tensors
        return
    # Merged experts: a source whose index is past the model's count (its first dimension) has nowhere to go
    count = wanted.shape[0] if wanted.shape and len(wanted.shape) >= 2 else None
    indexed = {source.name: _merged_index(source.name, wanted.name) for source in sources}
    beyond = {name for name, index in indexed.items() if index is not None and count is not None and index[1] >= count}
    kept = [source for source in sources if source.name not in beyond]
    reasons = []
    if beyond:
        strays = [source.name for source in sources if source.name in beyond]
        result.unexpected += strays
        reasons.append(f"{listed(strays)}: index beyond the {count} that {shortened(wanted.name)} stacks (unexpected)")
    kept_total = sum(source.numel or 0 for source in kept)
    if kept_total != wanted.numel:
        result.mismatched.append(ShapeMismatch(wanted.name, wanted.shape, (kept_total,)))
        shape = "×".join(str(dim) for dim in wanted.shape or ())
        reasons.append(
            f"the {len(kept)} checkpoint tensor(s) the loader merges into {shortened(wanted.name)} hold "
            f"{kept_total:,} values, the model's ({shape}) tensor {wanted.numel:,}; its checkpoint shape is shown as "
            "that one count"
        )
        reasons += _merge_gaps(kept, indexed, count or 0)
    result.details.append("; ".join(reasons))


def _odd_merge(wanted: TensorRecord, sources: Sequence[TensorRecord]) -> list[str]:
    """Why experts stored one by one (every source numbered one more than ``wanted``) that hold as many values as the
    model's tensor do not merge into it, as transformers stacks them (a new first dimension) and joins the kinds
    along the next (``w1`` and ``w3`` into ``gate_up_proj``): an index a kind lacks, a shape other than its kind's,
    or kinds whose stacked shape is no arrangement of the model's dimensions (experts stored transposed). Empty
    where they merge, or where the sources are no such experts."""
    count = wanted.shape[0] if wanted.shape and len(wanted.shape) >= 3 else None
    indexed = {source.name: _merged_index(source.name, wanted.name) for source in sources}
    if count is None or any(index is None for index in indexed.values()):
        return []
    gaps = _merge_gaps(sources, indexed, count)
    if gaps:
        return gaps
    kinds = list(_kind_shapes(sources, indexed).values())  # one shape a kind: the gaps above say where not
    known = [shape for shape in kinds if shape]
    trailing = {shape[1:] for shape in known}
    joined = None
    if len(known) == len(kinds) and len(trailing) == 1:  # stacked, then joined along their first dimension
        joined = (count, sum(shape[0] for shape in known), *trailing.pop())
    if joined is not None and sorted(joined) == sorted(wanted.shape or ()):
        return []
    made = "no one shape" if joined is None else f"({', '.join(map(str, joined))})"
    return [f"the experts merged into {shortened(wanted.name)} make {made}, not an arrangement of the model's "
            f"({', '.join(map(str, wanted.shape or ()))}): stored transposed, or of other sizes"]  # fmt: skip


def _kind_shapes(
    sources: Sequence[TensorRecord], indexed: dict[str, tuple[int, int] | None]
) -> dict[str, tuple[int, ...] | None]:
    """Each kind of merged source (``experts.*.w1.weight``), in the order stored, with the shape its tensors have."""
    shapes: dict[str, tuple[int, ...] | None] = {}
    for source in sources:
        index = indexed[source.name]
        if index is not None:
            parts = source.name.split(".")
            parts[index[0]] = "*"
            shapes.setdefault(".".join(parts), source.shape)
    return shapes


def _merge_gaps(sources: Sequence[TensorRecord], indexed: dict[str, tuple[int, int] | None], count: int) -> list[str]:
    """Per kind of merged source (``experts.*.w1.weight``): the indices below ``count`` it lacks, and the tensors
    whose shape differs from the shape most of its kind have."""
    kinds: dict[str, list[tuple[int, TensorRecord]]] = {}
    for source in sources:
        index = indexed[source.name]
        if index is not None:
            parts = source.name.split(".")
            parts[index[0]] = "*"
            kinds.setdefault(".".join(parts), []).append((index[1], source))
    gaps = []
    for kind, members in kinds.items():
        absent = sorted(set(range(count)) - {index for index, _ in members})
        if absent:
            gaps.append(f"{shortened(kind)} lacks index {listed([str(index) for index in absent])}")
        usual, _ = Counter(source.shape for _, source in members).most_common(1)[0]
        odd = [f"{source.name} is {source.shape}" for _, source in members if source.shape != usual]
        if odd:
            gaps.append(f"{listed(odd)} where the other {shortened(kind)} are {usual}")
    return gaps


def _loaded_as(
    record: TensorRecord, name: str, loading: Loading, expected: set[str]
) -> tuple[str, str, bool, str | None]:
    """How the loader takes the checkpoint tensor ``record`` stored under ``name``: the name of the weight it encodes
    (a packed one's logical name), the model name it is loaded into, whether loading converts it, and whether the
    base-model prefix was added or removed to make that name one of the model's (``expected``)."""
    logical = logical_name(name) if record.packing is not None else name
    target, converted = loading.rename(logical) if loading.rename is not None else (logical, False)
    target, change = _prefixed(target, loading.base_model_prefix, expected)
    return logical, target, converted, change


def loaded_names(model: Report, checkpoint: Report, loading: Loading) -> LoadedNames:
    """The checkpoint's names as the loader ``loading`` describes takes them into ``model`` (transformers'
    ``from_pretrained``), for a diff: each name it loads under another, the model names it fills from several
    checkpoint tensors (compared by their count of values), and the names it does not report missing or unexpected.

    Example::

        diff = _diff.compare(model_report, checkpoint_report, loaded_names(model_report, checkpoint_report, loading))
    """
    expected = {name for record in model.tensors for name in _names(record)}
    renamed: dict[str, str] = {}
    merged: set[str] = set()
    loaded: set[str] = set()
    consumed: set[str] = set()
    ignore_missing, ignore_unexpected = _search(loading.ignore_missing), _search(loading.ignore_unexpected)
    for record in checkpoint.tensors:
        for name in _names(record):
            _, target, converted, _ = _loaded_as(record, name, loading, expected)
            if target != name:
                renamed[name] = target
            if converted:
                merged.add(target)
            loaded.add(target)
            if target not in expected and ignore_unexpected(target):
                consumed.add(name)
    supplied = {name for name in expected if name not in loaded and ignore_missing(name)}
    return LoadedNames(
        renamed, frozenset(supplied), frozenset(consumed), merged=frozenset(merged), loader=_TRANSFORMERS_LOADER
    )


_TRANSFORMERS_LOADER = "transformers' loader (from_pretrained's conversion mapping and base-model prefix)"


def loaded_into(model: Report, checkpoint: Report, loading: Loading, names: frozenset[str]) -> frozenset[str]:
    """The checkpoint's tensor names whose model tensor, as the loader takes them (a base-model prefix added, experts
    stored one by one merged into one, a packed weight as the weight it encodes), is one of the model's ``names``:
    what a forward of the model reached (its parameters' names), in the checkpoint's names."""
    expected = {name for record in model.tensors for name in _names(record)}
    return frozenset(
        record.name
        for record in checkpoint.tensors
        if any(_loaded_as(record, name, loading, expected)[1] in names for name in _names(record))
    )


def compare(model: Report, checkpoint: Report, loading: Loading | None = None) -> Check:
    """Which of the model's tensors the checkpoint lacks, which it has in excess, and which differ in shape.

    ``loading`` matches checkpoint names with the model's as the loader does (transformers renames keys, merges
    some layouts, adds or removes the base-model prefix); the tensors the loader converts into one model tensor are
    compared by their total count. A packed quantised weight is compared as the weight it encodes, by its logical
    shape.

    Example::

        check = compare(inspect_module(model), checkpoint_report, Loading(base_model_prefix="transformer"))
        check.ok, check.missing, check.unexpected, check.notes
    """
    loading = loading or Loading()
    expected = {name for record in model.tensors for name in _names(record)}
    stored: dict[str, TensorRecord | None] = {}  # None: produced by a conversion, shape not comparable
    again: dict[str, list[TensorRecord]] = {}  # model name -> the other checkpoint tensors loaded into it as they are
    targets: dict[str, set[str]] = {}  # checkpoint name -> the model names it was matched to
    merged: dict[str, dict[str, TensorRecord]] = {}  # model name -> the checkpoint tensors a conversion maps to it
    prefixed: dict[str, list[str]] = {"added": [], "removed": []}
    packed: list[str] = []
    for record in checkpoint.tensors:
        for name in _names(record):
            logical, target, converted, change = _loaded_as(record, name, loading, expected)
            if change is not None and name == record.name:
                prefixed[change].append(record.name)
            if logical != name and name == record.name:
                packed.append(record.name)
            if converted:
                stored[target] = None
            elif target not in stored:
                stored[target] = record
            elif (first := stored[target]) is not None and first is not record:
                again.setdefault(target, []).append(record)  # under a name with and without the prefix, say
            targets.setdefault(record.name, set()).add(target)
            if converted and record.kind != "quantization":
                merged.setdefault(target, {})[record.name] = record
    ignore_missing, ignore_unexpected = _search(loading.ignore_missing), _search(loading.ignore_unexpected)
    missing, mismatched, ignored = [], [], []
    unsourced: dict[str, TensorRecord] = {}
    compared: list[tuple[TensorRecord, list[TensorRecord]]] = []
    for record in model.tensors:
        if record.kind == "buffer" and record.persistent is False:
            continue  # not saved in a state dict
        names = [name for name in _names(record) if name in stored]
        if not names:
            unsourced[record.name] = record
            continue
        found = stored[names[0]]
        if found is not None and not _fits(found, record):
            mismatched.append(ShapeMismatch(record.name, record.shape, found.shape))
        for loaded_too in [duplicate for name in names for duplicate in again.get(name, ())]:
            if not _fits(loaded_too, record):  # each is loaded into it, and must fit as the first must
                mismatched.append(ShapeMismatch(record.name, record.shape, loaded_too.shape))
        # a tied name the checkpoint stores apart (a tied head saved too) is loaded into this tensor as well
        for name in names[1:]:
            other = stored[name]
            if other is not None and other is not found and not _fits(other, record):
                mismatched.append(ShapeMismatch(name, record.shape, other.shape))
        feeding = {source.name: source for name in names for source in merged.get(name, {}).values()}
        if found is None and feeding:
            compared.append((record, list(feeding.values())))
    conversion = _Converted(sum(len(sources) for _, sources in compared))
    if compared:
        conversion.example = f"{shortened(compared[0][1][0].name)} into {shortened(compared[0][0].name)}"
    for record, sources in compared:
        _compare_converted(record, sources, unsourced, conversion)
    mismatched += conversion.mismatched
    for record in unsourced.values():
        if record.name in conversion.covered:
            continue
        if any(ignore_missing(name) for name in _names(record)):
            ignored.append(record.name)
        else:
            missing.append(record.name)
    unexpected = []
    for record in checkpoint.tensors:
        matched = targets[record.name]
        if record.kind == "quantization" or matched & expected:
            continue
        if any(ignore_unexpected(name) for name in matched):
            ignored.append(record.name)
        else:
            unexpected.append(record.name)
    unexpected += conversion.unexpected
    notes = _notes(model, loading.base_model_prefix, prefixed, packed, ignored) + _converted_notes(conversion)
    return Check(model.source.target, tuple(missing), tuple(unexpected), tuple(mismatched), notes)


def _converted_notes(converted: _Converted) -> tuple[str, ...]:
    if not converted.sources:
        return ()
    notes = [
        f"--check: {converted.sources:,} checkpoint tensor(s) that the loader converts (merges, splits, reshapes; "
        f"{converted.example}, …) compared by total count: the tensors mapped to one model tensor must hold as many "
        "values as it has, and experts stored one by one the same indices and one shape a kind, stacked into an "
        "arrangement of its dimensions; other shapes are not compared one by one"
    ]
    notes += [f"--check: {detail}" for detail in converted.details[:_DETAILED]]
    if len(converted.details) > _DETAILED:
        notes.append(f"--check: {len(converted.details) - _DETAILED} more converted tensor(s) disagree likewise")
    return tuple(notes)


def _notes(
    model: Report, prefix: str, prefixed: dict[str, list[str]], packed: list[str], ignored: list[str]
) -> tuple[str, ...]:
    root = next((node.type for node in model.modules if node.path == "" and node.type), "the model")
    notes = []
    if prefixed["added"]:
        added = prefixed["added"]
        notes.append(
            f"--check: base-model prefix {prefix + '.'!r} added to {len(added)} checkpoint tensor name(s) "
            f"({listed(added)}), as transformers does when it loads a base model's weights into {root}"
        )
    if prefixed["removed"]:
        removed = prefixed["removed"]
        notes.append(
            f"--check: base-model prefix {prefix + '.'!r} removed from {len(removed)} checkpoint tensor name(s) "
            f"({listed(removed)}), as transformers does when it loads a model with a head into {root}"
        )
    if packed:
        half = MAX_NAME_IN_NOTE // 2 - 2  # "stored as logical", one name of the list, shortened as one name is
        shown = [f"{shortened(name, half)} as {shortened(logical_name(name), half)}" for name in packed[:1]]
        notes.append(
            f"--check: {len(packed)} packed quantised weight(s) compared as the weights they encode, by logical shape "
            f"({listed(shown + packed[1:], 1)}); their scale, zero and index tensors are not unexpected"
        )
    if ignored:
        notes.append(
            f"--check: {len(ignored)} tensor(s) not reported because {root} lists them as ignorable when it loads "
            f"({listed(ignored)})"
        )
    return tuple(notes)


def with_check(checkpoint: Report, model: Report, loading: Loading | None = None) -> Report:
    """``checkpoint`` carrying the result of comparing it with ``model``, and the check's notes."""
    check = compare(model, checkpoint, loading)
    return replace(checkpoint, check=check, notes=(*checkpoint.notes, *check.notes))
