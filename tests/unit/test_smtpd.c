/*
 * Unit tests for smtpd's pure pieces (smtpd is a program, so its files are
 * compiled in): the path parser and its bounds (RFC 5321 4.5.3.1), ESMTP
 * parameters, the Received: header and its sanitising, the hop counter
 * over any chunking, mynetworks matching and the connection counters.
 */
#include <arpa/inet.h>
#include <stdlib.h>

#include "../../lib/log.h"
#include "../../smtpd/policy.c"
#include "../../smtpd/received.c"
#include "../../smtpd/smtp_parse.c"
#include "unit.h"

static char *
rep(char c, int n)
{
	static char b[4][600];
	static int w;

	w = (w + 1) % 4;
	memset(b[w], c, (size_t)n);
	b[w][n] = '\0';
	return b[w];
}

TEST(paths)
{
	static const struct { const char *in; int mail; const char *out; } t[] = {
		{ "<a@b.test>", 1, "a@b.test" },
		{ " <a@b.test>", 1, "a@b.test" },
		{ "<>", 1, "" },
		{ "<>", 0, NULL },
		{ "<@r.test,@s.test:a@b.test>", 0, "a@b.test" },
		{ "<@r.test:>", 0, NULL },
		{ "<\"a b\"@c.test>", 1, "\"a b\"@c.test" },
		{ "<\"a\\\"b\"@c.test>", 1, "\"a\\\"b\"@c.test" },
		{ "<postmaster>", 0, "postmaster" },
		{ "<postmaster>", 1, NULL },
		{ "<a@[192.0.2.1]>", 0, "a@[192.0.2.1]" },
		{ "<a@[]>", 0, NULL },
		{ "<a@b.test>x", 0, NULL },
		{ "<a@b.test", 0, NULL },
		{ "a@b.test", 0, NULL },
		{ "<a..b@c.test>", 0, NULL },
		{ "<a.@c.test>", 0, NULL },
		{ "<a@c-.test>", 0, NULL },
		{ "<a@c.test.>", 0, NULL },
		{ "<a\x01@c.test>", 0, NULL },
		{ "<\"a\x01\"@c.test>", 0, NULL },
		{ "<j\xc3\xb6rg@b.test>", 0, "j\xc3\xb6rg@b.test" },
		{ "<j\xc3@b.test>", 0, NULL },		/* broken UTF-8 */
		{ "<j\xed\xa0\x80@b.test>", 0, NULL },	/* surrogate */
	};
	char out[SMTPD_PATH_MAX + 1];
	const char *rest;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const char *err = parse_path(t[i].in, t[i].mail, 1, out, sizeof(out), &rest);

		if (t[i].out == NULL) {
			CHECK(err != NULL);
		} else {
			CHECK(err == NULL);
			if (err == NULL)
				CHECK_STR(out, t[i].out);
		}
	}
	CHECK(parse_path("<a@b.test>  SIZE=5 BODY=8BITMIME", 1, 1, out, sizeof(out), &rest) == NULL);
	CHECK_STR(rest, "SIZE=5 BODY=8BITMIME");
}

TEST(path_bounds)
{
	char in[700], out[SMTPD_PATH_MAX + 1];
	const char *rest;
	/* local part: 64 ok, 65 not (quotes do not count) */
	snprintf(in, sizeof(in), "<%s@b.test>", rep('a', 64));
	CHECK(parse_path(in, 0, 0, out, sizeof(out), &rest) == NULL);
	snprintf(in, sizeof(in), "<%s@b.test>", rep('a', 65));
	CHECK(parse_path(in, 0, 0, out, sizeof(out), &rest) != NULL);
	snprintf(in, sizeof(in), "<\"%s\"@b.test>", rep('a', 64));
	CHECK(parse_path(in, 0, 0, out, sizeof(out), &rest) == NULL);
	/* whole path: 256 ok, 257 not */
	snprintf(in, sizeof(in), "<%s@%s.%s.%s>", rep('a', 64), rep('b', 63),
	    rep('c', 63), rep('d', 63));
	CHECK_INT(strlen(in), 256 + 2);
	CHECK(parse_path(in, 0, 0, out, sizeof(out), &rest) == NULL);
	CHECK_INT(strlen(out), 256);
	snprintf(in, sizeof(in), "<%s@%s.%s.%s>", rep('a', 64), rep('b', 63),
	    rep('c', 63), rep('d', 64));
	CHECK(parse_path(in, 0, 0, out, sizeof(out), &rest) != NULL);
}

