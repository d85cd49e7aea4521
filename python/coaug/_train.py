"""Placeholder replaced below when the trainer binding exists."""

from __future__ import annotations

from typing import Any


def train(config: Any = None, **kwargs: Any) -> Any:
    """RL training from Python is not available in this build; run ``coaug train`` instead."""
    raise NotImplementedError("coaug.train is not implemented yet: run `coaug train --dataset NAME --config FILE`")
