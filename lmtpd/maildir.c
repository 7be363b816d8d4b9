/*
 * Maildir delivery (https://cr.yp.to/proto/maildir.html, with Dovecot's
 * name fields), a batch at a time: write every tmp/NAME, make them all
 * durable with one flush, link each into new/NAME,S=SIZE and drop the
 * tmp name, make the new/ entries durable with one more flush; only then
 * is any of them delivered. A failure of one delivery fails that one
 * only. Runs in the delivery worker as the mailbox owner. A missing
 * Maildir is made 0700; tmp/new/cur must be real directories owned by
 * the owner (a symlinked new/ is a configuration error we defer on
 * rather than follow).
 *
 * lmtpd_maildir_one_flush (off by default) goes beyond POSIX: the data
 * is written back without a flush, linked, and one fsync (one file) or
 * syncfs (a batch) makes data and links durable together. That is right
 * on journaling file systems that commit a file's directory entries with
 * its fsync and keep metadata in order (ext4, XFS, btrfs), not on every
 * POSIX file system.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "conf.h"
#include "lmtpd.h"

struct maildir {
	int root, tmp, new, cur;
};

static void
maildir_close(struct maildir *md)
{
	int *fds[] = { &md->root, &md->tmp, &md->new, &md->cur };

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

static enum dlv_status
maildir_open(struct maildir *md, const struct dlv_target *t, struct dlv_detail *d)
{
	struct stat st;

	md->root = md->tmp = md->new = md->cur = -1;
	if ((md->root = safe_opendir(t->path, 1)) < 0) {
		dlv_detailf(d, "cannot open maildir %s: %s", t->path, strerror(errno));
		return dlv_errno_status(errno);
	}
	if (fstat(md->root, &st) < 0 || st.st_uid != geteuid()) {
		dlv_detailf(d, "maildir %s is not owned by uid %u", t->path, (unsigned)geteuid());
		return DLV_UNSAFE;
	}
	const char *names[] = { "tmp", "new", "cur" };
	int *fds[] = { &md->tmp, &md->new, &md->cur };
	for (int i = 0; i < 3; i++) {
		/* cur/ is read only to count a quota: else checked, not opened */
		if (i == 2 && t->quota <= 0 ? safe_subdir_check(md->root, names[i], 1) < 0 :
		    (*fds[i] = safe_subdir(md->root, names[i], 1)) < 0) {
			int e = errno;
			dlv_detailf(d, "maildir %s/%s: %s", t->path, names[i],
			    e == ELOOP ? "is a symlink" : e == EPERM ? "not owned by the recipient" :
			    strerror(e));
			return dlv_errno_status(e);
		}
	}
	return DLV_OK;
}

/* Sum of the message sizes in one directory: ",S=" from the name when
 * present (no stat), else the file's size. */
static long long
dir_usage(int dirfd)
{
	int fd = dup(dirfd);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	long long sum = 0;

	if (dir == NULL) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	rewinddir(dir);
	while ((de = readdir(dir)) != NULL) {
		const char *s = strstr(de->d_name, ",S=");
		struct stat st;
		if (de->d_name[0] == '.')
			continue;
		if (s != NULL)
			sum += strtoll(s + 3, NULL, 10);
		else if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			sum += st.st_size;
	}
	closedir(dir);
	return sum;
}

/* The host part of a unique name: '/' and ':' are escaped as the
 * specification asks. */
static void
host_part(char *out, size_t outsz)
{
	char host[128];
	size_t o = 0;

	if (gethostname(host, sizeof(host)) < 0)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	for (const char *p = host; *p && o + 5 < outsz; p++) {
		if (*p == '/' || *p == ':')
			o += (size_t)snprintf(out + o, outsz - o, "\\%03o", (unsigned char)*p);
		else
			out[o++] = *p;
	}
	out[o] = '\0';
}

static void
unique_name(char *out, size_t outsz)
{
	static unsigned long counter;
	struct timeval tv;
	char host[128];

	gettimeofday(&tv, NULL);
	host_part(host, sizeof(host));
	snprintf(out, outsz, "%lld.M%06ldP%ldQ%lu.%s", (long long)tv.tv_sec,
	    (long)tv.tv_usec, (long)getpid(), ++counter, host);
}

static int
fsync_retry(int fd)
{
	while (fsync(fd) < 0) {
		if (errno != EINTR)
			return errno;
	}
	return 0;
}


/* A Maildir of the batch, opened once for all its deliveries. */
struct box {
	const char *path;	/* borrowed from the first item naming it */
	struct maildir md;
	dev_t dev;
	enum dlv_status st;	/* of maildir_open() */
	struct dlv_detail d;
	long long used;		/* quota: new/ + cur/, -1 until counted */
	long long added;	/* bytes staged by this batch */
	int want, err;		/* a flush of it wanted; that flush's result */
};