TEST(params)
{
	struct session s;
	struct txn tx;
	struct rcpt r;

	memset(&s, 0, sizeof(s));
	memset(&tx, 0, sizeof(tx));
	s.tx = &tx;
	CHECK(parse_mail_params(&s, "SIZE=10") != NULL);	/* HELO: no params */
	s.esmtp = 1;
	CHECK(parse_mail_params(&s, "") == NULL);
	CHECK(parse_mail_params(&s, "SIZE=10 BODY=8bitmime SMTPUTF8 RET=hdrs ENVID=a+2Bb") == NULL);
	CHECK_INT(tx.size_param, 10);
	CHECK_INT(tx.body8, 1);
	CHECK_INT(tx.smtputf8, 1);
	CHECK_STR(tx.ret, "HDRS");
	CHECK_STR(tx.envid, "a+b");
	free(tx.envid);
	memset(&tx, 0, sizeof(tx));
	CHECK_STR(parse_mail_params(&s, "SIZE=52428801"), "552 5.3.4 Message size exceeds fixed limit");
	CHECK(parse_mail_params(&s, "SIZE=52428800") == NULL);
	CHECK(parse_mail_params(&s, "SIZE=") != NULL);
	CHECK(parse_mail_params(&s, "SIZE=99999999999999999999") != NULL);
	CHECK_STR(parse_mail_params(&s, "FOO=1"), "555 5.5.4 Unsupported option");
	CHECK_STR(parse_mail_params(&s, "BODY=BINARYMIME"), "555 5.5.4 Unsupported option: BODY");
	CHECK(parse_mail_params(&s, "ENVID=a=b") != NULL);
	CHECK(parse_mail_params(&s, "SMTPUTF8=yes") != NULL);
	memset(&tx, 0, sizeof(tx));
	snprintf(tx.sender, sizeof(tx.sender), "x");
	CHECK(parse_mail_params(&s, rep('E', 0)) == NULL);
	/* ENVID: 100 octets ok, 101 not */
	char envid[200];
	snprintf(envid, sizeof(envid), "ENVID=%s", rep('e', 100));
	CHECK(parse_mail_params(&s, envid) == NULL);
	free(tx.envid);
	tx.envid = NULL;
	snprintf(envid, sizeof(envid), "ENVID=%s", rep('e', 101));
	CHECK(parse_mail_params(&s, envid) != NULL);
	free(tx.envid);

	memset(&r, 0, sizeof(r));
	CHECK(parse_rcpt_params(&s, "NOTIFY=success,delay ORCPT=rfc822;a+40b", &r) == NULL);
	CHECK_STR(r.notify, "SUCCESS,DELAY");
	CHECK_STR(r.orcpt, "rfc822;a@b");
	free(r.notify);
	free(r.orcpt);
	static const char *const bad[] = { "NOTIFY=NEVER,SUCCESS", "NOTIFY=SUCCESS,SUCCESS",
	    "NOTIFY=", "NOTIFY=SOMETIMES", "ORCPT=rfc822", "ORCPT=;x", "ORCPT=rfc822;",
	    "FOO", "NOTIFY=NEVER NOTIFY=NEVER" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&r, 0, sizeof(r));
		CHECK(parse_rcpt_params(&s, bad[i], &r) != NULL);
		free(r.notify);
		free(r.orcpt);
	}
}

