"""The fleet inventory: one agent host per line.

Owns parsing and validation only; it never touches a host. Format (docs/operations.md):

    # host   ssh address                agent id   grants
    store-1  root@10.20.0.11            store-1    prices:store-1,products
    store-2  deploy@store-2.internal:2222 store-2  prices:store-2,products

Fields are separated by blanks; '#' starts a comment. grants are what
`deltasync creds add --agent ID:GRANTS` takes: comma-separated business types,
each optionally bound to one partition (type:partition; without one the agent
takes every partition, "*"). Every problem is reported with its line, all of
them at once, and nothing is done with an inventory that has any.
"""

import re

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_HOST = re.compile(r"^[A-Za-z0-9_.:-]{1,253}$")
_SSH = re.compile(r"^(?:(?P<user>[a-z_][a-z0-9_.-]{0,31})@)?(?P<host>[A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]+\])"
                  r"(?::(?P<port>[0-9]{1,5}))?$")


class InventoryError(Exception):
    """The inventory cannot be used; str() lists every problem, one per line."""


class Host:
    """One line of the inventory."""

    def __init__(self, name, ssh, agent, grants, line):
        self.name = name          # the operator's name for the host (reports, --hosts)
        self.ssh = ssh            # SshAddress
        self.agent = agent        # the agent id (its identity, its config's [agent] id)
        self.grants = grants      # [(type, partition)], partition "*" = every partition
        self.line = line          # line number in the inventory, for messages

    def grants_text(self):
        return ",".join(t if p == "*" else f"{t}:{p}" for t, p in self.grants)


class SshAddress:
    def __init__(self, user, host, port):
        self.user = user
        self.host = host
        self.port = port

    def destination(self):
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self):
        return self.destination() + (f":{self.port}" if self.port else "")


def parse_ssh_address(text):
    """[user@]host[:port] -> SshAddress, or None when malformed."""
    m = _SSH.match(text)
    if not m:
        return None
    port = m.group("port")
    if port is not None and not 1 <= int(port) <= 65535:
        return None
    host = m.group("host").strip("[]")
    return SshAddress(m.group("user"), host, int(port) if port else None)


def parse_grants(text):
    """'prices:store-1,products' -> ([(type, partition)], None) or (None, problem)."""
    grants = []
    seen = set()
    for item in text.split(","):
        type_name, _, partition = item.partition(":")
        if not _TYPE.match(type_name):
            return None, (f"type '{type_name}' in '{text}': use 1-64 characters from a-z 0-9 _, "
                          "starting with a letter")
        if ":" in item and partition != "*" and (not _TOKEN.match(partition) or partition == "_all"):
            return None, (f"partition '{partition}' of type '{type_name}': use 1-64 characters from "
                          "A-Z a-z 0-9 _ - (or * for every partition; '_all' is reserved)")
        if type_name in seen:
            return None, f"type '{type_name}' appears twice in '{text}'"
        seen.add(type_name)
        grants.append((type_name, partition if ":" in item else "*"))
    return grants, None


def parse(text, path="inventory"):
    """The hosts of an inventory text, in file order. Raises InventoryError."""
    hosts = []
    problems = []
    names, agents, addresses = {}, {}, {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{number}"
        fields = line.split()
        if len(fields) != 4:
            problems.append(f"{where}: expected 4 fields (host, ssh address, agent id, grants), found "
                            f"{len(fields)}: '{line}'")
            continue
        name, ssh_text, agent, grants_text = fields
        bad = False
        if not _HOST.match(name):
            problems.append(f"{where}: host name '{name}': use letters, digits and . _ - :")
            bad = True
        ssh = parse_ssh_address(ssh_text)
        if ssh is None:
            problems.append(f"{where}: ssh address '{ssh_text}': expected [user@]host[:port] (port 1-65535)")
            bad = True
        if not _TOKEN.match(agent):
            problems.append(f"{where}: agent id '{agent}': use 1-64 characters from A-Z a-z 0-9 _ -")
            bad = True
        grants, problem = parse_grants(grants_text)
        if problem:
            problems.append(f"{where}: grants: {problem}")
            bad = True
        for key, table, what in ((name, names, "host"), (agent, agents, "agent id"),
                                 (ssh_text, addresses, "ssh address")):
            if key in table:
                problems.append(f"{where}: {what} '{key}' is already used on line {table[key]}")
                bad = True
            else:
                table[key] = number
        if not bad:
            hosts.append(Host(name, ssh, agent, grants, number))
    if problems:
        raise InventoryError("\n".join(problems))
    if not hosts:
        raise InventoryError(f"{path}: no hosts (one line per host: host, ssh address, agent id, grants)")
    return hosts


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise InventoryError(f"{path}: cannot read the inventory: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise InventoryError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return parse(text, path)
