"""Commands and files on a fleet host, over ssh only.

Owns the ssh command line (always BatchMode and StrictHostKeyChecking=yes:
an unknown or changed host key is a failure, never a prompt or a silent
accept) and the shell snippets that run on a host: probe, install,
configure, start, status and rollback. Files travel as one tar stream on the
ssh connection's stdin (no scp/sftp subsystem needed). A non-root ssh user
runs the snippets through `sudo -n`.

Host layout this module keeps (besides the package's own files):
  /var/lib/deltasync-rollout/packages/   the agent .deb installed now (kept
                                          for the next rollback) and the one
                                          being rolled out
  /var/lib/deltasync-rollout/previous/   agent.toml and the seed as they were
                                          before the running rollout
  /var/lib/deltasync-rollout/incoming/   files of the running rollout

Connections to a host are multiplexed (one ssh master per host, ControlPath
in a private temporary directory, ControlPersist 60 s) so the many short
steps and status checks do not each pay a key exchange; close() ends the
masters.

Thread-safe: every call runs its own ssh process.
"""

import io
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import threading

STATE_DIR = "/var/lib/deltasync-rollout"
PIDFILE = "/run/deltasync/deltasync-agent.pid"
AGENT_BIN = "/usr/bin/deltasync-agent"
CONFIG = "/etc/deltasync/agent.toml"
SEED_DIR = "/etc/deltasync/creds"  # the package makes it root:deltasync 0750
REPLICA = "/var/lib/deltasync/agent/replica.db"  # the package's state directory
AGENT_LOG = "/var/log/deltasync/agent.log"  # only without systemd (journal otherwise)
PACKAGE = "deltasync-agent"


class RemoteError(Exception):
    """A host could not be reached or a step on it failed; str() says which and why."""


class Ssh:
    def __init__(self, identity=None, known_hosts=None, options=(), connect_timeout=10):
        self.identity = identity
        self.known_hosts = known_hosts
        self.options = list(options)
        self.connect_timeout = connect_timeout
        self._control_dir = tempfile.mkdtemp(prefix="ds-rollout-ssh-")
        self._used = {}
        self._lock = threading.Lock()

    def close(self):
        """Ends every ssh master this object started; idempotent."""
        with self._lock:
            used, self._used = list(self._used.values()), {}
        for address in used:
            subprocess.run(self._argv(address, ["-O", "exit"])[:-1], capture_output=True, timeout=30, check=False)
        shutil.rmtree(self._control_dir, ignore_errors=True)

    def _argv(self, address, extra=()):
        with self._lock:
            self._used[str(address)] = address
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"ConnectTimeout={self.connect_timeout}", "-o", "ServerAliveInterval=10",
                "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR",
                "-o", "ControlMaster=auto", "-o", f"ControlPath={self._control_dir}/%C",
                "-o", "ControlPersist=60"] + list(extra)
        if self.identity:
            argv += ["-i", self.identity, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts:
            argv += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        for opt in self.options:
            argv += ["-o", opt]
        if address.port:
            argv += ["-p", str(address.port)]
        argv += [address.destination(), "--"]
        return argv

    def run(self, address, script, stdin=b"", timeout=300):
        """Runs `script` with sh on the host (as root); returns (rc, stdout, stderr) as text.

        rc 255 is ssh's own failure (unreachable, key refused, host key unknown):
        raised as RemoteError, as is a timeout.
        """
        command = "sh -c " + shlex.quote(script)
        if address.user not in (None, "root"):
            command = "sudo -n " + command
        try:
            p = subprocess.run(self._argv(address) + [command], input=stdin, capture_output=True,
                               timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"ssh {address}: no answer within {timeout} s") from None
        except FileNotFoundError:
            raise RemoteError("ssh: the ssh client is not installed (Debian package openssh-client)") from None
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        if p.returncode == 255:
            raise RemoteError(f"ssh {address}: {last_lines(err, 3) or 'connection failed'}")
        return p.returncode, out, err

    def check(self, address, script, what, stdin=b"", timeout=300):
        """run(), and a non-zero exit becomes RemoteError('<what> failed: <its last lines>')."""
        rc, out, err = self.run(address, script, stdin=stdin, timeout=timeout)
        if rc != 0:
            raise RemoteError(f"{what} failed (exit {rc}): {last_lines(err or out, 6)}")
        return out

    def upload(self, address, files, remote_dir):
        """files: {name: bytes | (bytes, mode)}; written into remote_dir (created, 0700)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in files.items():
                mode = 0o600
                if isinstance(data, tuple):
                    data, mode = data
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = mode
                tar.addfile(info, io.BytesIO(data))
        script = (f"set -e; umask 077; rm -rf {q(remote_dir)}; mkdir -p {q(remote_dir)}; "
                  f"tar -x -o -f - -C {q(remote_dir)}")
        self.check(address, script, f"copying {', '.join(files)} to {remote_dir}", stdin=buf.getvalue())


def q(s):
    return shlex.quote(s)


def last_lines(text, n):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:])


# ---- snippets ---------------------------------------------------------------
# Each prints key=value lines the caller parses, or fails with a message on
# stderr. `sm` is the service manager: systemd when it runs (sd_booted: the
# directory /run/systemd/system exists), else start-stop-daemon.

PROBE = f"""
if [ -d /run/systemd/system ]; then echo sm=systemd; else echo sm=start-stop-daemon; fi
v=$(dpkg-query -W -f='${{Status}} ${{Version}}' {PACKAGE} 2>/dev/null || true)
case "$v" in "install ok installed "*) echo "version=${{v##* }}";; *) echo version=;; esac
for f in {STATE_DIR}/packages/*.deb; do [ -e "$f" ] && echo "cached=${{f##*/}}"; done
exit 0
"""


def stop_script():
    return f"""
