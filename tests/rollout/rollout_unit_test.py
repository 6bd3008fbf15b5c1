#!/usr/bin/env python3
"""deploy/rollout without hosts: inventory validation, the batch order, the
health verdict on `deltasync agents --json` entries, the rendered agent.toml
and the command line's refusals (exit 2 before anything is asked)."""

import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "deploy", "rollout"))
sys.dont_write_bytecode = True

from rolloutlib import gates, inventory, main  # noqa: E402

GOOD = """# comment line
store-1  root@10.0.0.1        store-1  prices:store-1,products   # trailing comment
store-2  deploy@store-2:2222  store-2  prices:store-2,products
hq       hq.internal          hq       prices,products
"""


class InventoryTest(unittest.TestCase):
    def test_good_inventory_parses_in_file_order(self):
        hosts = inventory.parse(GOOD, "inv")
        self.assertEqual([h.name for h in hosts], ["store-1", "store-2", "hq"])
        self.assertEqual(hosts[0].grants, [("prices", "store-1"), ("products", "*")])
        self.assertEqual((hosts[1].ssh.user, hosts[1].ssh.host, hosts[1].ssh.port), ("deploy", "store-2", 2222))
        self.assertIsNone(hosts[2].ssh.user)
        self.assertEqual(hosts[0].line, 2)
        self.assertEqual(hosts[0].grants_text(), "prices:store-1,products")

    def test_every_problem_is_named_with_its_line(self):
        text = ("h1 root@a store-1\n"                     # 3 fields
                "h2 root@b:70000 store-2 prices\n"        # port
                "h3 root@c bad/id prices\n"               # agent id
                "h4 root@d store-4 Prices\n"              # type
                "h5 root@e store-5 prices:_all\n"         # reserved partition
                "h6 root@f store-6 prices,prices\n"       # type twice
                "h7 root@g store-7 prices\n"
                "h7 root@h store-7 prices\n")             # host and agent reused
        with self.assertRaises(inventory.InventoryError) as e:
            inventory.parse(text, "inv")
        msg = str(e.exception)
        for expected in ("inv:1: expected 4 fields", "inv:2: ssh address 'root@b:70000'",
                         "inv:3: agent id 'bad/id'", "inv:4: grants: type 'Prices'",
                         "inv:5: grants: partition '_all'", "inv:6: grants: type 'prices' appears twice",
                         "inv:8: host 'h7' is already used on line 7",
                         "inv:8: agent id 'store-7' is already used on line 7"):
            self.assertIn(expected, msg)

    def test_empty_inventory_is_refused(self):
        with self.assertRaises(inventory.InventoryError) as e:
            inventory.parse("# nothing\n\n", "inv")
        self.assertIn("no hosts", str(e.exception))


class OrderTest(unittest.TestCase):
    def hosts(self, n):
        return inventory.parse("".join(f"h{i} root@h{i} a{i} t\n" for i in range(1, n + 1)))

    def names(self, order):
        return [[h.name for h in b] for b in order]

    def test_canary_then_batches_of_n(self):
        order = main.batches_of(self.hosts(6), None, 2, 0)
        self.assertEqual(self.names(order), [["h1"], ["h2", "h3"], ["h4", "h5"], ["h6"]])

    def test_named_canary_and_the_rest_after_k_batches(self):
        order = main.batches_of(self.hosts(7), "h4", 2, 1)
        self.assertEqual(self.names(order), [["h4"], ["h1", "h2"], ["h3", "h5", "h6", "h7"]])

    def test_one_host(self):
        self.assertEqual(self.names(main.batches_of(self.hosts(1), None, 5, 0)), [["h1"]])


def entry(state="live", registered_at=100, **types):
    t = {"partition": "*", "consumer": True, "held_back": False, "awaiting_snapshot": False,
         "schema_ok": True, "lag_versions": 0}
    return {"id": "a1", "state": state, "registered_at": registered_at,
            "types": {name: dict(t, **over) for name, over in types.items()}}


