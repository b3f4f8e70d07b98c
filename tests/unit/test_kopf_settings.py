"""What the controller sets in Kopf (obstop.controller.main.configure_kopf), checked on Kopf's own objects."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from obstop.controller.main import NoDiffBase, configure_kopf
from obstop.controller.settings import Settings


class Uncopyable:
    def __deepcopy__(self, memo: Any) -> Any:
        raise AssertionError("the body was copied")


def test_kopf_keeps_no_copy_of_the_delivered_bodies() -> None:
    """Kopf's diff base (a deep copy of every body, for change handlers) is off: the controller has none."""
    settings = kopf.OperatorSettings()
    configure_kopf(settings, Settings())
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, NoDiffBase)
    body = kopf.Body({"metadata": {"name": "x", "annotations": {"a": "b"}}, "spec": {"big": Uncopyable()}})
    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=kopf.BodyEssence(spec={"a": 1}))
    assert not patch, "nothing is written to the request"
    # Kopf's own storage would have copied it: the check above can fail.
    with pytest.raises(AssertionError, match="copied"):
        kopf.AnnotationsDiffBaseStorage().build(body=body)