struct batch {
	struct md_item *it;
	int n;
	int one;		/* lmtpd_maildir_one_flush */
	int nbox;
	struct box box[DLV_BATCH_MAX];
};

static int
box_for(struct batch *b, const struct dlv_target *t)
{
	struct stat st;

	for (int k = 0; k < b->nbox; k++)
		if (strcmp(b->box[k].path, t->path) == 0)
			return k;
	struct box *x = &b->box[b->nbox];
	memset(x, 0, sizeof(*x));
	x->path = t->path;
	x->used = -1;
	x->st = maildir_open(&x->md, t, &x->d);
	if (x->st == DLV_OK && fstat(x->md.tmp, &st) == 0)
		x->dev = st.st_dev;
	return b->nbox++;
}

static void
item_fail(struct md_item *it, int err, const char *what)
{
	dlv_detailf(&it->d, "cannot %s %s: %s", what, it->t.path, strerror(err));
	it->st = dlv_errno_status(err);
}

static void
final_name(const struct md_item *it, char *out, size_t outsz)
{
	snprintf(out, outsz, "%s,S=%lld", it->name, (long long)it->size);
}

/* Write tmp/NAME, left open and not yet durable. With one_flush its data
 * is written back now (no cache flush, no journal commit), so that when
 * the link into new/ reaches the disk the blocks are already there. */
static int
write_tmp(struct box *x, struct md_item *it, int one_flush)
{
	int fd = -1, err;

	for (int tries = 0; tries < 10 && fd < 0; tries++) {
		unique_name(it->name, sizeof(it->name));
		fd = openat(x->md.tmp, it->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST)
			return errno;
	}
	if (fd < 0)
		return EEXIST;
	err = msg_write(fd, &it->m, 0, &it->size);
	if (err == 0 && one_flush && sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE |
	    SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) < 0)
		err = errno;
	if (err != 0) {
		close(fd);
		unlinkat(x->md.tmp, it->name, 0);
		return err;
	}
	it->fd = fd;
	return 0;
}

static void
stage(struct batch *b, struct md_item *it)
{
	struct box *x = &b->box[it->box];
	long long need = (long long)it->m.size + (long long)msg_prefix_len(&it->m);
	int err;

	if (it->t.quota > 0) {
		if (x->used < 0)
			x->used = dir_usage(x->md.new) + dir_usage(x->md.cur);
		if (x->used + x->added + need > it->t.quota) {
			dlv_detailf(&it->d, "mailbox full (quota %lld bytes)", it->t.quota);
			it->st = DLV_QUOTA;
			return;
		}
	}
	if ((err = write_tmp(x, it, b->one)) != 0) {
		item_fail(it, err, "write maildir");
		return;
	}
	x->added += need;
	it->staged = 1;
}

/* One syncfs() per file system: a box on a device already synced in
 * this pass shares that result. */
static int
syncfs_once(struct batch *b, int k)
{
	for (int j = 0; j < k; j++)
		if (b->box[j].want && b->box[j].dev == b->box[k].dev)
			return b->box[j].err;
	return syncfs(b->box[k].md.tmp) < 0 ? errno : 0;
}

static int is_staged(const struct md_item *it) { return it->staged; }
static int is_linked(const struct md_item *it) { return it->linked; }

/*
 * Make durable what `pick` selects, once for the whole batch: the one
 * file `fd` when given; else, when `dir` allows and one Maildir is
 * involved, an fsync of its new/; else a syncfs() of each file system.
 * Why syncfs for two or more files: on ext4 and XFS each fsync of a fresh
 * file is its own journal commit and cache flush, N files N flushes;
 * syncfs writes every dirty inode back and flushes once (errors since
 * the directory was opened are reported, Linux >= 5.8).
 */
static void
flush(struct batch *b, int (*pick)(const struct md_item *), int fd, int dir)
{
	int nwant = 0;

	for (int k = 0; k < b->nbox; k++)
		b->box[k].want = b->box[k].err = 0;
	for (int i = 0; i < b->n; i++)
		if (pick(&b->it[i]))
			b->box[b->it[i].box].want = 1;
	for (int k = 0; k < b->nbox; k++)
		nwant += b->box[k].want;
	for (int k = 0; k < b->nbox; k++) {
		struct box *x = &b->box[k];
		if (!x->want)
			continue;
		if (fd >= 0)
			x->err = fsync_retry(fd);
		else if (dir && nwant == 1)
			x->err = fsync_retry(x->md.new);
		else
			x->err = syncfs_once(b, k);
	}
}