TEST(received)
{
	struct buf b;
	struct received_info ri = {
		.helo = "client.example", .client_name = "unknown",
		.client_addr = "192.0.2.1", .by = "mx.example.test",
		.proto = "ESMTP", .qid = "0123456789ABCDEF", .rcpt = "a@b.test",
		.when = 0,
	};

	buf_init(&b, 64 * 1024);
	CHECK_INT(received_format(&b, &ri), 0);
	CHECK_STR(b.data, "Received: from client.example (unknown [192.0.2.1])\r\n"
	    "\tby mx.example.test (Hermod) with ESMTP id 0123456789ABCDEF\r\n"
	    "\tfor <a@b.test>; Thu, 01 Jan 1970 00:00:00 +0000 (UTC)\r\n");
	buf_reset(&b);
	ri.helo = "(evil)\r\nX-Injected: 1";
	ri.rcpt = NULL;
	ri.qid = NULL;
	ri.tls = "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)";
	CHECK_INT(received_format(&b, &ri), 0);
	CHECK_STR(b.data, "Received: from ?evil???X-Injected:?1 (unknown [192.0.2.1])\r\n"
	    "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
	    "\tby mx.example.test (Hermod) with ESMTP;\r\n"
	    "\tThu, 01 Jan 1970 00:00:00 +0000 (UTC)\r\n");
	buf_reset(&b);
	ri.helo = rep('h', 400);
	CHECK_INT(received_format(&b, &ri), 0);
	CHECK(strstr(b.data, rep('h', 255)) != NULL);
	CHECK(strstr(b.data, rep('h', 256)) == NULL);
	buf_free(&b);
	buf_init(&b, 10);		/* too small: fails, buffer unchanged */
	CHECK_INT(received_format(&b, &ri), -1);
	CHECK_INT(b.len, 0);
	buf_free(&b);

	CHECK_STR(received_proto(0, 0, 0, 0), "SMTP");
	CHECK_STR(received_proto(1, 0, 0, 0), "ESMTP");
	CHECK_STR(received_proto(1, 1, 0, 0), "ESMTPS");
	CHECK_STR(received_proto(1, 0, 1, 0), "ESMTPA");
	CHECK_STR(received_proto(1, 1, 1, 0), "ESMTPSA");
	CHECK_STR(received_proto(1, 1, 1, 1), "UTF8SMTPSA");
}

TEST(hopcount)
{
	static const char msg[] = "Received: a\r\nreceived: b\r\n\tReceived: folded\r\n"
	    "X-Received: c\r\nRECEIVED:d\r\nReceived : e\r\n\r\nReceived: body\r\n";
	struct hopcount h;

	for (size_t step = 1; step <= sizeof(msg); step++) {
		hopcount_init(&h);
		for (size_t i = 0; i < sizeof(msg) - 1; i += step)
			hopcount_feed(&h, msg + i, i + step < sizeof(msg) - 1 ? step : sizeof(msg) - 1 - i);
		CHECK_INT(h.count, 3);
		CHECK_INT(h.in_header, 0);
	}
	hopcount_init(&h);	/* LF-only empty line also ends the header */
	hopcount_feed(&h, "Received: a\n\nReceived: b\n", 25);
	CHECK_INT(h.count, 1);
}

static struct sockaddr_storage ss;

static const struct sockaddr *
sa(const char *ip)
{
	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, ip, &s6->sin6_addr);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		inet_pton(AF_INET, ip, &s4->sin_addr);
	}
	return (const struct sockaddr *)&ss;
}

TEST(mynetworks)
{
	CHECK_INT(conf_set("mynetworks", "192.0.2.0/24 [2001:db8::]/32 ::1 10.0.0.1 "
	    "1.2.3.4/33 junk 172.16.0.0/12", NULL), 0);
	CHECK(policy_trusted(sa("192.0.2.77")));
	CHECK(!policy_trusted(sa("192.0.3.1")));
	CHECK(policy_trusted(sa("2001:db8:1::1")));
	CHECK(!policy_trusted(sa("2001:db9::1")));
	CHECK(policy_trusted(sa("::1")));
	CHECK(!policy_trusted(sa("::2")));
	CHECK(policy_trusted(sa("10.0.0.1")));
	CHECK(!policy_trusted(sa("10.0.0.2")));
	CHECK(!policy_trusted(sa("1.2.3.4")));		/* /33 ignored */
	CHECK(policy_trusted(sa("172.31.255.255")));
	CHECK(!policy_trusted(sa("172.32.0.0")));
	CHECK(policy_trusted(sa("::ffff:192.0.2.1")));	/* v4-mapped */
	CHECK_INT(policy_routing_trick("a%b", 3), 1);
	CHECK_INT(policy_routing_trick("a!b", 3), 1);
	CHECK_INT(policy_routing_trick("\"a@b\"", 5), 1);
	CHECK_INT(policy_routing_trick("a.b+c", 5), 0);
}

static struct policy_key
key_of(const char *ip)
{
	struct policy_key k;

	policy_client_key(sa(ip), &k);
	return k;
}

