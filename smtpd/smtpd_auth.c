/*
 * SMTP AUTH (RFC 4954) in smtpd: PLAIN (RFC 4616) and LOGIN, checked
 * against the password= crypt(3) hashes of the users table (lib/
 * local_user.h) with libcrypt and a constant-time comparison. Offered
 * inside TLS only (smtpd_tls_auth_only), or in plaintext to mynetworks
 * when smtpd_sasl_plaintext_mynetworks says so; never before TLS on a
 * submission port.
 *
 * The hash is computed on lib/pwcheck's threads (a bcrypt hash takes
 * ~200 ms: on the loop it would stall every session); the session reads
 * nothing meanwhile.
 *
 * A failure is answered after a pause (AUTH_FAIL_DELAY, a timer: the
 * loop goes on for the others) and counted per client (its address cut
 * to the prefix lengths, policy_client_key(): one IPv6 host holds a whole
 * prefix); past
 * smtpd_auth_failure_limit within AUTH_FAIL_WINDOW the client gets 421
 * 4.7.0 and, while the count lasts, 421 at its next AUTH. A check is
 * counted as a failure when it starts and forgiven when it passes, so
 * sessions guessing side by side get no more checks than the limit; a
 * session whose check would pass the limit only because of checks still
 * running waits for them (AUTH_WAIT_STEP, at most AUTH_WAIT_MAX): they may
 * pass (an application logging in from several sessions at once), and
 * "too many failed authentications" would be wrong. The table of counts
 * is bounded (AUTH_FAIL_SLOTS, the oldest entry is reused).
 *
 * Also here: the MAIL FROM ownership check for authenticated clients
 * (smtpd_reject_sender_login_mismatch).
 */
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "conf.h"
#include "local_user.h"
#include "log.h"
#include "pwcheck.h"
#include "smtpd.h"
#include "smtpd_tls.h"
#include "xalloc.h"

#define AUTH_FAIL_DELAY		1	/* seconds before a 535 */
#define AUTH_FAIL_WINDOW	600	/* seconds a failure counts */
#define AUTH_FAIL_SLOTS		1024	/* client addresses remembered */
#define AUTH_WAIT_STEP_MS	100	/* a check waiting for others: retry */
#define AUTH_WAIT_MAX		30	/* seconds, then 454 4.7.0 */
#define AUTH_NAME_MAX		255	/* authcid, authzid */
#define AUTH_PASS_MAX		256
/* A response: base64 of authzid NUL authcid NUL password. */
#define AUTH_RESPONSE_MAX	(((AUTH_NAME_MAX * 2 + AUTH_PASS_MAX + 2) + 2) / 3 * 4)

enum auth_step {
	A_NONE, A_PLAIN, A_LOGIN_USER, A_LOGIN_PASS, A_WAIT, A_CHECK, A_DELAY
};

struct auth_state {
	enum auth_step step;
	const char *mech;
	char user[AUTH_NAME_MAX + 1];	/* LOGIN: the name, until the password;
					 * then the name being checked */
	struct pwcheck *check;		/* the hash being computed */
	int real;			/* it is the user's (not the dummy) */
	int reserved;			/* counted as a failure until it passes */
	char pass[AUTH_PASS_MAX + 1];	/* A_WAIT: the password to check */
	time_t wait_since;
	struct event *delay_ev, *wait_ev;
	struct session *s;
};

/* ---- failures per client address --------------------------------------------- */

static struct fail_slot {
	char addr[INET6_ADDRSTRLEN + 8];
	int count;		/* failures, and checks running (counted so) */
	int checking;		/* checks running */
	time_t last;
} fails[AUTH_FAIL_SLOTS];

static struct fail_slot *
fail_find(const char *addr, int create)
{
	struct fail_slot *reuse = NULL;
	time_t now = time(NULL);

	for (int i = 0; i < AUTH_FAIL_SLOTS; i++) {
		struct fail_slot *f = &fails[i];

		if (f->count > 0 && now - f->last > AUTH_FAIL_WINDOW)
			f->count = f->checking = 0;	/* forgiven */
		if (f->count > 0 && strcmp(f->addr, addr) == 0)
			return f;
		/* a free slot, else the one idle longest */
		if (reuse == NULL || (reuse->count > 0 &&
		    (f->count == 0 || f->last < reuse->last)))
			reuse = f;
	}
	if (!create)
		return NULL;
	snprintf(reuse->addr, sizeof(reuse->addr), "%s", addr);
	reuse->count = reuse->checking = 0;
	return reuse;
}

