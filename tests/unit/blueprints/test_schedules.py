"""Function names are unique, and every timer schedule is one the host will accept.

Nothing below the Functions host validates NCRONTAB: a bad schedule deploys fine and then the
timer never loads. So every timer trigger the worker indexes (tests/fixtures/worker_indexing.py)
is checked here: its ``schedule`` is either a whole ``%SETTING%`` reference, resolved from
``local.settings.json.sample`` and backed by a default in ``shared.config.Settings`` (field alias
= setting name), or a literal; either way a valid 6-field NCRONTAB expression, seconds first.
Timers must also keep ``runOnStartup`` off and the schedule monitor on, as the design asks.

The validator accepts a strict subset of what NCrontab parses: per field ``*``, ``n``, ``a-b``,
``*/n``, ``a-b/n``, ``a/n`` and comma lists of those, month and weekday names as three-letter
abbreviations or full English names (any case). Where NCrontab silently accepts a likely mistake
(step 0 means every value, a reversed range is swapped) it is rejected here. croniter was
considered and not used: it also accepts syntax NCrontab rejects (``L``, ``W``, ``#``, ``?``,
``H``, 7 for Sunday), so it cannot tell what the host would refuse.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from shared.config import Settings
from shared.ncrontab import ncrontab_problems
from tests.fixtures.worker_indexing import (
    REPOSITORY_ROOT,
    BlueprintScan,
    IndexedFunction,
    index_app_in_subprocess,
    repository_app_report,
    repository_blueprint_scan,
)

SAMPLE_SETTINGS_FILE = REPOSITORY_ROOT / "local.settings.json.sample"
SETTING_REFERENCE = re.compile(r"^%(?P<name>[A-Za-z_][A-Za-z0-9_]*)%$")
TIMER_TRIGGER = "timerTrigger"
SCHEDULE_FIELD_SUFFIX = "_schedule"


def sample_setting_values() -> dict[str, str]:
    values = json.loads(SAMPLE_SETTINGS_FILE.read_text(encoding="utf-8"))["Values"]
    return {str(name): str(value) for name, value in values.items()}


def settings_defaults() -> dict[str, object]:
    """App setting name -> default, for every Settings field that has one."""
    return {
        str(info.alias): info.get_default(call_default_factory=True)
        for info in Settings.model_fields.values()
        if info.alias is not None and not info.is_required()
    }


def timer_problems(
    functions: Sequence[IndexedFunction],
    sample_values: Mapping[str, str],
    defaults: Mapping[str, object],
) -> list[str]:
    """Everything the host or the design would object to in the app's timer triggers."""
    problems: list[str] = []
    for function in functions:
        for timer in function.bindings_of_type(TIMER_TRIGGER):
            schedule = str(timer.get("schedule", ""))
            if timer.get("runOnStartup"):
                problems.append(
                    f"{function.name}: runOnStartup must stay off (it fires on every scale-out)"
                )
            if timer.get("useMonitor") is False:
                problems.append(
                    f"{function.name}: useMonitor must stay on, so missed runs are caught up"
                )
            reference = SETTING_REFERENCE.match(schedule)
            if reference is None:
                if "%" in schedule:
                    problems.append(
                        f"{function.name}: '{schedule}' must be a literal or one %SETTING%"
                    )
                    continue
                problems.extend(f"{function.name}: {p}" for p in ncrontab_problems(schedule))
                continue
            setting = reference["name"]
            if setting not in sample_values:
                problems.append(
                    f"{function.name}: {setting} is missing from local.settings.json.sample"
                )
            else:
                problems.extend(
                    f"{function.name}: {setting} in local.settings.json.sample: {p}"
                    for p in ncrontab_problems(sample_values[setting])
                )
            if setting not in defaults:
                problems.append(
                    f"{function.name}: {setting} has no default in shared/config.py Settings"
                )
            else:
                problems.extend(
                    f"{function.name}: default of {setting}: {p}"
                    for p in ncrontab_problems(str(defaults[setting]))
                )
    return problems


def duplicate_function_names(scan: BlueprintScan) -> dict[str, list[str]]:
    """Names (case-folded, as the host compares them) declared more than once -> modules."""
    modules_by_name: dict[str, list[str]] = defaultdict(list)
    for module, names in scan.functions_by_module.items():
        for name in names:
            modules_by_name[name.lower()].append(module)
    return {name: modules for name, modules in modules_by_name.items() if len(modules) > 1}


# ---------------------------------------------------------------------------- the real app


def test_function_names_are_unique_across_blueprints() -> None:
    scan = repository_blueprint_scan()

    assert scan.errors_by_module == {}
    assert duplicate_function_names(scan) == {}


