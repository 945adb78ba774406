"""The model-snapshot plugin: records which model is answering a run, as a cooperative writer.

At the first token of a run's first model call — while the attempt has released the write lock,
exactly the moment that broke the stat-fingerprint fence of DESIGN.md §1 — it appends a
``custom`` record (customType ``model-snapshot``, writer ``model-snapshot``) naming the model that
answered (a fallback shows up here), the run and the time to first token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ....core import custom
from ....errors import OutsideProtocolChangeError
from .._hooks import hookimpl

if TYPE_CHECKING:
    from .._gateway import Gateway

__all__ = ["ModelSnapshotPlugin", "ModelSnapshotStatistics"]


@dataclass(frozen=True)
class ModelSnapshotStatistics:
    written: int
    refused: int  # an outside change was found (recorded as a fence event; not laundered)


class ModelSnapshotPlugin:
    def __init__(self) -> None:
        self.written = 0
        self.refused = 0

    def __repr__(self) -> str:
        return f"<ModelSnapshotPlugin written={self.written} refused={self.refused}>"

    def statistics(self) -> ModelSnapshotStatistics:
        return ModelSnapshotStatistics(self.written, self.refused)

    @hookimpl
    async def fencepost_model_answering(
        self, gateway: Gateway, session_id: str, agent: str, run_id: str, model: str
    ) -> None:
        provider, _, model_id = model.partition("/")
        record = custom(
            "model-snapshot",
            {"provider": provider, "modelId": model_id, "runId": run_id, "agent": agent},
        )
        try:
            await gateway.store.session(session_id).append(
                record, writer="model-snapshot", run_id=run_id
            )
            self.written += 1
        except OutsideProtocolChangeError:
            self.refused += 1  # recorded as a fence event; the attempt's fence will name it
