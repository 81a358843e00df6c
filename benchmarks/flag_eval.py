"""Flag evaluation, µs per flag: yggdrasil Python API, our FFI path, hand-written mmh3.

Run: ``.venv/bin/python benchmarks/flag_eval.py`` (PRODUCT.md §9: < 10 µs per flag).
"""

from __future__ import annotations

import time

import mmh3
import orjson
from yggdrasil_engine.engine import UnleashEngine

from orderly.flags.engine import FlagContext, Snapshot

FEATURE = {
    "name": "recommendations.model",
    "enabled": True,
    "strategies": [
        {
            "name": "flexibleRollout",
            "parameters": {
                "rollout": "50",
                "stickiness": "default",
                "groupId": "recommendations.model",
            },
            "constraints": [],
        }
    ],
}
N = 20_000


def per_call(fn: object) -> float:
    """Microseconds per call of *fn* (best of 3)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(N):
            fn()  # type: ignore[operator]
        best = min(best, (time.perf_counter() - started) / N * 1e6)
    return best


def hand_written(user_id: str, rollout: int = 50, group: str = "recommendations.model") -> bool:
    """Unleash's flexibleRollout for one user: murmur3_x86_32(group:id) % 100 + 1 <= rollout."""
    return mmh3.hash(f"{group}:{user_id}", 0, signed=False) % 100 + 1 <= rollout


ROW = "yggdrasil via C ABI, context encoded once (ours)"


def measure() -> dict[str, float]:
    """µs per flag for each evaluator (the ``flags`` phase of ``orderly bench`` reads ``ROW``)."""
    engine = UnleashEngine()
    engine.take_state(orjson.dumps({"version": 2, "features": [FEATURE]}).decode())
    ctx = {"userId": "123", "environment": "production", "properties": {"role": "customer"}}
    snapshot = Snapshot([FEATURE], [], 1)
    context = FlagContext.of(
        user_id="123", environment="production", properties={"role": "customer"}
    )
    return {
        "yggdrasil public API (check_enabled)": per_call(
            lambda: engine.check_enabled(FEATURE["name"], ctx)
        ),
        ROW: per_call(lambda: snapshot.is_enabled("recommendations.model", context)),
        "variant via C ABI (ours)": per_call(
            lambda: snapshot.variant("recommendations.model", context)
        ),
        "hand-written mmh3 flexibleRollout only": per_call(lambda: hand_written("123")),
    }


def main() -> None:
    """Print µs per flag for each evaluator."""
    for name, micros in measure().items():
        print(f"{name:55s} {micros:6.2f} µs/flag")


if __name__ == "__main__":
    main()