/* Failures known (not counting checks still running). */
static int
fail_count(const char *addr)
{
	struct fail_slot *f = fail_find(addr, 0);

	return f ? f->count - f->checking : 0;
}

static int
fail_add(const char *addr)
{
	struct fail_slot *f = fail_find(addr, 1);

	f->count++;
	f->last = time(NULL);
	return f->count;
}

enum { CHECK_GO, CHECK_WAIT, CHECK_REFUSE };

/* May a check start (it is then counted as a failure until it passes)?
 * Not past limit: CHECK_WAIT while checks running fill the room. */
static int
check_begin(const char *addr, int limit)
{
	struct fail_slot *f = fail_find(addr, 1);

	if (f->count - f->checking >= limit)
		return CHECK_REFUSE;
	if (f->count >= limit)
		return CHECK_WAIT;
	f->count++;
	f->checking++;
	f->last = time(NULL);
	return CHECK_GO;
}

/* A check ended (or was given up): a pass is no failure. */
static void
check_end(const char *addr, int passed)
{
	struct fail_slot *f = fail_find(addr, 0);

	if (f == NULL)
		return;
	if (f->checking > 0)
		f->checking--;
	if (passed && f->count > 0)
		f->count--;
}

/* ---- base64 (RFC 4648 section 4), strict ---------------------------------------- */

static int
b64val(unsigned char c)
{
	static const char a[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c ? strchr(a, c) : NULL;

	return p ? (int)(p - a) : -1;
}

/* Decode; the length, or -1 if malformed or longer than outsz - 1 (out
 * is NUL-terminated; it may contain NULs of its own). */
static int
b64_decode(const char *in, size_t n, char *out, size_t outsz)
{
	size_t o = 0;

	if (n % 4 != 0)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		int v[4], pad = 0;

		for (int k = 0; k < 4; k++) {
			v[k] = b64val((unsigned char)in[i + k]);
			if (in[i + k] == '=' && i + 4 == n && k >= 2 &&
			    (k == 3 || in[i + 3] == '='))
				v[k] = 0, pad++;
			else if (v[k] < 0)
				return -1;
		}
		if (o + 3 - (size_t)pad >= outsz)
			return -1;
		out[o++] = (char)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[o++] = (char)((v[1] & 15) << 4 | v[2] >> 2);
		if (pad < 1)
			out[o++] = (char)((v[2] & 3) << 6 | v[3]);
	}
	out[o] = '\0';
	return (int)o;
}

/* ---- password check --------------------------------------------------------- */

/* A setting in libcrypt's default method, hashed against when the user
 * has no usable hash, so that the answer takes as long either way (no
 * telling which logins exist by the time it takes). */
static const char *
dummy_setting(void)
{
	static char setting[CRYPT_GENSALT_OUTPUT_SIZE];

	if (setting[0] == '\0' &&
	    crypt_gensalt_rn(NULL, 0, NULL, 0, setting, sizeof(setting)) == NULL)
		snprintf(setting, sizeof(setting), "$6$hermoddummysalt$");
	return setting;
}

/* The hash to check the password against: the user's, or when there is
 * no usable one the dummy (the answer then is "no" after the same work).
 * NULL: the tables cannot be read now. */
static const char *
user_hash(const char *user, struct local_user *lu)
{
	int r = local_user_find(user, NULL, lu);

	if (r == LU_TEMPFAIL)
		return NULL;
	/* a locked or legacy hash: the same work as a wrong password */
	if (r == LU_FOUND && lu->source == LU_SRC_USERS &&
	    pwcheck_usable(lu->password))
		return lu->password;
	return dummy_setting();
}

/* ---- the exchange ---------------------------------------------------------------- */

