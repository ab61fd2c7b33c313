"""Timer delivery on the real local host process: schedule status in Azurite where the Functions
host keeps it, a past-due run after downtime, and on-demand runs through the admin endpoint."""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from localdev.host.timer_trigger import HOSTS_CONTAINER, status_blob_name
from localdev.stack import LocalStack
from tests.fixtures.host import HostFactory

pytestmark = pytest.mark.integration

TIMER_APP = """
    import json
    import os

    import azure.functions as func

    app = func.FunctionApp()


    @app.timer_trigger(arg_name="timer", schedule="%YEARLY_SCHEDULE%", use_monitor=True)
    def yearly(timer: func.TimerRequest) -> None:
        with open(os.environ["TIMER_RECORD"], "a", encoding="utf-8") as record:
            entry = {"pastDue": timer.past_due, "status": timer.schedule_status}
            record.write(json.dumps(entry) + "\\n")
"""


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def wait_for_records(path: Path, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(found := records(path)) < count:
        assert time.monotonic() < deadline, f"only {len(found)} of {count} runs recorded"
        time.sleep(0.05)
    return found


def test_past_due_after_downtime_runs_once_and_status_lives_in_storage(
    local_stack: LocalStack, local_host_factory: HostFactory, tmp_path: Path
) -> None:
    app_dir = tmp_path / "timer_app"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(textwrap.dedent(TIMER_APP), encoding="utf-8")
    (app_dir / "host.json").write_text('{"version": "2.0"}', encoding="utf-8")
    record = tmp_path / "runs.jsonl"
    host_id = f"timers-{uuid.uuid4().hex[:12]}"
    storage = local_stack.storage_connection_string
    container = BlobServiceClient.from_connection_string(storage).get_container_client(
        HOSTS_CONTAINER
    )
    if not container.exists():
        container.create_container()
    blob = container.get_blob_client(status_blob_name(host_id, "yearly"))
    # The host last ran before 2020's occurrence, then was stopped for years.
    blob.upload_blob(
        json.dumps(
            {
                "Last": "2019-01-01T00:00:00+00:00",
                "Next": "2020-01-01T00:00:00+00:00",
                "LastUpdated": "2019-01-01T00:00:01+00:00",
            }
        ),
        overwrite=True,
    )

    host = local_host_factory(
        app_dir,
        env={
            "AzureWebJobsStorage": storage,
            "AzureFunctionsWebHost__hostid": host_id,
            "YEARLY_SCHEDULE": "0 0 0 1 1 *",
            "TIMER_RECORD": str(record),
        },
    )

    (late,) = wait_for_records(record, 1)
    assert late["pastDue"] is True
    assert late["status"]["Next"] == "2020-01-01T00:00:00+00:00", "Next is the missed occurrence"
    logs = host.wait_for_log("Executed 'Functions.yearly' (Succeeded")
    assert "Timer 'yearly' is past due" in logs

    def saved_status() -> dict[str, Any]:
        return dict(json.loads(blob.download_blob().readall()))

    deadline = time.monotonic() + 10
    while saved_status()["Last"].startswith("2019"):
        assert time.monotonic() < deadline, saved_status()
        time.sleep(0.05)
    next_new_year = datetime(datetime.now(UTC).year + 1, 1, 1, tzinfo=UTC)
    assert saved_status()["Last"] == "2020-01-01T00:00:00+00:00"
    assert saved_status()["Next"] == next_new_year.isoformat()

    response = host.request(
        "POST", "/admin/functions/yearly", body=b'{"input": "ignored for timers"}'
    )
    assert response.status == 202
    invocation_id = response.header("x-ms-invocation-id")
    host.wait_for_log(f"Executed 'Functions.yearly' (Succeeded, Id={invocation_id}")
    runs = records(record)
    assert [run["pastDue"] for run in runs] == [True, False], "the missed years ran once"
    assert runs[1]["status"]["Next"] == next_new_year.isoformat()
