"""lmtpd refusals: symlinked and hard-linked mailboxes, foreign owners,
locked mboxes, stale dotlocks. Each refusal is per recipient and leaves
the other recipients of the transaction delivered."""

import fcntl
import os
import time

import pytest

from hermod import IS_ROOT
from test_lmtpd import SENDER, maildir_files, mbox_path, msg, start
from test_lmtpd_client import Client, stored


def deliver(h, rcpts, m):
    with Client(h.lmtp_socket) as c:
        return c.transaction(SENDER, rcpts, m)


def own(h, path):
    """Give path to the account deliveries run as (hermod when root)."""
    os.lchown(path, h.uid, h.gid)


def test_maildir_new_symlink_refused(hermod):
    start(hermod, users=[("alice", None, ""), ("bob", None, "")])
    md = hermod.path("mail/alice")
    elsewhere = hermod.path("mail/elsewhere")
    for d in (md, md + "/tmp", md + "/cur", elsewhere):
        os.mkdir(d, 0o700)
        own(hermod, d)
    os.symlink(elsewhere, md + "/new")
    own(hermod, md + "/new")
    _, dr = deliver(hermod, ["alice@example.test", "bob@example.test"], msg("symlink"))
    assert dr[0][0] == 451 and dr[0][1].startswith("4.3.0"), dr
    assert dr[1][0] == 250
    assert os.listdir(elsewhere) == []
    assert os.listdir(md + "/tmp") == []
    assert "status=deferred" in hermod.log("lmtpd")


def test_mbox_symlink_refused(hermod):
    path = mbox_path(hermod, "bob")
    start(hermod, users=[("bob", path, ""), ("alice", None, "")])
    target = hermod.path("mail/target")
    open(target, "wb").close()
    own(hermod, target)
    os.symlink(target, path)
    own(hermod, path)
    _, dr = deliver(hermod, ["bob@example.test", "alice@example.test"], msg("mbox symlink"))
    assert dr[0][0] == 451 and dr[0][1].startswith("4.3.0"), dr
    assert dr[1][0] == 250
    assert os.path.getsize(target) == 0


def test_directory_symlink_refused(hermod):
    """A symlink on the way to the mailbox, planted by a user (not root)."""
    real = hermod.path("mail/real")
    os.mkdir(real, 0o700)
    own(hermod, real)
    link = hermod.path("mail/link")
    os.symlink(real, link)
    own(hermod, link)
    start(hermod, users=[("bob", link + "/bob.mbox", "")])
    _, dr = deliver(hermod, ["bob@example.test"], msg("dir symlink"))
    assert dr[0][0] == 451 and dr[0][1].startswith("4.3.0"), dr
    assert os.listdir(real) == []


def test_hardlinked_mbox_refused(hermod):
    path = mbox_path(hermod, "bob")
    start(hermod, users=[("bob", path, "")])
    open(path, "wb").close()
    own(hermod, path)
    os.link(path, hermod.path("mail/other"))
    _, dr = deliver(hermod, ["bob@example.test"], msg("hardlink"))
    assert dr[0][0] == 451 and dr[0][1].startswith("4.3.0"), dr
    assert os.path.getsize(path) == 0


@pytest.mark.skipif(not IS_ROOT, reason="needs root to make a file owned by someone else")
def test_foreign_owner_refused(hermod):
    path = mbox_path(hermod, "bob")
    start(hermod, users=[("bob", path, ""), ("alice", None, "")])
    with open(path, "wb") as f:
        f.write(b"")
    os.chown(path, 0, 0)
    os.chmod(path, 0o666)   # writable, but not the recipient's
    md = hermod.path("mail/alice")
    os.mkdir(md, 0o777)      # a Maildir owned by root
    _, dr = deliver(hermod, ["bob@example.test", "alice@example.test"], msg("owner"))
    assert dr[0][0] == 451 and dr[0][1].startswith("4.3.0"), dr
    assert dr[1][0] == 451 and dr[1][1].startswith("4.3.0"), dr
    assert os.path.getsize(path) == 0
    assert os.listdir(md) == []