class HealthTest(unittest.TestCase):
    host = inventory.parse("h1 root@h1 a1 prices:p1,products\n")[0]

    def verdict(self, e, registered_after=None):
        return gates.agent_health(e, self.host, registered_after)

    def test_live_current_agent_passes(self):
        self.assertEqual(self.verdict(entry(prices={"partition": "p1"}, products={})), (True, ""))

    def test_an_agent_on_the_live_feed_passes_without_a_consumer(self):
        ok, reason = self.verdict(entry(prices={"partition": "p1", "consumer": False, "live_feed": True},
                                        products={"consumer": False, "live_feed": True}))
        self.assertTrue(ok, reason)

    def test_no_changes_yet_is_current(self):
        ok, _ = self.verdict(entry(prices={"partition": "p1", "lag_versions": None}, products={}))
        self.assertTrue(ok)

    def test_each_unmet_condition_says_why(self):
        cases = [
            (None, "never registered"),
            (entry(state="dead"), "is dead on the hub"),
            (entry(prices={"partition": "p1"}), "does not take type 'products'"),
            (entry(prices={"partition": "p2"}, products={}), "partition 'p2' on the hub, 'p1' in the inventory"),
            (entry(prices={"partition": "p1", "lag_versions": 3}, products={}), "behind by 3 versions"),
            (entry(prices={"partition": "p1", "consumer": False}, products={}), "no delivery yet"),
            (entry(prices={"partition": "p1", "held_back": True}, products={}), "held back"),
            (entry(prices={"partition": "p1", "awaiting_snapshot": True}, products={}), "loading a snapshot"),
            (entry(prices={"partition": "p1", "schema_ok": False}, products={}), "schema differs"),
        ]
        for e, why in cases:
            ok, reason = self.verdict(e)
            self.assertFalse(ok, why)
            self.assertIn(why, reason)

    def test_not_registered_since_the_restart(self):
        ok, reason = self.verdict(entry(registered_at=100, prices={"partition": "p1"}, products={}), 100)
        self.assertFalse(ok)
        self.assertIn("not registered again", reason)
        self.assertTrue(self.verdict(entry(registered_at=101, prices={"partition": "p1"}, products={}), 100)[0])


class CommandLineTest(unittest.TestCase):
    def run_rollout(self, *args):
        env = dict(os.environ, DELTASYNC_HUB="http://127.0.0.1:9", DELTASYNC_TOKEN="t")
        return subprocess.run([os.path.join(ROOT, "deploy", "rollout", "rollout"), *args], env=env,
                              capture_output=True, text=True, check=False, timeout=60)

    def test_help(self):
        p = self.run_rollout("--help")
        self.assertEqual(p.returncode, 0)
        self.assertIn("--inventory", p.stdout)
        self.assertIn("Exit codes", p.stdout)

    def test_refusals_exit_2_and_say_why(self):
        with tempfile.TemporaryDirectory() as d:
            inv = os.path.join(d, "inv")
            with open(inv, "w") as f:
                f.write("h1 root@h1 a1 prices\nh2 root@h2\n")
            deb = os.path.join(d, "x.deb")
            with open(deb, "w") as f:
                f.write("not a package")
            base = ["--inventory", inv, "--creds-dir", d, "--nats-url", "nats://h:4222", "--deltasync", "true"]
            cases = [
                (["--package", deb], "not a Debian package"),
                (["--package", os.path.join(d, "none.deb")], "no such file"),
                (["--package", deb, "--batch", "0"], "--batch 0"),
                (["--package", deb, "--nats-url", "http://h"], "--nats-url 'http://h'"),
            ]
            for extra, why in cases:
                p = self.run_rollout(*base, *extra)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(why, p.stderr)
            p = self.run_rollout("--inventory", inv)
            self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    unittest.main(verbosity=1)