if [ -d /run/systemd/system ]; then
  systemctl stop {PACKAGE} 2>/dev/null || true
else
  # Matched by pid file and process name, not by --exec: a binary dpkg
  # replaced under a running agent no longer matches its path.
  if [ -f {PIDFILE} ]; then
    start-stop-daemon --stop --quiet --pidfile {PIDFILE} --name deltasync-agent --retry TERM/30/KILL/5 --remove-pidfile
    rc=$?; [ $rc -eq 0 ] || [ $rc -eq 1 ] || {{ echo "cannot stop the agent (start-stop-daemon exit $rc)" >&2; exit 1; }}
  fi
fi
"""


def start_script():
    return f"""
if [ -d /run/systemd/system ]; then
  systemctl enable --quiet {PACKAGE} && systemctl restart {PACKAGE} || {{ echo "systemctl restart {PACKAGE} failed" >&2; exit 1; }}
  echo "started=systemctl restart {PACKAGE}"
else
  # /run/deltasync as the package makes it (start-stop-daemon writes the
  # pid file before it changes user); the log directory for --output.
  install -d -m 0755 /run/deltasync && install -d -o deltasync -g deltasync -m 0750 /var/log/deltasync || exit 1
  start-stop-daemon --start --quiet --background --make-pidfile --pidfile {PIDFILE} --chuid deltasync \\
    --output {AGENT_LOG} --exec {AGENT_BIN} -- --config {CONFIG} || {{ echo "start-stop-daemon --start failed" >&2; exit 1; }}
  echo "started=start-stop-daemon --start --background --pidfile {PIDFILE} --chuid deltasync --exec {AGENT_BIN}"
