"""docs/engines.md's capability table is the engines' own declarations, and each declaration is honoured."""

from __future__ import annotations

import subprocess
import sys

from inferno.core.engines.capability_table import capabilities_table_markdown
from inferno.core.engines.registry import ENGINE_NAMES, capabilities_of
from tests.docs_blocks import generated_block


def test_docs_hold_exactly_the_generated_capability_table() -> None:
    assert generated_block("engines.md", "engine-capabilities-table") == capabilities_table_markdown()


def test_every_engine_declares_itself_without_importing_its_library() -> None:
    for name in ENGINE_NAMES:
        assert capabilities_of(name).engine == name
    # In a fresh interpreter: the core with every engine's declaration imports neither torch nor exllamav2.
    probe = (
        "import sys, inferno.core.server\n"
        "from inferno.core.engines.capability_table import capabilities_table_markdown\n"
        "capabilities_table_markdown()\n"
        "print(sorted(m for m in ('torch', 'exllamav2') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
