"""``kubectl get gp -o wide`` answers "is it working" (issue #11, point 5).

The server renders the printer columns (a Table request, what kubectl asks for); the
operator fills the fields they read: namespaces matched and hardened, the Ready reason,
and ``status.lastReconcileTime``, stamped on each status write.
"""

from __future__ import annotations

import datetime

import e2e_kube as kube_api
import e2e_scenario
import pytest

pytestmark = pytest.mark.e2e

Scenario = e2e_scenario.Scenario


def test_wide_columns_show_matched_hardened_reason_and_last_reconcile(scenario: Scenario) -> None:
    policy = scenario.policy("wide")
    name = policy["metadata"]["name"]
    namespaces = [scenario.namespace(f"w{i}")["metadata"]["name"] for i in range(2)]
    for ns in namespaces:
        scenario.wait_hardened(ns, name)

    def row() -> dict[str, object] | None:
        table = scenario.kube.request(
            "GET", kube_api.policies(name), accept=kube_api.TABLE, query={"includeObject": "None"}
        )
        columns = table["columnDefinitions"]
        cells = dict(zip([c["name"] for c in columns], table["rows"][0]["cells"], strict=True))
        wide = {c["name"] for c in columns if c.get("priority", 0) == 1}
        assert wide == {"Matched", "Reason", "Last Reconcile"}, wide
        done = cells["Namespaces"] == 2 and cells["Matched"] == 2 and cells["Last Reconcile"]
        return cells if done and cells["Reason"] == "Reconciled" else None

    cells = scenario.wait(row, f"{name}: 2 namespaces matched and hardened, Reconciled")
    stamp = scenario.read_policy(name)["status"]["lastReconcileTime"]
    written = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    age = datetime.datetime.now(datetime.UTC) - written
    assert datetime.timedelta(seconds=-5) < age < datetime.timedelta(minutes=10), stamp
    assert cells["Ready"] == "True"