def test_indexed_function_names_are_unique() -> None:
    names = [name.lower() for name in repository_app_report().function_names]

    assert names
    assert len(names) == len(set(names))


def test_every_timer_of_the_app_has_a_valid_schedule() -> None:
    report = repository_app_report()
    assert report.load_failure() is None, report.load_failure()

    assert timer_problems(report.functions, sample_setting_values(), settings_defaults()) == []


def test_schedule_settings_have_valid_defaults_and_sample_values() -> None:
    schedule_fields = {
        name: info for name, info in Settings.model_fields.items() if name.endswith("_schedule")
    }
    sample_values = sample_setting_values()

    assert schedule_fields, "shared/config.py Settings declares no *_schedule field"
    for name, info in schedule_fields.items():
        assert info.alias, f"{name} has no app setting name (alias)"
        assert not info.is_required(), f"{info.alias} needs a default"
        assert ncrontab_problems(str(info.default)) == [], (info.alias, info.default)
        assert info.alias in sample_values, f"{info.alias} missing from local.settings.json.sample"
        assert ncrontab_problems(sample_values[info.alias]) == [], info.alias


# ---------------------------------------------------------------- the checks themselves


def test_duplicate_names_across_blueprints_are_found() -> None:
    scan = BlueprintScan(
        functions_by_module={
            "blueprints.http_api": ["create_order", "get_order"],
            "blueprints.imports": ["Create_Order", "import_chunk"],
            "blueprints.schedules": ["expire_unpaid_orders"],
        }
    )

    assert duplicate_function_names(scan) == {
        "create_order": ["blueprints.http_api", "blueprints.imports"]
    }


TIMER_APP_TEMPLATE = """
    import azure.functions as func

    app = func.FunctionApp()


    @app.function_name("expire_unpaid_orders")
    @app.timer_trigger(arg_name="timer", schedule="{first}", use_monitor=True)
    def expire_unpaid_orders(timer: func.TimerRequest) -> None:
        pass


    @app.function_name("daily_sales_report")
    @app.timer_trigger(arg_name="timer", schedule="{second}", {second_options})
    def daily_sales_report(timer: func.TimerRequest) -> None:
        pass
"""


def _timer_app(
    tmp_path: Path, first: str, second: str, second_options: str
) -> list[IndexedFunction]:
    source = TIMER_APP_TEMPLATE.format(first=first, second=second, second_options=second_options)
    (tmp_path / "function_app.py").write_text(textwrap.dedent(source), encoding="utf-8")
    report = index_app_in_subprocess(tmp_path)
    assert report.load_failure() is None, report.load_failure()
    return list(report.functions)


def test_timer_check_accepts_setting_references_and_literals(tmp_path: Path) -> None:
    functions = _timer_app(
        tmp_path, "%EXPIRE_UNPAID_ORDERS_SCHEDULE%", "0 30 1 * * *", "run_on_startup=False"
    )

    assert len([f for f in functions if f.bindings_of_type(TIMER_TRIGGER)]) == 2
    assert timer_problems(functions, sample_setting_values(), settings_defaults()) == []


def test_timer_check_rejects_what_the_host_or_design_would(tmp_path: Path) -> None:
    functions = _timer_app(
        tmp_path, "%ORDERFLOW_UNKNOWN_SCHEDULE%", "*/5 * * * *", "run_on_startup=True"
    )

    problems = timer_problems(functions, sample_setting_values(), settings_defaults())

    expected = [
        "expire_unpaid_orders: ORDERFLOW_UNKNOWN_SCHEDULE is missing from local.settings.json",
        "expire_unpaid_orders: ORDERFLOW_UNKNOWN_SCHEDULE has no default in shared/config.py",
        "daily_sales_report: runOnStartup must stay off",
        "daily_sales_report: '*/5 * * * *' has 5 fields",
    ]
    for fragment in expected:
        assert any(problem.startswith(fragment) for problem in problems), (fragment, problems)
    assert len(problems) == len(expected), problems


def test_timer_check_validates_the_resolved_values() -> None:
    timer = {"type": TIMER_TRIGGER, "direction": "IN", "name": "timer", "schedule": "%S%"}
    function = IndexedFunction(name="sweep", script_file="function_app.py", bindings=(timer,))

    problems = timer_problems([function], {"S": "0 0 25 * * *"}, {"S": "0 */5 * * *"})

    assert problems == [
        "sweep: S in local.settings.json.sample: hour: 25 is outside 0-23",
        "sweep: default of S: '0 */5 * * *' has 5 fields; NCRONTAB needs 6: "
        "second minute hour day-of-month month day-of-week",
    ]