int
auth_offered(const struct session *s)
{
	if (!conf_bool(C_smtpd_sasl_auth_enable) || s->auth_user != NULL)
		return 0;
	if (s->tls)
		return 1;
	if (s->kind == LK_SUBMISSION)	/* RFC 8314: never in clear there */
		return 0;
	return !conf_bool(C_smtpd_tls_auth_only) ||
	    (s->trusted && conf_bool(C_smtpd_sasl_plaintext_mynetworks));
}

static struct auth_state *
state(struct session *s)
{
	if (s->auth == NULL) {
		s->auth = xcalloc(1, sizeof(*s->auth));
		s->auth->s = s;
	}
	return s->auth;
}

/* Hold the session (nothing read) in step `step` until the timer
 * *ev (made on first use) fires cb after tv. */
static void
pause_in(struct session *s, enum auth_step step, struct event **ev,
    event_callback_fn cb, const struct timeval *tv)
{
	if (*ev == NULL && (*ev = evtimer_new(s->base, cb, s->auth)) == NULL)
		fatal("smtpd: cannot set up a timer");
	s->auth->step = step;
	session_pause(s);	/* nothing is read until the answer */
	evtimer_add(*ev, tv);
}

static void
on_delay(evutil_socket_t fd, short ev, void *arg)
{
	struct auth_state *a = arg;
	struct session *s = a->s;

	(void)fd;
	(void)ev;
	a->step = A_NONE;
	session_resume(s);
	if (fail_count(s->ckey.text) >= conf_num(C_smtpd_auth_failure_limit)) {
		log_warn("too many AUTH failures from %s", session_client(s));
		session_close(s, "421 4.7.0 %s Error: too many failed "
		    "authentications", conf_str(C_myhostname));
		return;
	}
	session_error(s, "535 5.7.8 Error: authentication failed");
}

static void
failed(struct session *s, const char *user)
{
	struct auth_state *a = s->auth;
	struct timeval tv = { AUTH_FAIL_DELAY, 0 };

	if (!a->reserved)
		fail_add(s->ckey.text);
	a->reserved = 0;
	log_warn("%s: SASL %s authentication failed: user=<%.100s>",
	    session_client(s), a->mech, user);
	pause_in(s, A_DELAY, &a->delay_ev, on_delay, &tv);
}

/* The hash check is done (on the loop). */
static void
on_checked(void *arg, int ok)
{
	struct auth_state *a = arg;
	struct session *s = a->s;

	a->check = NULL;
	a->step = A_NONE;
	check_end(s->ckey.text, ok && a->real);
	if (!ok || !a->real) {
		failed(s, a->user);
		return;
	}
	a->reserved = 0;
	s->auth_user = xstrdup(a->user);
	log_info("%s: sasl_method=%s, sasl_username=%s", session_client(s),
	    a->mech, a->user);
	session_reply(s, "235 2.7.0 Authentication successful");
	session_resume(s);
}

/* No check: the session goes on with reply (a temporary failure). */
static void
give_up(struct session *s, const char *reply)
{
	struct auth_state *a = s->auth;

	OPENSSL_cleanse(a->pass, sizeof(a->pass));
	a->step = A_NONE;
	session_resume(s);
	session_error(s, "%s", reply);
}

static void check_start(struct session *s);

static void
on_wait(evutil_socket_t fd, short ev, void *arg)
{
	struct auth_state *a = arg;

	(void)fd;
	(void)ev;
	check_start(a->s);
}

static void
wait_for_others(struct session *s)
{
	struct timeval tv = { 0, AUTH_WAIT_STEP_MS * 1000 };

	pause_in(s, A_WAIT, &s->auth->wait_ev, on_wait, &tv);
}