fi
"""


def install_script(deb_name, previous_version, seed_name):
    """Stops the agent, keeps the old config and seed, installs the package.

    The agent is stopped before dpkg replaces the binary (start-stop-daemon
    matches the running process by its executable, which an upgrade deletes).
    """
    inc = f"{STATE_DIR}/incoming"
    return f"""set -u
{stop_script()}
install -d -m 0700 {STATE_DIR} {STATE_DIR}/packages {STATE_DIR}/previous || exit 1
rm -f {STATE_DIR}/previous/*
if [ -n {q(previous_version)} ]; then
  [ -f {CONFIG} ] && cp -p {CONFIG} {STATE_DIR}/previous/agent.toml
  [ -f {SEED_DIR}/{seed_name} ] && cp -p {SEED_DIR}/{seed_name} {STATE_DIR}/previous/{seed_name}
fi
mv -f {inc}/{deb_name} {STATE_DIR}/packages/{deb_name} || exit 1
DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold {STATE_DIR}/packages/{deb_name} >{STATE_DIR}/dpkg.log 2>&1 || {{
  echo "dpkg -i {deb_name} failed:" >&2; tail -n 8 {STATE_DIR}/dpkg.log >&2; exit 1; }}
echo installed=yes
"""


def configure_script(seed_name):
    """Writes agent.toml and the seed, both root:deltasync 0640 (as the package's docs say)."""
    inc = f"{STATE_DIR}/incoming"
    return f"""
{{ install -d -o root -g deltasync -m 0750 {SEED_DIR} &&
  install -o root -g deltasync -m 0640 {inc}/agent.toml {CONFIG} &&
  install -o root -g deltasync -m 0640 {inc}/{seed_name} {SEED_DIR}/{seed_name} &&
  rm -rf {inc}; }} || {{ echo "writing agent.toml and the seed failed" >&2; exit 1; }}
echo configured=yes
"""


def deploy_script(deb_name, previous_version, seed_name):
    """install, configure and start in one ssh session; stderr names the failed step."""
    return (install_script(deb_name, previous_version, seed_name) + configure_script(seed_name)
            + start_script())


STATUS = f"""
if [ -d /run/systemd/system ]; then
  if systemctl is-active --quiet {PACKAGE}; then echo running=yes; else echo running=no
    journalctl -u {PACKAGE} -n 5 --no-pager -o cat 2>/dev/null | sed 's/^/log=/'; fi
else
  if start-stop-daemon --status --pidfile {PIDFILE}; then echo running=yes; else echo running=no
    tail -n 5 {AGENT_LOG} 2>/dev/null | sed 's/^/log=/'; fi
fi
"""


def prune_script(keep_deb):
    """After a passed gate: keep only the package now installed (the next rollback's)."""
    return (f"for f in {STATE_DIR}/packages/*.deb; do [ \"${{f##*/}}\" = {q(keep_deb)} ] || rm -f \"$f\"; done; "
            f"rm -rf {STATE_DIR}/previous/*; exit 0")


def rollback_script(previous_version, previous_deb, failed_deb, seed_name):
    """Back to the package before the rollout, or remove the agent when there was none."""
    head = f"set -u\n{stop_script()}\n"
    if not previous_version:
        # The seed goes first: purge keeps a non-empty /etc/deltasync/creds.
        return head + f"""
rm -f {SEED_DIR}/{seed_name} {STATE_DIR}/packages/{failed_deb}
DEBIAN_FRONTEND=noninteractive dpkg --purge {PACKAGE} >{STATE_DIR}/dpkg.log 2>&1 || {{ tail -n 8 {STATE_DIR}/dpkg.log >&2; exit 1; }}

rm -rf {STATE_DIR}/incoming
echo rolled_back=removed
"""
    if not previous_deb:
        return head + f"""
echo "no copy of {PACKAGE} {previous_version} on the host ({STATE_DIR}/packages): it was not installed by this rollout" >&2
exit 3
"""
    return head + f"""
DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold {STATE_DIR}/packages/{previous_deb} >{STATE_DIR}/dpkg.log 2>&1 || {{
  tail -n 8 {STATE_DIR}/dpkg.log >&2; exit 1; }}
[ -f {STATE_DIR}/previous/agent.toml ] && install -o root -g deltasync -m 0640 {STATE_DIR}/previous/agent.toml {CONFIG}
[ -f {STATE_DIR}/previous/{seed_name} ] && install -o root -g deltasync -m 0640 {STATE_DIR}/previous/{seed_name} {SEED_DIR}/{seed_name}
[ {q(failed_deb)} = {q(previous_deb)} ] || rm -f {STATE_DIR}/packages/{failed_deb}
rm -rf {STATE_DIR}/incoming
{start_script()}
echo rolled_back={previous_version}
"""


def parse_keys(text):
    """key=value lines -> {key: value}; repeated keys (log=, cached=) -> list under key+'s'."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key in ("log", "cached"):
            out.setdefault(key + "s", []).append(value)
        else:
            out[key] = value
    return out
