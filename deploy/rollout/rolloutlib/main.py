"""deltasync rollout: install or upgrade the agent package on a fleet over ssh, host by host
behind health gates.

Owns the order (a canary, then batches, then the rest), the per-host sequence
(identity, config, copy, install, start, gate; rollback on a failed gate), the
plan (--dry-run) and the final report. Hosts of one batch run in parallel
threads; the output is serialised by one lock. Exit codes: 0 every host done or
already current, 1 a host failed (the rollout stopped there), 2 usage,
inventory or package error (nothing was changed).
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

from . import gates, inventory, remote

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_print_lock = threading.Lock()
_NATS_URL = re.compile(r"^(nats|tls)://[A-Za-z0-9_.:\[\]@%-]+$")


def say(msg, host=None):
    with _print_lock:
        print(f"rollout: [{host.name}] {msg}" if host else f"rollout: {msg}", flush=True)


class UsageError(Exception):
    pass


class HostFailed(Exception):
    """A step of one host failed; str() is the reason the report gives."""


# ---- arguments --------------------------------------------------------------

def build_parser():
    p = argparse.ArgumentParser(
        prog="rollout",
        description="Install or upgrade deltasync-agent on every host of an inventory over ssh: per host the "
                    "NATS identity (deltasync creds add), agent.toml, the package, the seed, install, start, and "
                    "a health gate (the hub reports the agent live and current on every type, and deltasync "
                    "verify --agent passes). Order: a canary, then batches; the first failed gate stops the "
                    "rollout and that host goes back to its previous package (or the agent is removed when it "
                    "had none). Hosts already at the package's version and healthy are skipped.",
        epilog="Exit codes: 0 done (or nothing to do), 1 a host failed its step or gate (the rollout stopped), "
               "2 usage, inventory or package error (nothing changed). "
               "See docs/operations.md, 'Rollout and upgrade'.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--inventory", required=True, metavar="FILE",
                   help="one host per line: host, ssh address ([user@]host[:port]), agent id, grants "
                        "(type[:partition],...)")
    p.add_argument("--package", required=True, metavar="DEB", help="the deltasync-agent .deb to roll out")
    p.add_argument("--creds-dir", required=True, metavar="DIR",
                   help="the identity directory of deltasync creds (seeds, auth.conf, identities.json)")
    p.add_argument("--nats-pidfile", metavar="FILE",
                   help="nats-server's pid file: deltasync creds add --reload makes it load a new identity")
    p.add_argument("--nats-url", required=True, metavar="URL",
                   help="the NATS URL the agents connect to (their [nats] url), e.g. nats://10.0.0.1:4222")
    p.add_argument("--hub", default=os.environ.get("DELTASYNC_HUB"), metavar="URL",
                   help="hub HTTP API for the gates (default: $DELTASYNC_HUB)")
    p.add_argument("--token", default=None, metavar="TOKEN",
                   help="hub API token (default: $DELTASYNC_TOKEN; prefer the environment: a command line is "
                        "visible to other users)")
    p.add_argument("--ca-file", default=os.environ.get("DELTASYNC_CA_FILE"), metavar="FILE",
                   help="CA of an https hub with a private certificate (default: $DELTASYNC_CA_FILE)")
    p.add_argument("--deltasync", default="deltasync", metavar="PATH", help="the deltasync command line tool")
    p.add_argument("--canary", metavar="HOST", help="the host that goes first, alone (default: the first host)")
    p.add_argument("--batch", type=int, default=5, metavar="N", help="hosts per batch after the canary")
    p.add_argument("--batches", type=int, default=0, metavar="K",
                   help="after K batches of N, all remaining hosts in one last batch (0: batches of N to the end)")
    p.add_argument("--gate-timeout", type=float, default=180, metavar="S",
                   help="seconds a host has to pass its health gate after its start")
    p.add_argument("--hosts", metavar="NAME,...", help="only these hosts of the inventory")
    p.add_argument("--ssh-identity", metavar="FILE", help="private key for ssh (ssh -i)")
    p.add_argument("--ssh-known-hosts", metavar="FILE",
                   help="known_hosts file with the hosts' keys (host keys are always checked)")
    p.add_argument("--ssh-option", action="append", default=[], metavar="OPT",
                   help="extra ssh -o option (repeatable), e.g. ProxyJump=bastion")
    p.add_argument("--dry-run", action="store_true",
                   help="ask every host and the hub, print the plan, change nothing")
    return p


def check_args(args):
    args.token = args.token if args.token is not None else os.environ.get("DELTASYNC_TOKEN")
    if not args.hub:
        raise UsageError("--hub (or DELTASYNC_HUB) is required: the gates ask the hub")
    if not args.token:
        raise UsageError("--token (or DELTASYNC_TOKEN) is required: the gates ask the hub")
    if args.batch < 1:
        raise UsageError(f"--batch {args.batch}: give 1 or more hosts per batch")
    if args.batches < 0:
        raise UsageError(f"--batches {args.batches}: give 0 (no limit) or more")
    if args.gate_timeout <= 0:
        raise UsageError(f"--gate-timeout {args.gate_timeout}: give a positive number of seconds")
    for url in args.nats_url.split(","):
        if not _NATS_URL.match(url.strip()):
            raise UsageError(f"--nats-url '{url}': expected nats://host:port or tls://host:port (comma-separated)")
    if not os.path.isdir(args.creds_dir):
        raise UsageError(f"--creds-dir {args.creds_dir}: no such directory (make it with deltasync creds init)")
    if args.nats_pidfile and not os.path.isfile(args.nats_pidfile):
        raise UsageError(f"--nats-pidfile {args.nats_pidfile}: no such file")
    for name, path in (("--ssh-identity", args.ssh_identity), ("--ssh-known-hosts", args.ssh_known_hosts),
                       ("--ca-file", args.ca_file)):
        if path and not os.path.isfile(path):
            raise UsageError(f"{name} {path}: no such file")
    found = shutil.which(args.deltasync)
    if not found:
        raise UsageError(f"--deltasync {args.deltasync}: not found (install the deltasync package or give its path)")
    args.deltasync = found


def read_package(path):
    """(name, version) of a .deb; UsageError unless it is a deltasync-agent package."""
    if not os.path.isfile(path):
        raise UsageError(f"--package {path}: no such file")
    try:
        p = subprocess.run(["dpkg-deb", "--show", "--showformat=${Package} ${Version} ${Architecture}", path],
                           capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise UsageError("dpkg-deb is not installed (Debian package dpkg)") from None
    if p.returncode != 0:
        raise UsageError(f"--package {path}: not a Debian package: {p.stderr.strip()}")
    name, version, arch = p.stdout.split()
    if name != remote.PACKAGE:
        raise UsageError(f"--package {path}: it is the package '{name}', not {remote.PACKAGE}")
    return version, arch


# ---- the order --------------------------------------------------------------

def batches_of(hosts, canary, size, limit):
    """[[canary], [next size hosts], ..., [the rest]]."""
    first = next(h for h in hosts if h.name == canary) if canary else hosts[0]
    rest = [h for h in hosts if h is not first]
    out = [[first]]
    while rest:
        if limit and len(out) - 1 >= limit:
            out.append(rest)
            break
        out.append(rest[:size])
        rest = rest[size:]
    return out


# ---- per host ---------------------------------------------------------------

class Plan:
    """What the rollout will do with one host, from its probe."""

    def __init__(self, host):
        self.host = host
        self.action = None     # install | upgrade | reinstall | skip | unreachable
        self.current = ""      # installed version, "" when none
        self.cached = []       # .deb files kept on the host
        self.sm = ""           # service manager on the host
        self.why = ""


class Outcome:
    def __init__(self, plan):
        self.plan = plan
        self.after = plan.current
        self.result = "not attempted"
        self.failed = False


def deb_file_name(version, arch):
    return f"{remote.PACKAGE}_{version.split(':', 1)[-1]}_{arch}.deb"


class Rollout:
    def __init__(self, args, hosts, version, arch):
        self.args = args
        self.hosts = hosts
        self.version = version
        self.arch = arch
        self.deb_name = deb_file_name(version, arch)
        self.ssh = remote.Ssh(args.ssh_identity, args.ssh_known_hosts, args.ssh_option)
        self.hub = gates.Hub(args.deltasync, args.hub, args.token, args.ca_file)
        self._creds_lock = threading.Lock()
        self._deb_bytes = None

    # -- plan --
    def probe(self, host):
        plan = Plan(host)
        try:
            keys = remote.parse_keys(self.ssh.check(host.ssh, remote.PROBE, "probe", timeout=60))
        except remote.RemoteError as e:
            plan.action, plan.why = "unreachable", str(e)
            return plan
        plan.current = keys.get("version", "")
        plan.cached = keys.get("cacheds", [])
        plan.sm = keys.get("sm", "")
        if not plan.current:
            plan.action = "install"
        elif plan.current != self.version:
            plan.action = "upgrade"
        else:
            healthy, why = self.healthy_now(host)
            plan.action, plan.why = ("skip", "at the target version and healthy") if healthy else ("reinstall", why)
        return plan

    def healthy_now(self, host):
        try:
            ok, why = gates.agent_health(self.hub.agents().get(host.agent), host, None)
            if ok:
                ok, why, _ = self.hub.verify(host.agent, 60)
        except gates.HubError as e:
            return False, str(e)
        return ok, why

    # -- one host --
    def known_grants(self, agent):
        """The agent's grants in <creds dir>/identities.json, or None when it has no identity there."""
        path = os.path.join(self.args.creds_dir, "identities.json")
        try:
            with open(path, encoding="utf-8") as f:
                registry = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise HostFailed(f"identity: cannot read {path}: {e}") from None
        for ident in registry.get("identities", []):
            if ident.get("name") == agent and ident.get("role") == "agent":
                return sorted((g.get("type"), g.get("partition", "*")) for g in ident.get("grants", []))
        return None

    def identity(self, host):
        """The agent's seed: its identity as it is, or made by deltasync creds add.

        One host at a time: creds rewrites identities.json and auth.conf.
        """
        with self._creds_lock:
            return self._identity(host)

    def _identity(self, host):
        seed = os.path.join(self.args.creds_dir, f"{host.agent}.nk")
        known = self.known_grants(host.agent)
        if known is not None and os.path.isfile(seed):
            if known != sorted(host.grants):
                have = ",".join(t if p == "*" else f"{t}:{p}" for t, p in known)
                raise HostFailed(f"identity: '{host.agent}' holds the grants {have} in {self.args.creds_dir}, the "
                                 f"inventory says {host.grants_text()}: change them with deltasync creds grant/revoke "
                                 "first (nats-server and the hub must agree before the agent does)")
            return self.read_seed(seed)
        cmd = [self.args.deltasync, "creds", "add", "--dir", self.args.creds_dir,
               "--agent", f"{host.agent}:{host.grants_text()}"]
        if self.args.nats_pidfile:
            cmd += ["--reload", self.args.nats_pidfile]
        p = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if p.returncode != 0:
            raise HostFailed(f"identity: deltasync creds add: {remote.last_lines(p.stderr or p.stdout, 3)}")
        say(f"identity {host.agent} added to {self.args.creds_dir}"
            + (" (nats-server reloaded)" if self.args.nats_pidfile else ""), host)
        return self.read_seed(seed)

    @staticmethod
    def read_seed(seed):
        try:
            with open(seed, "rb") as f:
                return f.read()
        except OSError as e:
            raise HostFailed(f"identity: cannot read the seed {seed}: {e.strerror}") from None

    def agent_toml(self, host):
        lines = [f"# Written by deltasync rollout for host {host.name} (inventory line {host.line}); "
                 "a re-run rewrites it.",
                 "[agent]", f'id = "{host.agent}"', "",
                 "[nats]", f'url = "{self.args.nats_url}"', f'nkey_seed_file = "{remote.SEED_DIR}/{host.agent}.nk"', "",
                 "[replica]", f'path = "{remote.REPLICA}"']
        for type_name, partition in host.grants:
            lines += ["", "[[subscriptions]]", f'type = "{type_name}"', f'partition = "{partition}"']
        return ("\n".join(lines) + "\n").encode()

    def registered_at(self, host):
        entry = self.hub.agents().get(host.agent)
        return int(entry.get("registered_at") or 0) if entry else 0

    def agent_status(self, host):
        keys = remote.parse_keys(self.ssh.check(host.ssh, remote.STATUS, "status", timeout=60))
        return keys.get("running") == "yes", keys.get("logs", [])

    def gate(self, host, registered_before):
        """Returns the seconds it took; raises HostFailed with the last reason at the deadline."""
        start = time.monotonic()
        deadline = start + self.args.gate_timeout
        reason = "no answer yet"
        next_status = start + 2
        down_checks = 0
        diverged = 0  # verifies in a row that found the current agent's replica different
        while True:
            try:
                ok, reason = gates.agent_health(self.hub.agents().get(host.agent), host, registered_before)
                if ok:
                    left = max(1.0, deadline - time.monotonic())
                    ok, reason, differs = self.hub.verify(host.agent, left)
                    if ok:
                        return time.monotonic() - start
                    # A change arriving between the two questions can make one
                    # verify of a current agent differ; three in a row do not.
                    diverged = diverged + 1 if differs else 0
                    if diverged >= 3:
                        raise HostFailed(f"health gate: live and current, but {reason} (three verifies in a row)")
                else:
                    diverged = 0
            except gates.HubError as e:
                reason = str(e)
            now = time.monotonic()
            if now >= next_status:
                next_status = now + 3
                running, logs = self.agent_status(host)
                down_checks = 0 if running else down_checks + 1
                if down_checks >= 2:  # twice in a row: not a restart in progress
                    log = (": its log ends: " + " | ".join(logs[-3:])) if logs else ""
                    raise HostFailed(f"health gate: the agent is not running on the host{log} (hub: {reason})")
            if now >= deadline:
                raise HostFailed(f"health gate: not passed within {self.args.gate_timeout:g} s: {reason}")
            time.sleep(min(2.0 if diverged else 1.0, max(0.0, deadline - now)))

    def rollback(self, plan, outcome):
        host = plan.host
        prev = plan.current
        previous_deb = ""
        if prev:
            want = deb_file_name(prev, self.arch)
            previous_deb = want if want in plan.cached else ""
        script = remote.rollback_script(prev, previous_deb, self.deb_name, f"{host.agent}.nk")
        try:
            keys = remote.parse_keys(self.ssh.check(host.ssh, script, "rollback", timeout=600))
        except remote.RemoteError as e:
            outcome.after = "?"
            return f"ROLLBACK FAILED: {e}"
        if keys.get("rolled_back") == "removed":
            outcome.after = ""
            try:
                if self.hub.agents().get(host.agent):
                    self.hub._run(["retire", host.agent], timeout=30)
            except gates.HubError:
                pass
            return "rolled back: the agent package is removed (the host had none before)"
        outcome.after = prev
        # Back on the previous package: is its agent live again?
        deadline = time.monotonic() + min(60.0, self.args.gate_timeout)
        why = ""
        while time.monotonic() < deadline:
            try:
                entry = self.hub.agents().get(host.agent)
                if entry and entry.get("state") == "live":
                    return f"rolled back to {prev}; its agent is live again"
                why = f"agent is {entry.get('state') if entry else 'unknown to the hub'}"
            except gates.HubError as e:
                why = str(e)
            time.sleep(1)
        return f"rolled back to {prev}; its agent is not live again ({why})"

    def run_host(self, plan):
        host = plan.host
        outcome = Outcome(plan)
        changed = False
        try:
            if plan.action == "unreachable":
                plan = self.probe(host)  # a second chance: it may be back
                outcome.plan = plan
                if plan.action == "unreachable":
                    raise HostFailed(plan.why)
            seed = self.identity(host)
            registered_before = self.registered_at(host)
            say(f"{plan.action}: {remote.PACKAGE} {plan.current or '(none)'} -> {self.version}", host)
            files = {self.deb_name: self.deb_bytes(), "agent.toml": self.agent_toml(host), f"{host.agent}.nk": seed}
            self.ssh.upload(host.ssh, files, f"{remote.STATE_DIR}/incoming")
            changed = True
            started = remote.parse_keys(self.ssh.check(
                host.ssh, remote.deploy_script(self.deb_name, plan.current, f"{host.agent}.nk"),
                "stop, dpkg -i, configure, start", timeout=600))
            say(f"started with {started.get('started', '?')}", host)
            took = self.gate(host, registered_before)
            say(f"gate passed in {took:.1f} s: live, current on {', '.join(t for t, _ in host.grants)}; "
                "verify passed", host)
            self.ssh.check(host.ssh, remote.prune_script(self.deb_name), "pruning old packages")
            outcome.after = self.version
            outcome.result = {"install": "installed", "upgrade": "upgraded",
                              "reinstall": "reinstalled"}[plan.action] + ", healthy"
        except (HostFailed, remote.RemoteError, gates.HubError, OSError) as e:
            outcome.failed = True
            say(f"FAILED: {e}", host)
            outcome.result = f"FAILED: {e}"
            if changed:
                back = self.rollback(plan, outcome)
                say(back, host)
                outcome.result += f"; {back}"
        return outcome

    def run(self):
        """Plan, then the batches in order; returns the exit code."""
        args, hosts, version = self.args, self.hosts, self.version
        try:
            self.hub.agents()
        except gates.HubError as e:
            print(f"rollout: cannot ask the hub at {args.hub}: {e}", file=sys.stderr)
            return EXIT_FAILED
        order = batches_of(hosts, args.canary, args.batch, args.batches)
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
            plans = {p.host.name: p for p in pool.map(self.probe, hosts)}
        print_plan(order, plans, version)
        if args.dry_run:
            say("dry run: nothing changed")
            return EXIT_OK

        outcomes = {h.name: Outcome(plans[h.name]) for h in hosts}
        failed = []
        for i, batch in enumerate(order):
            todo = [h for h in batch if plans[h.name].action != "skip"]
            for h in batch:
                if plans[h.name].action == "skip":
                    outcomes[h.name].result = f"skipped: already at {version} and healthy"
                    say(f"skip: already at {version} and healthy", h)
            if not todo:
                continue
            say(f"{'canary' if i == 0 else f'batch {i}'}: {', '.join(h.name for h in todo)}")
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(todo)) as pool:
                for o in pool.map(lambda h: self.run_host(plans[h.name]), todo):
                    outcomes[o.plan.host.name] = o
                    if o.failed:
                        failed.append(o.plan.host.name)
            if failed:
                rest = [h.name for b in order[i + 1:] for h in b]
                say(f"STOPPED: {', '.join(failed)} failed"
                    + (f"; not attempted: {', '.join(rest)}" if rest else ""))
                break
        print_report(order, outcomes)
        return EXIT_FAILED if failed else EXIT_OK

    def deb_bytes(self):
        if self._deb_bytes is None:
            with open(self.args.package, "rb") as f:
                self._deb_bytes = f.read()
        return self._deb_bytes