/* Check a->pass against a->user's hash, when the failure count allows. */
static void
check_start(struct session *s)
{
	struct auth_state *a = s->auth;
	struct local_user lu;
	const char *hash;

	switch (check_begin(s->ckey.text, conf_num(C_smtpd_auth_failure_limit))) {
	case CHECK_WAIT:
		if (time(NULL) - a->wait_since < AUTH_WAIT_MAX)
			wait_for_others(s);
		else
			give_up(s, "454 4.7.0 Temporary authentication failure");
		return;
	case CHECK_REFUSE:
		OPENSSL_cleanse(a->pass, sizeof(a->pass));
		a->step = A_NONE;
		session_resume(s);
		session_close(s, "421 4.7.0 %s Error: too many failed "
		    "authentications", conf_str(C_myhostname));
		return;
	}
	/* looked up once the check may start: a waiting session costs
	 * no lookups */
	if ((hash = user_hash(a->user, &lu)) == NULL ||
	    (a->check = pwcheck_start(s->base, hash, a->pass, on_checked,
	    a)) == NULL) {	/* tables unreadable; too many checks waiting */
		check_end(s->ckey.text, 1);
		give_up(s, "454 4.7.0 Temporary authentication failure");
		return;
	}
	OPENSSL_cleanse(a->pass, sizeof(a->pass));
	a->reserved = 1;
	a->real = hash != dummy_setting();
	a->step = A_CHECK;
	session_pause(s);	/* nothing is read until the answer */
}

static void
finish(struct session *s, const char *authzid, const char *user,
    const char *pass)
{
	struct auth_state *a = s->auth;

	a->step = A_NONE;
	if (strlen(user) == 0 || strlen(user) > AUTH_NAME_MAX ||
	    strlen(pass) > AUTH_PASS_MAX || (authzid[0] != '\0' &&
	    strcmp(authzid, user) != 0)) {
		failed(s, user);
		return;
	}
	if (user != a->user)
		snprintf(a->user, sizeof(a->user), "%s", user);
	snprintf(a->pass, sizeof(a->pass), "%s", pass);
	a->wait_since = time(NULL);
	check_start(s);
}

/* One decoded client response for the current step. */
static void
response(struct session *s, const char *buf, int n)
{
	struct auth_state *a = s->auth;
	const char *authcid, *pass;

	switch (a->step) {
	case A_PLAIN:
		/* authzid NUL authcid NUL password */
		authcid = memchr(buf, '\0', (size_t)n);
		pass = authcid ? memchr(authcid + 1, '\0',
		    (size_t)(n - (authcid + 1 - buf))) : NULL;
		/* passwd holds no NUL (RFC 4616 2): one would cut it short,
		 * and "password NUL anything" would pass */
		if (pass == NULL || strlen(pass + 1) != (size_t)(n - (pass + 1 - buf))) {
			a->step = A_NONE;
			session_error(s, "501 5.5.2 Error: malformed PLAIN response");
			return;
		}
		finish(s, buf, authcid + 1, pass + 1);
		return;
	case A_LOGIN_USER:
		if ((size_t)n != strlen(buf) || n > AUTH_NAME_MAX) {
			a->step = A_NONE;
			session_error(s, "501 5.5.2 Error: malformed user name");
			return;
		}
		snprintf(a->user, sizeof(a->user), "%s", buf);
		a->step = A_LOGIN_PASS;
		session_reply(s, "334 UGFzc3dvcmQ6");	/* "Password:" */
		return;
	case A_LOGIN_PASS:
		finish(s, "", a->user, (size_t)n == strlen(buf) ? buf : "");
		return;
	default:
		return;
	}
}

int
auth_continue(struct session *s, const char *line, size_t len)
{
	char buf[AUTH_RESPONSE_MAX];
	int n;

	if (s->auth == NULL || s->auth->step == A_NONE ||
	    s->auth->step == A_WAIT || s->auth->step == A_CHECK ||
	    s->auth->step == A_DELAY)
		return 0;
	if (len == 1 && line[0] == '*') {	/* RFC 4954 4: cancelled */
		s->auth->step = A_NONE;
		session_error(s, "501 5.0.0 Authentication aborted");
		return 1;
	}
	if (len > AUTH_RESPONSE_MAX) {
		s->auth->step = A_NONE;
		session_error(s, "500 5.5.6 Authentication exchange line is too long");
		return 1;
	}
	if ((n = b64_decode(line, len, buf, sizeof(buf))) < 0) {
		s->auth->step = A_NONE;
		session_error(s, "501 5.5.2 Error: invalid base64 data");
		return 1;
	}
	response(s, buf, n);
	OPENSSL_cleanse(buf, sizeof(buf));
	return 1;
}

/* A response longer than a command line never reaches auth_continue():
 * the engine drops it. It still ends the exchange (RFC 4954 4), or the
 * client's next command would be read as a response. */
