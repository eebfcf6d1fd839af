"""The fault and attack scenarios behind RELIABILITY.md: which tests try each one, and the table of their last run.

    scripts/reliability.py selection            # the pytest node ids (and files) to run, one a line
    scripts/reliability.py render REPORT [--out RELIABILITY.md] [--started EPOCH] [--budget SECONDS]

``scripts/reliability`` runs the selection with ``PEEKAPI_RELIABILITY_REPORT=REPORT`` and the plugin
``tests.support.reliability`` loaded, then renders. REPORT holds JSON lines of two kinds: ``counts`` (what a test
counted, from ``report()``) and ``outcome`` (each test's pass/fail, from the plugin). Nothing here is hard-coded
but the catalogue below: every figure in the table comes from the run's lines, and a test that did not run says
so ("not run", "pending: <file>").
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Test:
    """One test function (``path::name``, all its parameters), or every test of ``path`` whose name holds one of
    ``match`` (all of the file's tests when ``match`` is empty): for files still being written."""

    target: str
    what: str = ""
    match: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return self.target.split("::", 1)[0]

    @property
    def is_file(self) -> bool:
        return "::" not in self.target


@dataclass(frozen=True)
class Scenario:
    name: str
    done: str
    tests: tuple[Test, ...] = ()
    untested: str = ""  # why there is no test, for a scenario without one


@dataclass
class Section:
    title: str
    scenarios: list[Scenario] = field(default_factory=list)


P = "tests/core/test_process.py::"
D = "tests/core/test_delivery.py::"
S = "tests/core/test_spool.py::"
SH = "tests/core/test_spool_sharing.py::"
L = "tests/core/test_lifecycle.py::"
IH = "tests/server/test_ingest_http.py"

SDK = Section(
    "SDK (`peekapi`): a real child process or client against a loopback ingest server",
    [
        Scenario(
            "SIGTERM",
            "the app is stopped by SIGTERM (or SIGINT) while it holds events in memory; every event id is checked "
            "at the ingest",
            (
                Test(P + "test_sigterm_delivers_everything_and_still_terminates", "300 held events, then SIGTERM"),
                Test(P + "test_sigterm_chains_to_the_apps_previous_handler", "the app's own handler runs after"),
                Test(
                    P + "test_sigterm_under_a_graceful_server_still_records_the_requests_in_flight",
                    "a graceful server keeps serving after the signal",
                ),
                Test(
                    "tests/core/test_graceful_signal.py::test_sigterm_under_a_graceful_server_records_requests_in_flight",
                    "the same, 20 events before and 5 in flight",
                ),
                Test(P + "test_sigint_flushes_then_raises_keyboardinterrupt", "SIGINT: flushed, then Ctrl-C as usual"),
                Test(
                    P + "test_sigterm_in_the_middle_of_tracking_neither_deadlocks_nor_loses",
                    "the signal lands while a loop tracks as fast as it can",
                ),
                Test(
                    P + "test_a_second_sigterm_during_the_flush_neither_hangs_nor_loses",
                    "a second SIGTERM while the first is flushing to a slow collector",
                ),
                Test(
                    P + "test_sigterm_landing_inside_a_peekapi_call_on_the_main_thread",
                    "the signal lands inside stats() on the main thread",
                ),
                Test(
                    P + "test_sigterm_inside_a_shutdown_waiting_for_another_threads_shutdown",
                    "the signal lands inside a shutdown() waiting for another",
                ),
            ),
        ),
        Scenario(
            "SIGTERM while the collector is down or hangs",
            "SIGTERM with the collector refusing connections, or holding the request; the next start on the same "
            "spool delivers",
            (
                Test(
                    P + "test_sigterm_while_the_collector_is_down_spools_then_a_restart_delivers",
                    "connection refused: spooled within the exit deadline",
                ),
                Test(
                    P + "test_sigterm_while_the_collector_hangs_spools_the_batch_in_flight",
                    "the collector answers 6 s late: the batch in flight is spooled",
                ),
            ),
        ),
        Scenario(
            "SIGKILL of the app",
            "the app is killed with SIGKILL: what it held in memory is the most it may lose; what it had spooled "
            "is delivered",
            (
                Test(
                    P + "test_sigkill_loses_at_most_what_is_in_memory",
                    "killed under steady traffic (2,000/s and 40/s); bound = batch_size + the last interval",
                ),
                Test(
                    P + "test_sigkill_during_an_outage_keeps_the_spool_and_a_restart_delivers_it",
                    "killed during an outage with 1,000 spooled",
                ),
                Test(
                    SH + "test_a_claim_left_by_a_killed_process_is_taken_over",
                    "killed while sending a spool file it had claimed; another process takes it over",
                ),
            ),
        ),
        Scenario(
            "Interpreter exit",
            "the program ends normally (or with sys.exit from a thread), with the collector up or down",
            (
                Test(P + "test_a_plain_interpreter_exit_delivers_everything"),
                Test(P + "test_a_plain_exit_while_the_collector_is_down_spools_quickly"),
                Test(P + "test_sys_exit_delivers_what_a_client_started_off_the_main_thread_holds"),
            ),
        ),
        Scenario(
            "fork",
            "a client created before os.fork() / multiprocessing (fork): parent and child each deliver their own "
            "events once",
            (
                Test(
                    P + "test_a_client_created_before_fork_delivers_each_event_once",
                    "child ends by os._exit, sys.exit, multiprocessing, multiprocessing without flush",
                ),
                Test(
                    P + "test_sigterm_to_a_forked_child_flushes_the_childs_events_only", "the forked child is SIGTERMed"
                ),
            ),
        ),
        Scenario(
            "gunicorn workers with --preload; uvicorn",
            "the example apps under real servers (gunicorn -w 2 --preload for WSGI, uvicorn for ASGI), stopped with "
            "SIGTERM; every request must arrive exactly once",
            (Test("tests/middleware/test_servers.py::test_every_request_arrives_exactly_once"),),
        ),
        Scenario(
            "Collector down (outage) and back",
            "the collector refuses or answers 503; events go to the spool and are delivered once it is back",
            (
                Test(S + "test_outage_spools_then_next_start_delivers_exactly_once", "connection refused, next start"),
                Test(
                    SH + "test_an_idle_process_recovers_its_spool_periodically_once_the_collector_is_back",
                    "503, then back; the process gets no traffic of its own",
                ),
                Test(
                    L + "test_memory_is_bounded_and_overflows_to_the_spool",
                    "503 throughout with a memory of 50",
                ),
            ),
        ),
        Scenario(
            "Slow collector",
            "the collector answers slowly: memory overflows to the spool, nothing is dropped; shutdown keeps its "
            "deadline",
            (
                Test(L + "test_a_slow_collector_makes_memory_overflow_to_the_spool_not_drop", "50 ms per batch"),
                Test(L + "test_shutdown_deadline_spools_what_a_slow_collector_did_not_take", "1.5 s per batch"),
            ),
        ),
        Scenario(
            "5xx / failing collector",
            "408, 429, 500, 502, 503, 504 are retried under the same batch id",
            (Test(D + "test_retryable_statuses_are_retried_with_the_same_batch_id"),),
        ),
        Scenario(
            "Connection resets",
            "the collector resets the connection (RST) after reading the request, twice",
            (Test(D + "test_network_errors_and_resets_are_retried"),),
        ),
        Scenario(
            "429 and Retry-After",
            "429 is retried (same batch id, in the 5xx row above); Retry-After is honoured and a flush() cuts a long "
            "one short. Retry-After is tested on 503 answers, not on a 429 carrying it",
            (
                Test(D + "test_retry_after_is_honoured", "503 + Retry-After: 1"),
                Test(D + "test_flush_interrupts_a_retry_wait", "503 + Retry-After: 120, then flush()"),
            ),
        ),
        Scenario(
            "Other 4xx are final",
            "400, 401, 403, 404, 413, 422: dropped and counted as rejected, never re-sent (also not after a restart)",
            (Test(D + "test_other_4xx_are_final"),),
        ),
        Scenario(
            "Several processes sharing a spool",
            "three processes spool through an outage into one directory, then recover it together; claims by "
            "atomic rename",
            (
                Test(SH + "test_three_processes_share_one_spool_through_an_outage_and_a_restart"),
                Test(SH + "test_running_processes_recover_a_shared_spool_once_the_collector_is_back"),
            ),
        ),
        Scenario(
            "Redirect",
            "a collector answering 301/302/307/308 with a Location pointing at a second server: never followed "
            "(the key is never sent elsewhere), the batch dropped as rejected",
            (Test(D + "test_a_redirect_is_never_followed"),),
        ),
        Scenario(
            "Huge or hostile response body",
            "a collector answering with a gzip bomb or a huge body",
            untested="not tested: the SDK reads at most MAX_RESPONSE_BYTES of an answer and never decompresses it, "
            "but no test sends it such an answer",
        ),
        Scenario(
            "Spool unwritable (read-only disk)",
            "the spool directory cannot be created or written",
            (
                Test(
                    S + "test_unwritable_spool_is_counted_not_raised", "a file where the directory should be (ENOTDIR)"
                ),
            ),
            untested="a read-only mount (EROFS) or a directory without write permission is not tested as such",
        ),
        Scenario(
            "Disk full",
            "writes to the spool fail; the spool is full",
            (
                Test(S + "test_full_disk_is_counted_not_raised", "RLIMIT_FSIZE makes the write fail with EFBIG"),
                Test(S + "test_spool_size_is_bounded_and_overflow_is_counted", "max_storage_bytes reached"),
                Test(L + "test_drops_when_memory_and_spool_are_both_full", "memory and spool both full"),
            ),
            untested="a real ENOSPC (a full filesystem) is not tested; EFBIG stands in for it",
        ),
        Scenario(
            "Damaged spool files",
            "garbage, non-batch JSON and a line cut short by a crash in spool files",
            (
                Test(S + "test_corrupt_and_truncated_lines_are_skipped_and_counted"),
                Test(SH + "test_corrupt_and_truncated_lines_are_skipped_counted_and_the_rest_recovered"),
                Test(S + "test_spool_reads_every_valid_line_among_garbage", "property test (Hypothesis)"),
            ),
        ),
        Scenario(
            "Many threads",
            "8 threads track 500 events each at once",
            (Test(L + "test_track_from_many_threads_loses_nothing"),),
        ),
        Scenario(
            "Bad options",
            "invalid options raise ValueError naming the option, when the client or middleware is built",
            (
                Test("tests/core/test_config.py::test_bad_values_name_the_option"),
                Test("tests/core/test_config.py::test_bad_api_keys_are_rejected_without_echoing_them"),
                Test("tests/core/test_config.py::test_missing_api_key_is_a_clear_error"),
                Test("tests/core/test_config.py::test_unknown_options_are_rejected_with_the_known_ones_listed"),
                Test("tests/core/test_config.py::test_options_must_be_a_mapping"),
                Test("tests/core/test_config.py::test_batch_size_cannot_exceed_the_buffer"),
                Test("tests/core/test_endpoint.py::test_rejected_urls", "endpoint URLs"),
                Test("tests/core/test_endpoint.py::test_private_addresses_are_rejected_in_every_spelling"),
                Test("tests/middleware/test_asgi.py::test_bad_options_fail_when_the_middleware_is_built"),
                Test("tests/middleware/test_wsgi.py::test_bad_options_fail_when_the_middleware_is_built"),
                Test("tests/middleware/test_starlette.py::test_bad_options_fail_when_the_app_is_built"),
                Test("tests/middleware/test_django.py::test_bad_settings_fail_at_start_up"),
            ),
        ),
        Scenario(
            "Private addresses (SSRF)",
            "an endpoint host name that resolves to a private address is never contacted",
            (
                Test("tests/core/test_endpoint.py::test_a_host_name_resolving_to_a_private_address_is_never_contacted"),
                Test("tests/core/test_endpoint.py::test_connect_time_check_refuses_private_resolutions"),
            ),
        ),
        Scenario(
            "Bad events at track()",
            "track() never raises: unreadable events are dropped and counted, repairable ones repaired, oversized "
            "ones lose metadata first",
            (
                Test("tests/core/test_event.py::test_malformed_events_do_not_poison_their_batch"),
                Test(L + "test_track_never_raises"),
                Test("tests/core/test_event.py::test_unrepairable_events_are_dropped"),
                Test("tests/core/test_event.py::test_oversized_event_loses_metadata_first_then_is_dropped"),
                Test("tests/core/test_event.py::test_any_input_yields_valid_wire_json_or_a_counted_drop", "Hypothesis"),
            ),
        ),
    ],
)

COLLECTOR = Section(
    "Collector (`peekapi serve`): a real collector over HTTP on 127.0.0.1, on SQLite and on PostgreSQL",
    [
        Scenario(
            "SIGKILL of the collector under load",
            "the collector is killed with SIGKILL while SDKs send",
            (Test("tests/server/test_durability.py"),),
        ),
        Scenario(
            "SIGTERM / normal stop of the collector",
            "queued events are written before the collector exits",
            (Test(IH, match=("shutdown", "sigterm")),),
        ),
        Scenario(
            "Lost acknowledgement",
            "a proxy loses the collector's answer after the batch was stored; the SDK retries the same batch id",
            (
                Test("tests/server/test_e2e.py::test_a_retry_after_a_lost_response_is_not_double_counted"),
                Test(IH, match=("retried_batch",)),
                Test("tests/server/test_store.py::test_concurrent_retries_of_one_batch_store_it_once"),
                Test("tests/server/test_scaleout.py::test_collectors_sharing_postgresql_store_each_batch_once"),
            ),
        ),
        Scenario(
            "Full write queue: 503 + Retry-After",
            "the database cannot keep up: the collector answers 503 with Retry-After",
            (Test(IH, match=("full_queue", "503")),),
        ),
        Scenario(
            "gzip: bombs and multi-member bodies",
            "oversized bodies, gzip bombs, corrupt or multi-member gzip",
            (
                Test(IH, match=("gzip", "413", "limit")),
                Test("tests/server/test_hostile.py", match=("gzip", "member", "decompressed")),
            ),
        ),
        Scenario(
            "Bad bodies and encodings",
            "bodies that are not JSON or not an array, unknown Content-Encoding",
            (
                Test(IH, match=("bad_bodies", "415", "encoding")),
                Test("tests/server/test_events.py", match=("not_an_array", "not_json")),
            ),
        ),
        Scenario(
            "Bad and hostile events",
            "events the collector cannot understand are rejected one by one inside a 200",
            (
                Test(IH, match=("per_event", "rejected")),
                Test("tests/server/test_events.py", match=("bad_events", "hostile", "unreadable", "not_utf8")),
                Test("tests/server/test_hostile.py", match=("hostile", "surrogate", "refuses")),
            ),
        ),
        Scenario("Fuzzing", "random bodies and events at the ingest", (Test("tests/server/test_fuzz.py"),)),
        Scenario(
            "Slowloris",
            "many connections drip their headers or bodies a byte at a time while a normal client ingests and reads",
            (Test("tests/server/test_slowloris.py"),),
        ),
        Scenario(
            "Authorization",
            "missing, unknown or revoked keys and tokens; a token reads only its own project; keys cannot read, "
            "tokens cannot ingest; injection strings in parameters, headers and event fields",
            (
                Test(IH, match=("401", "keys")),
                Test("tests/server/test_readapi.py", match=("token", "readable")),
                Test("tests/server/test_authz.py"),
            ),
        ),
    ],
)

SECTIONS = [SDK, COLLECTOR]


# -- selection ----------------------------------------------------------------------------------------------------


def all_tests() -> list[Test]:
    return [t for section in SECTIONS for s in section.scenarios for t in s.tests]


def selection(root: Path = ROOT) -> list[str]:
    """What to hand pytest: each test function, or whole files for ``match`` entries; files that do not exist
    (yet) are left out. Each target once, in catalogue order."""
    out: list[str] = []
    for test in all_tests():
        if not (root / test.path).is_file():
            continue
        target = test.path if test.match else test.target
        if target not in out:
            out.append(target)
    # A whole file makes its single tests redundant (pytest would run them twice).
    files = {t for t in out if "::" not in t}
    return [t for t in out if "::" not in t or t.split("::", 1)[0] not in files]


# -- rendering ----------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    outcome: str
    properties: dict[str, int]


def read_report(path: Path) -> tuple[dict[str, Outcome], dict[str, list[tuple[str, dict[str, int]]]]]:
    """Outcomes by node id, and the counts each node id reported (label, counts), in the order reported."""
    outcomes: dict[str, Outcome] = {}
    counts: dict[str, list[tuple[str, dict[str, int]]]] = {}
    if not path.exists():
        return outcomes, counts
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("kind") == "outcome":
            previous = outcomes.get(row["nodeid"])
            if previous is not None and previous.outcome == "failed":
                continue  # a failed call stays a failure when its teardown errs too
            outcomes[row["nodeid"]] = Outcome(row["outcome"], dict(row.get("properties") or {}))
        elif row.get("kind") == "counts":
            counts.setdefault(row["nodeid"], []).append((str(row["scenario"]), dict(row["counts"])))
    return outcomes, counts


def function_of(nodeid: str) -> str:
    """``path::name`` without its parameters."""
    return nodeid.split("[", 1)[0]


def param_of(nodeid: str) -> str:
    return nodeid[len(function_of(nodeid)) :]


def functions_for(test: Test, outcomes: dict[str, Outcome]) -> list[str]:
    """The test functions (``path::name``) a catalogue entry stands for, as found in this run."""
    if not test.is_file and not test.match:
        return [test.target]
    found: list[str] = []
    for nodeid in outcomes:
        function = function_of(nodeid)
        if not function.startswith(test.path + "::") or function in found:
            continue
        name = function.split("::")[-1].lower()
        if not test.match or any(word.lower() in name for word in test.match):
            found.append(function)
    return found


def format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name.replace('_', ' ')} {value:,}" for name, value in counts.items())


