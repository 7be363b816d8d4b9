"""hermod.conf end to end: `hermod config` against the key table, the man
page and conf/hermod.conf, and the diagnostics for bad files. These run
bin/hermod (or $HERMOD_BIN/hermod) with -c on temporary files; no daemon
is started."""

import os
import re
import subprocess

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("HERMOD_BIN", os.path.join(TOP, "bin"))
HERMOD = os.path.join(BIN, "hermod")


def run(*args, conf=None, env=None):
    """Run hermod [-c conf] args; returns the CompletedProcess."""
    cmd = [HERMOD] + (["-c", conf] if conf is not None else []) + list(args)
    e = dict(os.environ)
    e.pop("HERMOD_CONF", None)
    e.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=e)


@pytest.fixture
def conf_file(tmp_path):
    """Write a config file and return its path."""
    def write(text, name="hermod.conf"):
        p = tmp_path / name
        p.write_text(text)
        return str(p)
    return write


def settings(out):
    """`name = value` lines -> ordered list of (name, value)."""
    pairs = []
    for line in out.splitlines():
        m = re.fullmatch(r"([a-z0-9_]+) =(?: (.*))?", line)
        assert m, "not a setting line: %r" % line
        pairs.append((m.group(1), m.group(2) or ""))
    return pairs


def table_keys():
    with open(os.path.join(TOP, "lib", "conf_keys.h")) as f:
        return re.findall(r"^CONF_KEY\((\w+),", f.read(), re.M)


def test_config_prints_every_key_of_the_table():
    r = run("config", conf=os.devnull)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert [k for k, _ in settings(r.stdout)] == table_keys()


def test_config_works_without_a_config_file(tmp_path):
    # No -c: $HERMOD_CONF names a missing file, which is fine for config.
    r = run("config", env={"HERMOD_CONF": str(tmp_path / "none.conf")})
    assert r.returncode == 0, r.stderr
    assert [k for k, _ in settings(r.stdout)] == table_keys()
    # With -c, a missing file is an error naming it.
    r = run("config", conf=str(tmp_path / "none.conf"))
    assert r.returncode != 0
    assert "none.conf" in r.stderr


def test_man_page_lists_exactly_the_keys():
    with open(os.path.join(TOP, "man", "hermod.conf.5")) as f:
        page = f.read()
    section = page.split('.\\" BEGIN KEYS', 1)[1].split('.\\" END KEYS', 1)[0]
    in_page = re.findall(r"^\.TP\n\.B (\S+)$", section, re.M)
    r = run("config", conf=os.devnull)
    assert in_page == [k for k, _ in settings(r.stdout)]
    # And the section is what the table generates now (run
    # tools/gen-conf-man.sh after changing lib/conf_keys.h).
    m = run("config", "-m", conf=os.devnull)
    assert m.returncode == 0
    assert section.split("\n", 1)[1] == m.stdout


def test_installed_sample_lists_every_key_and_loads():
    sample = os.path.join(TOP, "conf", "hermod.conf")
    with open(sample) as f:
        listed = re.findall(r"^#([a-z0-9_]+) =", f.read(), re.M)
    assert listed == table_keys()
    r = run("config", "-n", conf=sample)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_config_n_prints_only_what_the_file_sets(conf_file):
    path = conf_file("# comment\n\nsmtp_port = 2525\nrelayhost =\n"
                     "mynetworks = 10.0.0.0/8,\n    192.168.0.0/16\n")
    r = run("config", "-n", conf=path)
    assert r.returncode == 0, r.stderr
    # In table order, continuation joined with one space.
    assert settings(r.stdout) == [
        ("mynetworks", "10.0.0.0/8, 192.168.0.0/16"),
        ("relayhost", ""),
        ("smtp_port", "2525"),
    ]
    full = dict(settings(run("config", conf=path).stdout))
    assert full["smtp_port"] == "2525"
    assert full["message_size_limit"] == "52428800"


@pytest.mark.parametrize("line,key,why", [
    ("message_size_limit = 10q", "message_size_limit", "bad unit"),
    ("smtp_port = 65536", "smtp_port", "out of range"),
    ("smtp_port = http", "smtp_port", "not a number"),
    ("maximal_queue_lifetime = 1y", "maximal_queue_lifetime", "bad unit"),
    ("local_system_users = maybe", "local_system_users", "not yes or no"),
    ("relayhost = $relayhost", "relayhost", "refers back"),
])
def test_bad_value_is_an_error_with_file_line_and_key(conf_file, line, key, why):
    path = conf_file("# first\nrelayhost = [r]\n" + line + "\n")
    r = run("config", conf=path)
    assert r.returncode != 0
    assert r.stdout == ""
    want = "%s:3: bad value for %s: '" % (path, key)
    assert want in r.stderr, r.stderr
    assert why in r.stderr


def test_syntax_error_is_an_error_with_file_line(conf_file):
    path = conf_file("relayhost = x\n\nno equals sign here\n")
    r = run("config", conf=path)
    assert r.returncode != 0
    assert "%s:3: missing '='" % path in r.stderr


def test_unknown_key_is_a_warning_with_file_line(conf_file):
    path = conf_file("smtp_port = 2525\n# x\nno_such_key = 1\n")
    r = run("config", "-n", conf=path)
    assert r.returncode == 0
    assert "%s:3: unknown parameter no_such_key" % path in r.stderr
    assert settings(r.stdout) == [("smtp_port", "2525")]


def test_dollar_expansion(conf_file):
    path = conf_file("myhostname = mx.example.com\n"
                     "relayhost = [$mydomain]:${smtp_port}\n"
                     "smtp_port = 2525\n"
                     "tls_cert_file = /etc/$$literal\n"
                     "tls_key_file = ${tls_cert_file?set}${dns_servers:empty}\n")
    plain = dict(settings(run("config", conf=path).stdout))
    assert plain["relayhost"] == "[$mydomain]:${smtp_port}"
    assert plain["mydestination"] == "$myhostname, localhost"
    r = run("config", "-x", conf=path)
    assert r.returncode == 0, r.stderr
    x = dict(settings(r.stdout))
    assert x["mydomain"] == "example.com"
    assert x["relayhost"] == "[example.com]:2525"
    assert x["mydestination"] == "mx.example.com, localhost"
    assert x["tls_cert_file"] == "/etc/$literal"
    assert x["tls_key_file"] == "setempty"
    # hermod config NAME prints one key.
    r = run("config", "-x", "relayhost", conf=path)
    assert r.stdout == "relayhost = [example.com]:2525\n"


def test_expanded_value_is_checked(conf_file):
    path = conf_file("relayhost = 99999\nsmtp_port = $relayhost\n")
    r = run("config", conf=path)
    assert r.returncode != 0
    assert "%s:2: bad value for smtp_port: '99999' (out of range" % path in r.stderr


def test_unknown_name_in_config_command(conf_file):
    r = run("config", "no_such_key", conf=os.devnull)
    assert r.returncode != 0
    assert "unknown parameter no_such_key" in r.stderr