def print_plan(order, plans, version):
    say(f"plan: {remote.PACKAGE} {version}, {sum(len(b) for b in order)} hosts in {len(order)} steps")
    for i, batch in enumerate(order):
        label = "canary" if i == 0 else f"batch {i}"
        for host in batch:
            p = plans[host.name]
            what = {"install": f"install {version}", "upgrade": f"upgrade {p.current} -> {version}",
                    "reinstall": f"reinstall {version} (not healthy: {p.why})",
                    "skip": f"skip: {p.why} ({version})", "unreachable": f"UNREACHABLE now: {p.why}"}[p.action]
            sm = f" [{p.sm}]" if p.sm else ""
            print(f"  {label:<8} {host.name:<20} {host.agent:<20} {what}{sm}", flush=True)


def print_report(order, outcomes):
    rows = [("HOST", "AGENT", "BEFORE", "AFTER", "RESULT")]
    for batch in order:
        for host in batch:
            o = outcomes[host.name]
            rows.append((host.name, host.agent, o.plan.current or "-", o.after or "-", o.result))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print("rollout report:", flush=True)
    for r in rows:
        print("  " + "  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4], flush=True)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_args(args)
        version, arch = read_package(args.package)
        hosts = inventory.load(args.inventory)
        if args.hosts:
            wanted = [n.strip() for n in args.hosts.split(",") if n.strip()]
            unknown = [n for n in wanted if n not in {h.name for h in hosts}]
            if unknown:
                raise UsageError(f"--hosts: not in {args.inventory}: {', '.join(unknown)}")
            hosts = [h for h in hosts if h.name in wanted]
        if args.canary and args.canary not in {h.name for h in hosts}:
            raise UsageError(f"--canary {args.canary}: not a host of the rollout")
    except (UsageError, inventory.InventoryError) as e:
        for line in str(e).splitlines():
            print(f"rollout: {line}", file=sys.stderr)
        return EXIT_USAGE

    r = Rollout(args, hosts, version, arch)
    try:
        return r.run()
    finally:
        r.ssh.close()

