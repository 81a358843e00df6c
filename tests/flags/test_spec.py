"""Conformance: every case of Unleash's client specification 6.1.0 (files 01–18 and 22).

The JSON files are vendored from ``@unleash/client-specification@6.1.0`` (npm,
Apache-2.0; LICENSE beside them) and evaluated through our snapshot exactly as
requests are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orderly.flags.engine import FlagContext, Snapshot

SPEC_DIR = Path(__file__).parent / "spec"
FILES = sorted(SPEC_DIR.glob("*.json"))


def _cases() -> list[Any]:
    cases = []
    for path in FILES:
        document = json.loads(path.read_text(encoding="utf-8"))
        for test in document.get("tests", []):
            cases.append(
                pytest.param(path.name, test, False, id=f"{path.stem}:{test['description']}")
            )
        for test in document.get("variantTests", []):
            cases.append(
                pytest.param(path.name, test, True, id=f"{path.stem}:v:{test['description']}")
            )
    return cases


_SNAPSHOTS: dict[str, Snapshot] = {}


def _snapshot(name: str) -> Snapshot:
    if name not in _SNAPSHOTS:
        state = json.loads((SPEC_DIR / name).read_text(encoding="utf-8"))["state"]
        _SNAPSHOTS[name] = Snapshot(state.get("features", []), state.get("segments", []), 1)
    return _SNAPSHOTS[name]


def test_the_vendored_files_are_01_to_18_and_22() -> None:
    prefixes = sorted(path.name[:2] for path in FILES)
    assert prefixes == [f"{n:02d}" for n in range(1, 19)] + ["22"]
    assert (SPEC_DIR / "LICENSE").exists()


@pytest.mark.parametrize(("file", "case", "is_variant"), _cases())
def test_spec_case(file: str, case: dict[str, Any], is_variant: bool) -> None:
    snapshot = _snapshot(file)
    context = FlagContext.from_unleash(case.get("context") or {})
    if not is_variant:
        assert snapshot.is_enabled(case["toggleName"], context) is case["expectedResult"]
        return
    expected = case["expectedResult"]
    got = snapshot.variant(case["toggleName"], context)
    assert got.name == expected["name"]
    assert got.enabled == expected["enabled"]
    if "feature_enabled" in expected:
        assert got.feature_enabled == expected["feature_enabled"]
    if expected.get("payload") is not None:
        assert got.payload == expected["payload"]
