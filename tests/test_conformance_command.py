"""``turnout conformance``: agrees with a real nats-server and with a real cluster, names
every kind of disagreement, replays a seed, and fails cleanly when it cannot run."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from turnout.testing import conformance
from turnout.testing.conformance import ConformanceReport, _compare, _plan, _Subscription
from turnout.testing.nats_server import NatsCluster, NatsServer, free_port


def turnout_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnout", "conformance", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_real_nats_server_agrees_over_ten_thousand_subjects(nats_server: NatsServer) -> None:
    done = turnout_command("--nats", nats_server.url, "--subjects", "10000", "--seed", "14")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "10000 published" in done.stdout
    assert "seed:            14 (replay with --seed 14)" in done.stdout
    assert "disagreements:   none" in done.stdout and done.stdout.endswith("agrees\n")


def test_a_cluster_agrees_with_subscribers_on_every_member(nats_cluster: NatsCluster) -> None:
    report = conformance.run(nats_cluster.urls, subjects=2000, subscriptions=30, seed=3)
    assert report.ok, report.render()
    assert report.deliveries_seen == report.deliveries_expected > 0


def test_a_seed_replays_the_same_run() -> None:
    assert _plan(random.Random(5), 40, 100) == _plan(random.Random(5), 40, 100)
    assert _plan(random.Random(5), 40, 100) != _plan(random.Random(6), 40, 100)


def test_every_kind_of_disagreement_is_named() -> None:
    subs = [
        _Subscription("a.*", None, 0),  # 0
        _Subscription("a.>", None, 1),  # 1
        _Subscription("b", None, 2),  # 2
        _Subscription("a.b", "q1", 0),  # 3
        _Subscription("*.b", "q1", 1),  # 4
        _Subscription("b", "q2", 2),  # 5
    ]
    subjects = ["a.b", "a.b", "a.b", "a.b"]
    report = ConformanceReport(["nats://x"], seed=1, subjects=len(subjects))
    received = [
        [0, 1, 2, 3],  # sub 0: every message
        [0, 0, 2, 3],  # sub 1: message 0 twice, message 1 missing
        [3],  # sub 2 ("b"): message 3, which it does not match
        [0, 2],  # q1: message 0 once; message 2 twice (with sub 4)
        [2],
        [3],  # q2 ("b"): does not match
    ]
    _compare(report, subs, subjects, received)
    found = {str(example) for example in report.examples}
    assert found == {
        "a.b: delivered 2 times to 'a.>'",
        "a.b: not delivered to 'a.>'",
        "a.b: delivered to 'b', which does not match",
        "a.b: queue group q1 ('*.b', 'a.b') got it 0 times, not once",
        "a.b: queue group q1 ('*.b', 'a.b') got it 2 times, not once",
        "a.b: delivered to 'b' (queue q2), which does not match",
    }
    assert not report.ok and report.disagreements == 7  # q1 missed messages 1 and 3
    assert "DISAGREEMENTS:   7" in report.render() and report.render().endswith("DISAGREES\n")


def test_an_unreachable_server_or_bad_counts_exit_2() -> None:
    unreachable = turnout_command("--nats", f"nats://127.0.0.1:{free_port()}", "--timeout", "5")
    assert unreachable.returncode == 2 and "cannot connect" in unreachable.stderr
    too_many = turnout_command("--nats", "nats://127.0.0.1:1", "--subjects", "0")
    assert too_many.returncode == 2 and "subjects must be within" in too_many.stderr


def test_run_refuses_out_of_bounds_arguments() -> None:
    with pytest.raises(ValueError, match="subscriptions"):
        conformance.run(["nats://x"], subscriptions=conformance.MAX_SUBSCRIPTIONS + 1)
    with pytest.raises(ValueError, match="timeout"):
        conformance.run(["nats://x"], timeout=0)
    with pytest.raises(ValueError, match="server"):
        conformance.run([])
