"""The public, HALCON-named API of ``segcore`` resolves to the functions the README names."""

from __future__ import annotations

import inspect

import pytest

import segcore


@pytest.mark.parametrize("name", segcore.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(segcore, name)
    assert name == "__version__" or inspect.isclass(value) or inspect.isfunction(value)
    if name != "__version__":
        assert value.__name__ == name  # the object itself, not a module of the same name


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'read_dl_model'"):
        segcore.read_dl_model  # noqa: B018
