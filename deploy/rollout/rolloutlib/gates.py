"""The health gate, asked of the hub through the deltasync CLI.

A host passes when, within the gate timeout:
  1. `deltasync agents --json` lists its agent `live`, registered again since
     the rollout restarted it (registered_at later than before), and on every
     type of its inventory line: the inventory's partition, its deltas
     coming (a consumer open, or the live feed),
     nothing held back (schema mismatch) or awaited (snapshot), the hub's
     schema, and no versions missing (lag_versions 0, or null while the type
     has no changes at all);
  2. `deltasync verify --agent <id>` passes: its replica holds exactly the
     hub's rows and values.
The token travels in the environment (DELTASYNC_TOKEN), never on a command
line. verify jobs are serialised (the hub runs one at a time); a verify the
hub refuses because another job runs is retried until the deadline.
Thread-safe.
"""

import json
import os
import subprocess
import threading


class HubError(Exception):
    """The CLI could not ask the hub; str() says why."""


class Hub:
    def __init__(self, deltasync, url, token, ca_file=None):
        self.deltasync = deltasync
        self.env = dict(os.environ, DELTASYNC_HUB=url, DELTASYNC_TOKEN=token)
        if ca_file:
            self.env["DELTASYNC_CA_FILE"] = ca_file
        self.url = url
        self._verify_lock = threading.Lock()

    def _run(self, args, timeout):
        try:
            p = subprocess.run([self.deltasync] + args, env=self.env, capture_output=True, text=True,
                               timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise HubError(f"deltasync {args[0]}: no answer within {timeout} s") from None
        except OSError as e:
            raise HubError(f"cannot run {self.deltasync}: {e.strerror}") from None
        return p

    def agents(self):
        """The hub's agents as `deltasync agents --json` prints them: {id: entry}."""
        p = self._run(["agents", "--json"], timeout=30)
        if p.returncode != 0:
            raise HubError(f"deltasync agents: {p.stderr.strip() or 'exit ' + str(p.returncode)}")
        try:
            listed = json.loads(p.stdout)
        except ValueError:
            raise HubError("deltasync agents --json: the answer is not JSON") from None
        if isinstance(listed, dict):
            listed = listed.get("agents", [])
        return {a.get("id"): a for a in listed if isinstance(a, dict)}

    def verify(self, agent, timeout_s):
        """(passed, reason, diverged): `deltasync verify --agent <agent>`.

        reason names the differing rows; diverged is True when the agent
        answered and its replica differs (not for an unanswered request or a
        refused job).
        """
        with self._verify_lock:
            p = self._run(["verify", "--agent", agent, "--json", "--timeout", str(max(1, int(timeout_s)))],
                          timeout=timeout_s + 30)
        if p.returncode == 0:
            return True, "", False
        try:
            report = json.loads(p.stdout)
        except ValueError:
            report = None
        if not isinstance(report, dict):
            reason = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"
            return False, "verify: " + reason.replace("deltasync: ", ""), False
        problems = []
        diverged = False
        for row in report.get("rows", []):
            if row.get("match"):
                continue
            diverged = diverged or not row.get("error")
            what = row.get("error") or "replica differs from the hub"
            named = [f"key '{d.get('key')}': {d.get('problem')}" for d in row.get("differences", [])[:3]]
            if named:
                what += " (" + "; ".join(named) + ")"
            problems.append(f"{row.get('type') or '-'}: {what}" if row.get("type") else what)
        return False, "verify: " + ("; ".join(problems) if problems else "failed"), diverged


def agent_health(entry, host, registered_after):
    """(healthy, reason) for one agents --json entry against the host's inventory line."""
    if entry is None:
        return False, f"the hub does not know agent '{host.agent}' (it never registered)"
    state = entry.get("state")
    if state != "live":
        why = f"; last error: {entry['last_error']}" if entry.get("last_error") else ""
        return False, f"agent '{host.agent}' is {state} on the hub{why}"
    if registered_after is not None and int(entry.get("registered_at") or 0) <= registered_after:
        return False, f"agent '{host.agent}' has not registered again since its restart"
    types = entry.get("types") or {}
    for type_name, partition in host.grants:
        t = types.get(type_name)
        if t is None:
            return False, f"agent '{host.agent}' does not take type '{type_name}' on the hub"
        if t.get("partition") != partition:
            return False, (f"type '{type_name}': partition '{t.get('partition')}' on the hub, "
                           f"'{partition}' in the inventory")
        if not t.get("schema_ok", True):
            return False, f"type '{type_name}': the agent's schema differs from the hub's"
        if t.get("held_back"):
            return False, f"type '{type_name}': deltas held back ({t.get('note') or 'schema mismatch'})"
        if t.get("awaiting_snapshot"):
            return False, f"type '{type_name}': loading a snapshot"
        if not t.get("consumer") and not t.get("live_feed"):
            return False, f"type '{type_name}': no delivery yet (neither a consumer nor the live feed)"
        if t.get("lag_versions") not in (0, None):  # None: the type has no changes yet
            return False, f"type '{type_name}': behind by {t.get('lag_versions')} versions"
    return True, ""
