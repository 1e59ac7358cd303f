"""What every step reads before it acts, in one pipelined round trip instead of seven."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.engine.journal import field as journal_field
from orchestrator.engine.redisconn import RedisClient
from orchestrator.engine.releases import ReleaseStore
from schemas.contract import Keys, StepRequest, StepResult
from schemas.release import Release
from schemas.trust import Warrant


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class Opening:
    """One moment's reading of the box's journal, its claimed token, its owner, the rollout's
    signed order and the release (raw: each is parsed only if the step gets that far)."""

    journal: dict[str, bytes]
    claimed: str | None
    owner: tuple[str, str] | None
    order: bytes | None
    release_raw: bytes | None
    _release: list[Release] = field(default_factory=list)

    def result(self, step: str, app: str | None) -> StepResult | None:
        raw = self.journal.get(journal_field(step, app))
        return StepResult.model_validate_json(raw) if raw else None

    def first_failure(self) -> StepResult | None:
        """As `Journal.first_failure`, from this reading."""
        entries = [
            StepResult.model_validate_json(v) for k, v in self.journal.items()
            if not k.startswith("~")
        ]
        failed = [r for r in entries if r.failed]
        return min(failed, key=lambda r: r.ended) if failed else None

    def warrant(self) -> Warrant | None:
        return Warrant.model_validate_json(self.order) if self.order else None

    def release(self, req: StepRequest) -> Release:
        """The request's release, checked against its hash once (ReleaseMismatch if not)."""
        if not self._release:
            self._release.append(
                ReleaseStore.parse(self.release_raw, req.release_id, req.release_hash)
            )
        return self._release[0]


def read_opening(client: RedisClient, keys: Keys, req: StepRequest) -> Opening:
    """Everything the gates read, in one round trip (they once made seven, one by one)."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.journal(req.rollout_id, req.box_id))
    pipe.hget(keys.rollout_part(req.rollout_id, "tokens"), req.box_id)
    pipe.hmget(keys.box_token(req.box_id), ["token", "rollout"])
    pipe.get(keys.rollout_part(req.rollout_id, "order"))
    pipe.get(keys.release(req.release_id))
    journal, claimed, (token, rollout), order, release = pipe.execute()
    return Opening(
        journal={_text(k): v for k, v in journal.items()},
        claimed=_text(claimed) if claimed is not None else None,
        owner=(_text(token), _text(rollout or b"")) if token is not None else None,
        order=order,
        release_raw=release,
    )