int
auth_line_too_long(struct session *s)
{
	if (s->auth == NULL || (s->auth->step != A_PLAIN &&
	    s->auth->step != A_LOGIN_USER && s->auth->step != A_LOGIN_PASS))
		return 0;
	s->auth->step = A_NONE;
	session_reply(s, "500 5.5.6 Authentication exchange line is too long");
	return 1;
}

/* Why AUTH cannot run now, or NULL. */
static const char *
auth_refusal(const struct session *s)
{
	if (!conf_bool(C_smtpd_sasl_auth_enable))
		return "503 5.5.1 Error: authentication not enabled";
	if (session_st(s) == ST_GREET || !s->esmtp)
		return "503 5.5.1 Error: send EHLO first";
	if (s->auth_user != NULL)
		return "503 5.5.1 Error: already authenticated";
	if (s->tx != NULL)
		return "503 5.5.1 Error: MAIL transaction in progress";
	if (!auth_offered(s))
		return smtpd_tls_available() && !s->tls ?
		    "530 5.7.0 Must issue a STARTTLS command first" :
		    "503 5.5.1 Error: authentication not enabled";
	return NULL;
}

void
cmd_auth(struct session *s, char *arg)
{
	const char *no = auth_refusal(s), *ir;
	struct auth_state *a;
	size_t mlen = strcspn(arg, " ");

	if (no != NULL) {
		session_error(s, "%s", no);
		return;
	}
	if (fail_count(s->ckey.text) >= conf_num(C_smtpd_auth_failure_limit)) {
		session_close(s, "421 4.7.0 %s Error: too many failed "
		    "authentications", conf_str(C_myhostname));
		return;
	}
	a = state(s);
	ir = arg[mlen] == ' ' ? arg + mlen + 1 : NULL;
	if (mlen == 5 && strncasecmp(arg, "PLAIN", 5) == 0) {
		a->mech = "PLAIN";
		a->step = A_PLAIN;
	} else if (mlen == 5 && strncasecmp(arg, "LOGIN", 5) == 0) {
		a->mech = "LOGIN";
		a->step = A_LOGIN_USER;
	} else {
		session_error(s, "504 5.5.4 Error: unsupported authentication mechanism");
		return;
	}
	if (ir == NULL)
		session_reply(s, a->step == A_PLAIN ? "334 " : "334 VXNlcm5hbWU6");
	else if (strcmp(ir, "=") == 0)	/* RFC 4954: an empty response */
		response(s, "", 0);
	else
		auth_continue(s, ir, strlen(ir));
}

/* ---- the envelope sender of an authenticated client -------------------------- */

const char *
auth_sender_check(struct session *s, const char *sender)
{
	struct local_user mine, theirs;

	if (s->auth_user == NULL || sender[0] == '\0' ||
	    !conf_bool(C_smtpd_reject_sender_login_mismatch))
		return NULL;
	if (strcasecmp(sender, s->auth_user) == 0)
		return NULL;
	/* Both name the same users-table entry ("alice" owns
	 * alice@every-local-domain and alice+ext@...). */
	if (local_user_find(s->auth_user, NULL, &mine) == LU_FOUND &&
	    local_user_find(sender, NULL, &theirs) == LU_FOUND &&
	    mine.source == LU_SRC_USERS && theirs.source == LU_SRC_USERS &&
	    strcmp(mine.key, theirs.key) == 0)
		return NULL;
	return "553 5.7.1 Sender address rejected: not owned by user";
}

void
auth_reset(struct session *s)
{
	free(s->auth_user);
	s->auth_user = NULL;
	if (s->auth != NULL)
		s->auth->step = A_NONE;
}

void
auth_free(struct session *s)
{
	if (s->auth == NULL)
		return;
	if (s->auth->delay_ev != NULL)
		event_free(s->auth->delay_ev);
	if (s->auth->wait_ev != NULL)
		event_free(s->auth->wait_ev);
	if (s->auth->check != NULL) {	/* its reserved failure stays counted */
		pwcheck_cancel(s->auth->check);
		check_end(s->ckey.text, 0);
	}
	OPENSSL_cleanse(s->auth->pass, sizeof(s->auth->pass));
	free(s->auth);
	s->auth = NULL;
}
