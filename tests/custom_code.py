"""A model defined by custom code beside its config, as a Hub repository holds one: a ``model_type`` transformers
does not know, and an ``auto_map`` to the repository's ``configuration_x.py`` and ``modeling_x.py``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

CONFIGURATION = """
from transformers import PretrainedConfig


class XConfig(PretrainedConfig):
    model_type = {model_type!r}

    def __init__(self, width=8, **kwargs):
        self.width = width
        super().__init__(**kwargs)
"""
MODELING = """
from torch import nn
from transformers import PreTrainedModel

from .configuration_x import XConfig


class XModel(PreTrainedModel):
    config_class = XConfig

    def __init__(self, config):
        super().__init__(config)
        self.fc = nn.Linear(config.width, 3)
        self.post_init()
"""
PARAMS = 8 * 3 + 3
"""The parameters of XModel at the default width."""


def _marked(code: str, marker: Path | None) -> str:
    # a file the code writes when it is imported: proof of whether it ran
    if marker is None:
        return code
    return f"from pathlib import Path\n\nPath({str(marker)!r}).write_text('imported')\n{code}"


def custom_code_files(model_type: str, markers: tuple[Path, Path] | None = None) -> dict[str, str]:
    """config.json, configuration_x.py and modeling_x.py; with ``markers``, each code file writes its marker file
    when it is imported."""
    config = {
        "model_type": model_type,
        "width": 8,
        "architectures": ["XModel"],
        "auto_map": {"AutoConfig": "configuration_x.XConfig", "AutoModel": "modeling_x.XModel"},
    }
    first, second = markers or (None, None)
    return {
        "config.json": json.dumps(config),
        "configuration_x.py": _marked(CONFIGURATION.format(model_type=model_type), first),
        "modeling_x.py": _marked(MODELING, second),
    }


def isolated_modules_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make transformers copy a repository's code to a temporary directory and import it from there."""
    import transformers.dynamic_module_utils

    cache = tmp_path / "modules"
    monkeypatch.setattr(transformers.dynamic_module_utils, "HF_MODULES_CACHE", str(cache))
    # transformers imports the copies as the package transformers_modules, found once on sys.path: forget an earlier
    # test's package, and find this test's first
    for name in [name for name in sys.modules if name.partition(".")[0] == "transformers_modules"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(cache))
    return cache