/* The one item `pick` selects when it is alone, else -1. */
static int
only_fd(struct batch *b, int (*pick)(const struct md_item *))
{
	int n = 0, fd = -1;

	for (int i = 0; i < b->n; i++)
		if (pick(&b->it[i])) {
			n++;
			fd = b->it[i].fd;
		}
	return n == 1 ? fd : -1;
}

static void
drop_staged(struct batch *b, struct md_item *it, int err, const char *what)
{
	unlinkat(b->box[it->box].md.tmp, it->name, 0);
	it->staged = 0;
	if (err == ECANCELED) {
		dlv_detailf(&it->d, "abandoned: lmtpd's session process is gone");
		it->st = DLV_TEMP;
	} else
		item_fail(it, err, what);
}

static void
link_one(struct batch *b, struct md_item *it)
{
	struct box *x = &b->box[it->box];
	char final[DLV_NAME_MAX + 32];
	int err;

	final_name(it, final, sizeof(final));
	err = linkat(x->md.tmp, it->name, x->md.new, final, 0) < 0 ? errno : 0;
	unlinkat(x->md.tmp, it->name, 0);
	it->staged = 0;
	if (err != 0)
		item_fail(it, err, "move into new/ of");
	else
		it->linked = 1;
}

static void
unlink_final(struct batch *b, struct md_item *it, int err)
{
	char final[DLV_NAME_MAX + 32];

	final_name(it, final, sizeof(final));
	unlinkat(b->box[it->box].md.new, final, 0);
	it->linked = 0;
	item_fail(it, err, "move into new/ of");
}

static int
close_item(struct md_item *it)
{
	int err = 0;

	if (it->fd >= 0 && close(it->fd) < 0)
		err = errno;
	it->fd = -1;
	return err;
}

/* Data: every tmp/ file durable with one flush (POSIX order). */
static void
commit_data(struct batch *b)
{
	flush(b, is_staged, only_fd(b, is_staged), 0);
	for (int i = 0; i < b->n; i++) {
		struct md_item *it = &b->it[i];
		int err;
		if (!it->staged)
			continue;
		err = close_item(it);
		if (b->box[it->box].err != 0)
			err = b->box[it->box].err;
		if (err != 0)
			drop_staged(b, it, err, "write maildir");
	}
}

/* Links: every new/ entry durable with one flush; with one_flush this
 * flush carries the data as well. */
static void
commit_links(struct batch *b)
{
	int shared = 0;

	for (int i = 0; i < b->n; i++)
		shared += b->it[i].linked;
	if (b->one)
		flush(b, is_linked, only_fd(b, is_linked), 0);
	else
		flush(b, is_linked, -1, 1);
	for (int i = 0; i < b->n; i++) {
		struct md_item *it = &b->it[i];
		int err = close_item(it);
		if (!it->linked)
			continue;
		if (b->box[it->box].err != 0)
			err = b->box[it->box].err;
		if (err != 0)
			unlink_final(b, it, err);
		else {
			/* the log shows what the group commit shares */
			dlv_detailf(&it->d, shared > 1 ? "delivered to maildir, %d in one commit" :
			    "delivered to maildir", shared);
			it->st = DLV_OK;
		}
	}
}

void
maildir_deliver_batch(struct md_item *items, int n)
{
	struct batch *b = calloc(1, sizeof(*b));

	for (int i = 0; i < n; i++) {
		items[i].fd = -1;
		items[i].staged = items[i].linked = 0;
		items[i].box = -1;
	}
	if (b == NULL || n > DLV_BATCH_MAX) {
		for (int i = 0; i < n; i++)
			if (items[i].st == DLV_OK)
				item_fail(&items[i], ENOMEM, "deliver to");
		free(b);
		return;
	}
	b->it = items;
	b->n = n;
	b->one = conf_bool(C_lmtpd_maildir_one_flush);
	for (int i = 0; i < n; i++) {
		struct md_item *it = &items[i];
		if (it->st != DLV_OK)
			continue;
		it->box = box_for(b, &it->t);
		if (b->box[it->box].st != DLV_OK) {
			it->st = b->box[it->box].st;
			it->d = b->box[it->box].d;
		} else
			stage(b, it);
	}
	if (!b->one)
		commit_data(b);
	/* the commit point: a session process gone since costs no duplicate */
	int gone = dlv_abandoned != NULL && dlv_abandoned();
	for (int i = 0; i < n; i++) {
		if (!items[i].staged)
			continue;
		if (gone) {
			close_item(&items[i]);
			drop_staged(b, &items[i], ECANCELED, "");
		} else
			link_one(b, &items[i]);
	}
	commit_links(b);
	for (int k = 0; k < b->nbox; k++)
		maildir_close(&b->box[k].md);
	free(b);
}
