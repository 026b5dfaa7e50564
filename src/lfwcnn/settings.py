"""The config as frozen objects: a step reads ``model.kernel_size``, never ``cfg["model"][...]``.

The schema (workflow/schemas/config.schema.yaml) checks the config and fills its defaults once,
when the workflow starts or a step is run by hand (:func:`lfwcnn.config.load_config`). What a
step then receives is that checked mapping made immutable: mappings become frozen dataclasses
whose fields are the config's own keys, lists become tuples. The classes are made from the
keys, not written out, so a new key in config.yaml and the schema reaches the step that reads
it with nothing in between to update; and a record built from :meth:`Settings.as_dict` (the
resume fingerprint of lfwcnn.snapshots) covers every key of a section, so it cannot miss one.
"""

from __future__ import annotations

import dataclasses
import functools
import keyword
import types
from collections.abc import Mapping
from typing import Any


class Settings:
    """Base of every config section object (frozen dataclasses made by :func:`freeze`)."""

    def as_dict(self) -> dict[str, Any]:
        """The section as plain JSON-ready data (tuples as lists), for records and hashes."""
        return {field.name: _plain(getattr(self, field.name))
                for field in dataclasses.fields(self)}  # type: ignore[arg-type]


def _plain(value: Any) -> Any:
    """Settings, read-only mappings and tuples back to dicts and lists (JSON's forms)."""
    if isinstance(value, Settings):
        return value.as_dict()
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


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