TEST(connection_limits)
{
	char why[POLICY_REPLY_MAX];
	struct policy_key a = key_of("192.0.2.1"), b = key_of("192.0.2.2");

	CHECK_INT(conf_set("smtpd_client_connection_count_limit", "2", NULL), 0);
	CHECK_INT(conf_set("smtpd_max_connections", "4", NULL), 0);
	CHECK_INT(policy_conn_open(&a, 0, why, sizeof(why)), 0);
	CHECK_INT(policy_conn_open(&a, 0, why, sizeof(why)), 0);
	CHECK_INT(policy_conn_open(&a, 0, why, sizeof(why)), -1);
	CHECK(strncmp(why, "421 4.7.0 ", 10) == 0);
	CHECK_INT(policy_conn_open(&a, 1, why, sizeof(why)), 0);	/* trusted */
	CHECK_INT(policy_conn_from(&a), 3);
	CHECK_INT(policy_conn_open(&b, 0, why, sizeof(why)), 0);
	CHECK_INT(policy_conn_open(&b, 0, why, sizeof(why)), -1);	/* total 4 */
	CHECK_INT(policy_conn_total(), 4);
	policy_conn_close(&a);
	CHECK_INT(policy_conn_open(&b, 0, why, sizeof(why)), 0);
	for (int i = 0; i < 2; i++) {
		policy_conn_close(&a);
		policy_conn_close(&b);
	}
	CHECK_INT(policy_conn_total(), 0);
	CHECK_INT(policy_conn_from(&a), 0);
	policy_conn_close(&a);	/* not counted: no-op */
	CHECK_INT(policy_conn_total(), 0);
}

/* Postfix's anvil prefixes: IPv6 hosts in one /84 are one client. */
TEST(client_prefixes)
{
	char why[POLICY_REPLY_MAX];
	struct policy_key k1, k2, k3;

	CHECK_STR(key_of("192.0.2.1").text, "192.0.2.1");
	CHECK_STR(key_of("::ffff:192.0.2.1").text, "192.0.2.1");
	CHECK_STR(key_of("2001:db8:1:2:3:4:5:6").text, "2001:db8:1:2:3::/84");
	CHECK_STR(key_of("2001:db8:1:2:3:f234:5:6").text, "2001:db8:1:2:3:f000::/84");
	CHECK_INT(conf_set("smtpd_client_ipv4_prefix_length", "24", NULL), 0);
	CHECK_INT(conf_set("smtpd_client_ipv6_prefix_length", "64", NULL), 0);
	CHECK_STR(key_of("192.0.2.77").text, "192.0.2.0/24");
	k1 = key_of("2001:db8:1:2::1");
	k2 = key_of("2001:db8:1:2:ffff::9");
	k3 = key_of("2001:db8:1:3::1");
	CHECK_STR(k1.text, "2001:db8:1:2::/64");
	CHECK_INT(conf_set("smtpd_client_connection_count_limit", "2", NULL), 0);
	CHECK_INT(conf_set("smtpd_max_connections", "100", NULL), 0);
	CHECK_INT(policy_conn_open(&k1, 0, why, sizeof(why)), 0);
	CHECK_INT(policy_conn_open(&k2, 0, why, sizeof(why)), 0);
	CHECK_INT(policy_conn_open(&k2, 0, why, sizeof(why)), -1);	/* same /64 */
	CHECK_INT(policy_conn_open(&k3, 0, why, sizeof(why)), 0);
	CHECK_INT(policy_conn_from(&k1), 2);
	/* a reload that changes the length: sessions keep their key */
	CHECK_INT(conf_set("smtpd_client_ipv6_prefix_length", "128", NULL), 0);
	policy_conn_close(&k1);
	policy_conn_close(&k2);
	policy_conn_close(&k3);
	CHECK_INT(policy_conn_total(), 0);
	CHECK_INT(conf_set("smtpd_client_ipv4_prefix_length", "32", NULL), 0);
	CHECK_INT(conf_set("smtpd_client_ipv6_prefix_length", "84", NULL), 0);
}

int
main(void)
{
	setenv("TZ", "UTC", 1);
	log_init("test_smtpd", 1, LOG_LVL_CRIT);
	conf_load(NULL, 1, stderr);
	RUN(paths);
	RUN(path_bounds);
	RUN(params);
	RUN(received);
	RUN(hopcount);
	RUN(mynetworks);
	RUN(connection_limits);
	RUN(client_prefixes);
	return unit_done("test_smtpd");
}
