"""paramscope: exact parameter counts, sizes and memory of PyTorch models.

>>> import paramscope
>>> paramscope.count_params(paramscope.inspect("paramscope.examples:gpt2"))
(124439808, 124439808)

``import paramscope`` does not import torch; the functions that need it import it when called.
"""

from ._api import count_params, diff, inspect, memory, params_size, report_model, summary
from ._budget import Budget, check_budget
from ._diff import Diff, ModuleDelta, SharingChange, TensorChange
from ._errors import (
    BudgetExceededError,
    IncompleteCountError,
    MissingDependencyError,
    ParamscopeError,
    SourceError,
    TargetError,
    UsageError,
)
from ._memory import MemoryItem, MemoryPlan, MemorySettings, StorageRow
from ._report import (
    CallRecord,
    DtypeTotals,
    ModuleNode,
    RankShare,
    Report,
    Sharding,
    Source,
    TensorRecord,
    Totals,
)
from ._version import __version__

__all__ = [
    "Budget",
    "BudgetExceededError",
    "CallRecord",
    "Diff",
    "DtypeTotals",
    "IncompleteCountError",
    "MemoryItem",
    "MemoryPlan",
    "MemorySettings",
    "MissingDependencyError",
    "ModuleDelta",
    "ModuleNode",
    "ParamscopeError",
    "RankShare",
    "Report",
    "Sharding",
    "SharingChange",
    "Source",
    "SourceError",
    "StorageRow",
    "TargetError",
    "TensorChange",
    "TensorRecord",
    "Totals",
    "UsageError",
    "__version__",
    "check_budget",
    "count_params",
    "diff",
    "inspect",
    "memory",
    "params_size",
    "report_model",
    "summary",
]
