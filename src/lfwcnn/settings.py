"""The config as frozen objects: a step reads ``model.kernel_size``, never ``cfg["model"][...]``.

The schema (workflow/schemas/config.schema.yaml) checks the config and fills its defaults once,
when the workflow starts or a step is run by hand (:func:`lfwcnn.config.load_config`). What a
step then receives is that checked mapping made immutable: mappings become frozen dataclasses
whose fields are the config's own keys, lists become tuples. The classes are made from the
keys, not written out, so a new key in config.yaml and the schema reaches the step that reads
it with nothing in between to update; and :func:`fingerprint` covers every key of a section,
so a resumed training cannot miss one.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import keyword
import types
from collections.abc import Mapping
from typing import Any


class Settings:
    """Base of every config section object (frozen dataclasses made by :func:`freeze`)."""

    def as_dict(self) -> dict[str, Any]:
        """The section as plain JSON-ready data (tuples as lists), for records and hashes."""
        return json.loads(json.dumps(dataclasses.asdict(self)))  # type: ignore[call-overload]


def _is_field_name(key: object) -> bool:
    return isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key)


@functools.cache
def _section_class(name: str, keys: tuple[str, ...]) -> type:
    cls = dataclasses.make_dataclass(name, keys, bases=(Settings,), frozen=True)
    cls.__module__ = __name__
    return cls


def freeze(value: Any, name: str = "config") -> Any:
    """``value`` with every mapping a frozen :class:`Settings` and every list a tuple."""
    if isinstance(value, Settings):
        return value
    if isinstance(value, Mapping) and not all(map(_is_field_name, value)):
        # a mapping of names rather than settings (the sweep's value names): read-only
        return types.MappingProxyType({key: freeze(item, key) for key, item in value.items()})
    if isinstance(value, Mapping):
        cls = _section_class(name, tuple(value))
        return cls(**{key: freeze(item, key) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(item, name) for item in value)
    return value


def fingerprint(*sections: Settings | Mapping | Any) -> str:
    """A digest of whole config sections: equal exactly when every key is equal."""
    plain = [s.as_dict() if isinstance(s, Settings) else s for s in sections]
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()