def counts_cell(
    function: str, outcomes: dict[str, Outcome], counts: dict[str, list[tuple[str, dict[str, int]]]]
) -> str:
    parts: list[str] = []
    nodeids = sorted({n for n in list(outcomes) + list(counts) if function_of(n) == function})
    for nodeid in nodeids:
        param = param_of(nodeid)
        reported = counts.get(nodeid, [])
        latest: dict[str, dict[str, int]] = {}
        for label, values in reported:  # the last line of each label (a helper may report more than once)
            latest.pop(label, None)
            latest[label] = values
        if not latest and nodeid in outcomes and outcomes[nodeid].properties:
            latest["recorded"] = outcomes[nodeid].properties
        for label, values in latest.items():
            prefix = f"`{param}` " if param else ""
            parts.append(f"{prefix}{label}: {format_counts(values)}")
    return "<br>".join(parts) if parts else "-"


def result_cell(function: str, outcomes: dict[str, Outcome]) -> str:
    found = {n: o.outcome for n, o in outcomes.items() if function_of(n) == function}
    if not found:
        return "not run"
    kinds = sorted(set(found.values()))
    if kinds == ["passed"]:
        if len(found) == 1:
            return "pass"
        if len(found) <= 3:  # the engines of a collector test, the two rates of the SIGKILL test...
            return "pass (" + ", ".join(f"`{param_of(n)}`" for n in found) + ")"
        return f"pass ({len(found)}/{len(found)})"
    if len(found) == 1:
        return {"failed": "**FAIL**", "error": "**ERROR**"}.get(kinds[0], kinds[0])
    passed = sum(1 for o in found.values() if o == "passed")
    others = [
        f"`{param_of(n)}` {o.upper() if o in ('failed', 'error') else o}" for n, o in found.items() if o != "passed"
    ]
    return f"pass {passed}/{len(found)}; " + ", ".join(others)


