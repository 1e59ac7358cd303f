"""Pure parts of metrics, gates, bake options and JSON logs: no service."""

from __future__ import annotations

import json
import logging

import pytest

from orchestrator.cli_bake import make_bake, parse_duration
from orchestrator.engine import logs
from orchestrator.engine.gates import (
    Counts,
    alarm_verdict,
    counts_from_stat,
    error_rate_verdict,
)
from orchestrator.errors import ConfigError
from orchestrator.metrics import MAX_OPEN_WINDOWS, EventFold


def _sample(fold: EventFold, name: str, **labels: str) -> float:
    for metric in fold.collect():
        for s in metric.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name} {labels}")


def test_fold_pairs_leave_and_join_by_stream_ids() -> None:
    fold = EventFold()
    ev = [("1000-0", {"rollout": "r", "box": "a", "step": "deploy.leave_lb", "phase": "end",
                      "outcome": "ok", "duration": "0.2"}),
          ("1500-0", {"rollout": "r", "box": "b", "step": "deploy.leave_lb", "phase": "end",
                      "outcome": "ok", "duration": "0.2"}),
          ("3000-0", {"rollout": "r", "box": "a", "step": "deploy.join_lb", "phase": "end",
                      "outcome": "ok", "duration": "0.1"}),
          ("4000-1", {"rollout": "r", "box": "b", "step": "deploy.join_lb", "phase": "end",
                      "outcome": "ok", "duration": "0.1"}),
          ("5000-0", {"rollout": "r", "step": "rollout", "phase": "end",
                      "outcome": "succeeded"})]
    for sid, e in ev:
        fold.feed("web", sid, e, 1.0 if e["step"] == "rollout" else None)
    assert _sample(fold, "orchestrator_box_out_of_service_seconds_count") == 2
    assert _sample(fold, "orchestrator_box_out_of_service_seconds_sum") == pytest.approx(4.5)
    assert _sample(fold, "orchestrator_rollouts_total", outcome="succeeded") == 1
    assert _sample(fold, "orchestrator_rollout_duration_seconds_sum") == pytest.approx(4.0)
    assert _sample(fold, "orchestrator_step_duration_seconds_count",
                   step="deploy.leave_lb") == 2
    assert not fold.open


def test_fold_forgets_windows_beyond_its_cap() -> None:
    fold = EventFold()
    for i in range(MAX_OPEN_WINDOWS + 50):
        fold.feed("web", f"{i}-0", {"rollout": f"r{i}", "box": "a", "step": "deploy.leave_lb",
                                    "phase": "end", "outcome": "ok"}, None)
    assert len(fold.open) == MAX_OPEN_WINDOWS


def test_error_rate_gate() -> None:
    rows = [{"svname": "a", "hrsp_2xx": "80", "hrsp_5xx": "20", "eresp": "0"},
            {"svname": "b", "hrsp_2xx": "100", "hrsp_5xx": "0", "eresp": "1"}]
    now = counts_from_stat("web", rows)
    assert now["web/a"] == Counts(100, 20) and now["web/b"] == Counts(101, 1)
    base = {"web/a": Counts(50, 0), "web/b": Counts(1, 0)}
    ok, why = error_rate_verdict(base, now, ["a"], 0.05, 20)
    assert ok is False and "20/50" in why
    assert error_rate_verdict(base, now, ["a"], 0.5, 20)[0] is True
    assert error_rate_verdict(base, now, ["a"], 0.05, 51)[0] is None  # too few yet
    restarted = {"web/a": Counts(500, 0), "web/b": Counts(1, 0)}
    assert error_rate_verdict(restarted, now, ["a"], 0.05, 20)[0] is False


def test_alarm_gate() -> None:
    assert alarm_verdict({"x": "OK"}, ["x"])[0] is True
    assert alarm_verdict({"x": "ALARM"}, ["x"]) == (False, "alarm in ALARM: x")
    assert alarm_verdict({}, ["typo"])[0] is False


def test_bake_options() -> None:
    assert parse_duration("2m") == 120 and parse_duration("1m30s") == 90
    assert parse_duration("45") == 45 and parse_duration("1h") == 3600
    for bad in ("", "2x", "m"):
        with pytest.raises(ConfigError, match="duration"):
            parse_duration(bad)
    assert make_bake(None, (), None, None) is None
    for margin, requests in ((0.05, None), (None, 20)):  # given without a bake: said
        with pytest.raises(ConfigError, match="need a bake"):
            make_bake(None, (), margin, requests)
    with pytest.raises(ConfigError, match="--bake"):
        make_bake(None, ("a",), None, None)
    with pytest.raises(ConfigError, match="from 1 to 1000000"):
        make_bake("90s", (), None, 10**30)
    defaults = make_bake("90s", (), None, None)
    assert defaults is not None and (defaults.error_margin, defaults.min_requests) == (0.05, 20)
    bake = make_bake("90s", ("a",), 0.1, 5)
    assert bake is not None and bake.seconds == 90 and bake.alarms == ["a"]


def test_json_log_line_names_level_box_rollout_step() -> None:
    fmt = logs.JsonFormatter()
    token = logs.bind(box="b1", rollout="r1", step="deploy.swap")
    try:
        rec = logging.LogRecord("x", logging.WARNING, __file__, 1, "hi %s", ("there",), None)
        line = json.loads(fmt.format(rec))
    finally:
        logs.unbind(token)
    assert line["level"] == "WARNING" and line["message"] == "hi there"
    assert (line["box"], line["rollout"], line["step"]) == ("b1", "r1", "deploy.swap")
    assert line["time"].endswith("Z")
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    assert json.loads(fmt.format(rec))["rollout"] is None


def test_fleet_alarms_join_a_bake_only() -> None:
    from orchestrator.cli_bake import with_fleet_alarms
    from schemas.fleet import FleetSettings

    fleet = FleetSettings.model_validate({"alarms": {"web": ["web-5xx", "a"]}})
    bake = make_bake("1m", ("a",), 0.05, 20)
    joined = with_fleet_alarms(bake, fleet, "web")
    assert joined is not None and joined.alarms == ["a", "web-5xx"]
    assert with_fleet_alarms(None, fleet, "web") is None  # alarms are judged during a bake
    assert with_fleet_alarms(bake, fleet, "db") == bake
