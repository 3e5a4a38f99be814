"""A real OpenLDAP directory for tests and benchmarks: Debian's ``slapd`` on a free loopback port, in a
directory of its own, with its own configuration, schema and entries; stopped by the id we started.

The directory ``dc=example,dc=org`` holds ``ou=people`` (inetOrgPerson + posixAccount users, passwords
hashed by ``slappasswd``), ``ou=groups`` (groupOfNames, groupOfUniqueNames or posixGroup) and a service
account ``cn=reader`` that may read both but no password. Changes made while it runs (a user leaving a
group) go through python-ldap, bound as the directory's manager.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

try:
    import ldap
    import ldap.modlist
except ImportError:  # python-ldap builds only where OpenLDAP's headers are (requirements-directory.txt)
    ldap = None

from testbed.lifecycle import read_log, start_logged, stop_group
from testbed.ports import free_port

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SLAPPASSWD = "/usr/sbin/slappasswd"
SCHEMA_DIR = Path("/etc/ldap/schema")
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
MODULE_DIR = Path("/usr/lib/ldap")

SUFFIX = "dc=example,dc=org"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
MANAGER_DN = f"cn=manager,{SUFFIX}"
READER_DN = f"cn=reader,{SUFFIX}"
STARTUP_SECONDS = 15.0


def missing() -> str:
    """Why this machine cannot run the directory ('' when it can)."""
    if ldap is None:
        return ("python-ldap is not installed (`make venv` installs requirements-directory.txt where "
                "libldap2-dev and libsasl2-dev are: apt-get install libldap2-dev libsasl2-dev)")
    for path in (SLAPD, SLAPADD, SLAPPASSWD):
        if not Path(path).exists():
            return f"{path} is missing (apt-get install slapd ldap-utils)"
    for schema in SCHEMAS:
        if not (SCHEMA_DIR / f"{schema}.schema").exists():
            return f"{SCHEMA_DIR / schema}.schema is missing (apt-get install slapd)"
    return ""


def hash_password(password: str) -> str:
    """``{SSHA}...`` as slappasswd makes it (the hash the directory stores in userPassword)."""
    return subprocess.run([SLAPPASSWD, "-s", password], check=True, capture_output=True, text=True,
                          timeout=10).stdout.strip()


def user_dn(uid: str) -> str:
    return f"uid={ldap.dn.escape_dn_chars(uid)},{PEOPLE}"


def group_dn(cn: str) -> str:
    return f"cn={ldap.dn.escape_dn_chars(cn)},{GROUPS}"


class Slapd:
    """One slapd process. ``with Slapd() as directory:`` starts it (after loading the base entries offline
    with slapadd) and stops it at the end, removing its directory."""

    def __init__(self, manager_password: str = "manager-secret", reader_password: str = "reader-secret") -> None:
        self.manager_password = manager_password
        self.reader_password = reader_password
        self.root = Path(tempfile.mkdtemp(prefix="wvd-slapd-"))
        self.port = 0
        self.process: subprocess.Popen | None = None
        self._next_uid_number = 10_000

    # --- lifecycle ------------------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "slapd.log"

    def __enter__(self) -> Slapd:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        config = self.root / "slapd.conf"
        if not config.exists():
            (self.root / "db").mkdir()
            config.write_text(self._config())
            self._load(self._base_entries())
        self.port = free_port()
        self.process = start_logged([SLAPD, "-f", str(config), "-h", self.uri + "/", "-d", "0"], self.log_path)
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                self.manager().unbind_s()
                return
            except ldap.SERVER_DOWN:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"slapd did not start on {self.uri}:\n{read_log(self.log_path)}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the process (its data stays: start() again serves the same entries on a new port)."""
        if self.process is not None:
            self.resume()
            stop_group(self.process, grace=5)
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers (a hung directory)."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def control_plane_environment(self) -> dict[str, str]:
        """The WVD_LDAP_* settings that point a control plane's processes at this directory, bound as its
        reader (docs/directory.md)."""
        return {
            "WVD_LDAP_URI": self.uri,
            "WVD_LDAP_BIND_DN": READER_DN,
            "WVD_LDAP_BIND_PASSWORD": self.reader_password,
            "WVD_LDAP_USER_SEARCH": PEOPLE,
            "WVD_LDAP_GROUP_SEARCH": GROUPS,
        }

    # --- entries --------------------------------------------------------------------------------------

    def manager(self) -> ldap.ldapobject.LDAPObject:
        connection = ldap.initialize(self.uri, bytes_mode=False)
        connection.set_option(ldap.OPT_NETWORK_TIMEOUT, 5)
        connection.set_option(ldap.OPT_TIMEOUT, 5)
        connection.simple_bind_s(MANAGER_DN, self.manager_password)
        return connection

    def _modify(self, action, *args) -> None:
        connection = self.manager()
        try:
            action(connection, *args)
        finally:
            connection.unbind_s()

    def add_user(self, uid: str, password: str, *, given_name: str = "", surname: str = "",
                 mail: str = "") -> str:
        """An inetOrgPerson + posixAccount under ou=people; returns its DN."""
        self._next_uid_number += 1
        attributes = {
            "objectClass": [b"inetOrgPerson", b"posixAccount"],
            "uid": [uid.encode()],
            "cn": [f"{given_name} {surname}".strip().encode() or uid.encode()],
            "sn": [(surname or uid).encode()],
            "uidNumber": [str(self._next_uid_number).encode()],
            "gidNumber": [b"5000"],
            "homeDirectory": [f"/home/{uid}".encode()],
            "userPassword": [hash_password(password).encode()],
        }
        if given_name:
            attributes["givenName"] = [given_name.encode()]
        if mail:
            attributes["mail"] = [mail.encode()]
        dn = user_dn(uid)
        self._modify(lambda c: c.add_s(dn, ldap.modlist.addModlist(attributes)))
        return dn

    def add_group(self, cn: str, members: list[str], *, kind: str = "groupOfNames") -> str:
        """A group under ou=groups of ``kind`` groupOfNames, groupOfUniqueNames (members by DN) or
        posixGroup (members by uid); returns its DN."""
        if kind == "posixGroup":
            attributes = {"objectClass": [b"posixGroup"], "cn": [cn.encode()], "gidNumber": [b"6000"],
                          "memberUid": [uid.encode() for uid in members]}
            if not members:
                del attributes["memberUid"]
        else:
            attribute = {"groupOfNames": "member", "groupOfUniqueNames": "uniqueMember"}[kind]
            # Both classes require a member: an empty group names the manager, who is nobody's user.
            attributes = {"objectClass": [kind.encode()], "cn": [cn.encode()],
                          attribute: [user_dn(uid).encode() for uid in members] or [MANAGER_DN.encode()]}
        dn = group_dn(cn)
        self._modify(lambda c: c.add_s(dn, ldap.modlist.addModlist(attributes)))
        return dn

    def remove_member(self, cn: str, uid: str, *, kind: str = "groupOfNames") -> None:
        attribute, value = self._membership(uid, kind)

        def remove(connection) -> None:
            [(_, entry)] = connection.search_s(group_dn(cn), ldap.SCOPE_BASE, attrlist=[attribute])
            left = [member for member in entry.get(attribute, []) if member.lower() != value.lower()]
            if not left and kind != "posixGroup":  # the class requires a member: the placeholder, as add_group
                left = [MANAGER_DN.encode()]
            connection.modify_s(group_dn(cn), [(ldap.MOD_REPLACE, attribute, left or None)])

        self._modify(remove)

    def add_member(self, cn: str, uid: str, *, kind: str = "groupOfNames") -> None:
        attribute, value = self._membership(uid, kind)
        self._modify(lambda c: c.modify_s(group_dn(cn), [(ldap.MOD_ADD, attribute, [value])]))

    def delete_user(self, uid: str) -> None:
        self._modify(lambda c: c.delete_s(user_dn(uid)))

    @staticmethod
    def _membership(uid: str, kind: str) -> tuple[str, bytes]:
        if kind == "posixGroup":
            return "memberUid", uid.encode()
        return {"groupOfNames": "member", "groupOfUniqueNames": "uniqueMember"}[kind], user_dn(uid).encode()

    # --- configuration --------------------------------------------------------------------------------

    def _config(self) -> str:
        includes = "\n".join(f"include {SCHEMA_DIR / name}.schema" for name in SCHEMAS)
        return f"""{includes}
pidfile {self.root / 'slapd.pid'}
argsfile {self.root / 'slapd.args'}
modulepath {MODULE_DIR}
moduleload back_mdb

database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "{MANAGER_DN}"
rootpw {hash_password(self.manager_password)}
directory {self.root / 'db'}
index objectClass,uid,member,uniqueMember,memberUid eq

# Passwords: only to bind with. The reader service account reads everything else; nobody else reads.
access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by dn.exact="{READER_DN}" read
    by self read
    by * none
"""

    def _base_entries(self) -> str:
        return f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: {PEOPLE}
objectClass: organizationalUnit
ou: people

dn: {GROUPS}
objectClass: organizationalUnit
ou: groups

dn: {READER_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: reader
userPassword: {hash_password(self.reader_password)}
"""

    def _load(self, ldif: str) -> None:
        path = self.root / "base.ldif"
        path.write_text(ldif)
        result = subprocess.run([SLAPADD, "-f", str(self.root / "slapd.conf"), "-l", str(path)],
                                capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"slapadd failed ({result.returncode}): {result.stderr}")
