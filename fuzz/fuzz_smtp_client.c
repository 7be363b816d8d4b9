/*
 * Fuzz target for the SMTP/LMTP client (lib/smtp_client*.c): whatever a
 * server sends, the client must end with closed() and never crash, hang
 * or leak. The input is the server's side of the conversation, written
 * to the far end of a socketpair before it is half-closed; the first
 * byte picks LMTP or SMTP and whether AUTH is configured. The client runs
 * up to three transactions (MAIL, two RCPTs, pushed DATA) and QUIT.
 */
#include <sys/socket.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "smtp_client.h"

static struct {
	struct event_base *base;
	int closed;
	int txns;
} f;

static void
queue_txn(struct cli_conn *c)
{
	struct cli_mail_params mp = { .size = 10, .body_8bitmime = 1,
	    .envid = "e=1" };
	struct cli_rcpt_params rp = { "SUCCESS", "rfc822;a@x" };
	struct cli_xforward xf = { .name = "n", .addr = "", .helo = "h" };

	f.txns++;
	cli_xforward(c, &xf);
	cli_mail(c, "s@x", &mp);
	cli_rcpt(c, "a@x", &rp);
	cli_rcpt(c, "b@x", NULL);
	cli_data_push(c);
}

static void
on_data_start(struct cli_conn *c, void *a)
{
	(void)a;
	cli_data_write(c, ".dot\nline\r\n", 11);
	cli_data_end(c);
}

static void
on_done(struct cli_conn *c, void *a)
{
	(void)a;
	if (f.txns < 3 && cli_idle(c))
		queue_txn(c);
	else
		cli_quit(c);
}

static void
on_closed(struct cli_conn *c, const struct cli_reply *r, void *a)
{
	(void)a;
	if (r->text == NULL || r->code < 200 || r->code > 599)
		abort();
	f.closed = 1;
	cli_free(c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct cli_callbacks cbs = { .data_start = on_data_start,
	    .done = on_done, .closed = on_closed };
	struct cli_settings s;
	struct bufferevent *bev;
	struct cli_conn *c;
	int sv[2], i;

	if (size < 1 || size > 60000)
		return 0;
	signal(SIGPIPE, SIG_IGN);
	log_init("fuzz", 1, LOG_LVL_CRIT);
	memset(&f, 0, sizeof(f));
	f.base = event_base_new();
	cli_settings_default(&s);
	s.lmtp = data[0] & 1;
	s.helo_name = "client.test";
	s.max_pipeline = 1 + (data[0] >> 4);
	if (data[0] & 2) {
		s.auth_user = "u";
		s.auth_pass = "p";
	}
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
	if (write(sv[1], data + 1, size - 1) < 0)
		abort();
	shutdown(sv[1], SHUT_WR);
	bev = bufferevent_socket_new(f.base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	c = cli_attach(f.base, bev, &s, &cbs, NULL);
	queue_txn(c);
	/* The input ends in EOF, so the client must be closed quickly. */
	for (i = 0; i < 10000 && !f.closed; i++)
		event_base_loop(f.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	if (!f.closed)
		abort();
	close(sv[1]);
	event_base_free(f.base);
	return 0;
}
