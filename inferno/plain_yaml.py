"""YAML as a person would write it: keys in their order, and a value used twice written out twice, never as
an &anchor and *alias (which is how PyYAML writes a dict the config builders share between two places)."""

from __future__ import annotations

from typing import Any

import yaml


class PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_plain(document: Any, dumper: type[PlainDumper] = PlainDumper) -> str:
    return yaml.dump(document, Dumper=dumper, sort_keys=False, default_flow_style=False, width=110)