def test_locked_mbox_deferred_then_delivered(hermod):
    path = mbox_path(hermod, "bob")
    start(hermod, conf={"mailbox_lock_timeout": "1s"},
          users=[("bob", path, ""), ("alice", None, "")])
    with open(path, "wb") as f:
        f.write(b"")
    own(hermod, path)
    lock = path + ".lock"
    with open(path, "r+b") as held:
        fcntl.lockf(held, fcntl.LOCK_EX)
        open(lock, "wb").close()
        t0 = time.monotonic()
        _, dr = deliver(hermod, ["bob@example.test", "alice@example.test"], msg("locked"))
        took = time.monotonic() - t0
        fcntl.lockf(held, fcntl.LOCK_UN)
    assert dr[0][0] == 452 and dr[0][1].startswith("4.2.1"), dr
    assert dr[1][0] == 250
    assert took < 8
    assert os.path.getsize(path) == 0
    # only the dotlock is left now: still locked
    _, dr = deliver(hermod, ["bob@example.test"], msg("dotlocked"))
    assert dr[0][0] == 452, dr
    os.unlink(lock)
    _, dr = deliver(hermod, ["bob@example.test"], msg("free"))
    assert dr[0][0] == 250, dr
    assert not os.path.exists(lock)
    box = hermod.mbox(path)
    assert [box.get_bytes(k) for k in box.keys()] == [stored(SENDER, "bob@example.test", msg("free"))]


def test_stale_dotlock_removed(hermod):
    path = mbox_path(hermod, "bob")
    start(hermod, conf={"mailbox_lock_timeout": "2s", "stale_lock_time": "60s"},
          users=[("bob", path, "")])
    lock = path + ".lock"
    open(lock, "wb").close()
    own(hermod, lock)
    old = time.time() - 3600
    os.utime(lock, (old, old))
    _, dr = deliver(hermod, ["bob@example.test"], msg("stale"))
    assert dr[0][0] == 250, dr
    assert not os.path.exists(lock)
    assert len(hermod.mbox(path)) == 1


def test_unwritable_maildir_deferred(hermod):
    start(hermod, users=[("alice", "/proc/hermod-nonexistent/Maildir/", ""),
                         ("bob", None, "")])
    _, dr = deliver(hermod, ["alice@example.test", "bob@example.test"], msg("unwritable"))
    assert dr[0][0] in (450, 451, 452) and dr[0][1][:1] == "4", dr
    assert dr[1][0] == 250
    assert len(maildir_files(hermod, "bob")) == 1


def _small_fs(h):
    """A 256 KiB tmpfs under the test root (root only); None if mount is
    not allowed here."""
    import subprocess
    mnt = h.path("small")
    os.mkdir(mnt)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=755", "tmpfs", mnt],
                       capture_output=True)
    if r.returncode != 0:
        return None
    os.chown(mnt, h.uid, h.gid)
    return mnt


@pytest.mark.skipif(not IS_ROOT, reason="needs root to mount a small file system")
def test_full_disk_leaves_nothing_partial(hermod):
    import subprocess
    mnt = _small_fs(hermod)
    if mnt is None:
        pytest.skip("mount not permitted here")
    try:
        box = mnt + "/bob.mbox"
        start(hermod, users=[("bob", box, ""), ("alice", mnt + "/alice/", ""),
                             ("carol", None, "")])
        small = msg("fits")
        _, dr = deliver(hermod, ["bob@example.test"], small)
        assert dr[0][0] == 250
        before = open(box, "rb").read()
        huge = msg("too big for the disk", b"z" * 400 + b"\r\n" * 1 + (b"y" * 998 + b"\r\n") * 400)
        _, dr = deliver(hermod, ["bob@example.test", "alice@example.test", "carol@example.test"],
                        huge)
        assert dr[0][0] == 452 and dr[0][1].startswith("4.3.1"), dr
        assert dr[1][0] == 452 and dr[1][1].startswith("4.3.1"), dr
        assert dr[2][0] == 250
        assert open(box, "rb").read() == before
        for sub in ("tmp", "new"):
            assert os.listdir(os.path.join(mnt, "alice", sub)) == []
    finally:
        hermod.stop("lmtpd")
        subprocess.run(["umount", mnt], capture_output=True)