def command_cell(function: str) -> str:
    return f"`.venv/bin/pytest '{function}'`"


def escape(text: str) -> str:
    return text.replace("|", "\\|")


def render(
    report: Path,
    started: float | None = None,
    budget: float | None = None,
    root: Path = ROOT,
    cut_off: bool = False,
) -> tuple[str, list[str]]:
    """RELIABILITY.md's text, and the scenarios without a test (untested or pending). ``cut_off``: the run was
    stopped by its time budget (said at the top; the tests it did not reach say "not run")."""
    outcomes, counts = read_report(report)
    stamp = datetime.datetime.fromtimestamp(report.stat().st_mtime if report.exists() else 0, datetime.timezone.utc)
    elapsed = f", {stamp.timestamp() - started:.0f} s" if started else ""
    total = len(outcomes)
    by_kind: dict[str, int] = {}
    for o in outcomes.values():
        by_kind[o.outcome] = by_kind.get(o.outcome, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(by_kind.items()))
    gaps: list[str] = []
    lines = [
        "# Reliability: every fault and attack scenario tried, and what the last run counted",
        "",
        "Generated by `scripts/reliability` (run it after `./scripts/test` has made `.venv`; it takes a few minutes"
        + (f", at most {budget:.0f} s" if budget else "")
        + "). Do not edit by hand: the figures come from the tests themselves "
        "(`tests/support/reliability.py`: a test reports what it counted, right where it checks it).",
        "",
        f"**Last run:** {stamp:%Y-%m-%d %H:%M} UTC on {platform.node() or 'this machine'} "
        f"({os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}{elapsed}): "
        f"{total} test cases, {summary or 'none ran'}. The machine is shared with other work, so timing figures "
        "(waits, flush times) are noisy; event counts are exact."
        + (' **The run was stopped by its time budget: rows saying "not run" were not reached.**' if cut_off else ""),
        "",
        "What the counts mean:",
        "",
        "* **tracked**: events the application handed to the SDK (`track()` or a request through the middleware);"
        " **requests**: HTTP requests made to an example app.",
        "* **received**: distinct events that reached the ingest in an accepted (2xx) batch, each batch id counted"
        " once, as a deduplicating collector stores them.",
        "* **lost**: tracked events that never arrived at all (neither delivered nor left in a spool that the next"
        " start delivered). For SIGKILL the SDK promises a bound, not zero: **bound** is what the app may hold in"
        " memory (batch size plus what it tracked in the last flush interval).",
        "* **doubled**: events stored twice after deduplication by batch id, i.e. sent again under a different"
        " batch id: a collector would count them twice. Must be 0.",
        "* **resent**: extra copies on the wire under the *same* batch id (a retry after a lost or late answer, a"
        " spool claim taken over); harmless: the collector stores a batch id once.",
        "* **spooled** / **recovered**: events written to the disk spool / sent from it by a later start or"
        " another process; **dropped …**: events the SDK gave up on, by reason (`stats()['dropped']`), each"
        " counted, never silent.",
        "",
        "Collector rows run on both engines: `[sqlite]` is a new SQLite file, `[postgres]` a real PostgreSQL"
        " (`PEEKAPI_TEST_POSTGRES_URL`; `scripts/reliability` starts a throwaway one when it is not set); a"
        " collector row without those two runs on one engine only (SQLite unless it says PostgreSQL) or on"
        " none (the event parser's own tests). A"
        ' collector test that does not report counts shows "-": its assertions are the figures (e.g. every event'
        " posted is stored once).",
        "",
    ]
    for section in SECTIONS:
        lines += [
            f"## {section.title}",
            "",
            "| scenario | what is done | test | counts (last run) | result | reproduce |",
            "|---|---|---|---|---|---|",
        ]
        for scenario in section.scenarios:
            rows: list[tuple[str, str, str, str, str]] = []
            for test in scenario.tests:
                if not (root / test.path).is_file():
                    rows.append((test.what or f"`{test.path}`", "-", f"pending: `{test.path}`", "-", ""))
                    gaps.append(f"{scenario.name}: pending ({test.path} does not exist yet)")
                    continue
                functions = functions_for(test, outcomes)
                if not functions:
                    rows.append(
                        (
                            test.what or f"`{test.path}`",
                            "-",
                            ("no test matching " + ", ".join(test.match) if test.match else "no test of it") + " ran",
                            "-",
                            "",
                        )
                    )
                    gaps.append(f"{scenario.name}: no test of {test.path} matching {test.match or 'anything'} ran")
                    continue
                for function in functions:
                    name = function.split("::")[-1]
                    rows.append(
                        (
                            f"`{name}`" + (f": {test.what}" if test.what else ""),
                            counts_cell(function, outcomes, counts),
                            result_cell(function, outcomes),
                            command_cell(function),
                            function,
                        )
                    )
            if scenario.untested:
                rows.append((scenario.untested, "-", "**not tested**" if not scenario.tests else "gap", "-", ""))
                gaps.append(f"{scenario.name}: {scenario.untested}")
            first = True
            for what, cells, result, command, _ in rows:
                lead = (f"**{scenario.name}**", escape(scenario.done)) if first else ("", "")
                lines.append(f"| {lead[0]} | {lead[1]} | {escape(what)} | {escape(cells)} | {result} | {command} |")
                first = False
        lines.append("")
    lines += [
        "## Regenerate",
        "",
        "```sh",
        "./scripts/test            # once: makes .venv with every extra",
        "scripts/reliability       # runs the tests above, rewrites RELIABILITY.md",
        "```",
        "",
    ]
    return "\n".join(lines), gaps


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("selection", help="print the pytest targets, one a line")
    r = sub.add_parser("render", help="write RELIABILITY.md from a report file")
    r.add_argument("report", type=Path)
    r.add_argument("--out", type=Path, default=ROOT / "RELIABILITY.md")
    r.add_argument("--started", type=float, default=None, help="epoch seconds the run started (for its duration)")
    r.add_argument("--budget", type=float, default=None, help="the run's time budget in seconds (mentioned)")
    r.add_argument("--cut-off", action="store_true", help="the run was stopped by its budget")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.command == "selection":
        print("\n".join(selection()))
        return 0
    text, gaps = render(args.report, args.started, args.budget, cut_off=args.cut_off)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    for gap in gaps:
        print(f"  gap: {gap}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
