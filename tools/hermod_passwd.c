/*
 * hermod passwd [-m yescrypt|sha512]: read a password (twice, without
 * echo, from a terminal; once from stdin otherwise) and print a crypt(3)
 * hash for the password= field of the users table (hermod-users(5)).
 * yescrypt ("$y$") by default, SHA-512-crypt ("$6$") when libcrypt has no
 * yescrypt or -m sha512 asks for it.
 */
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "hermod.h"

#define PASS_MAX 1024	/* longest password read */

/* One line from fd 0 into buf without the newline; echo off on a tty.
 * 0, or -1 on EOF or a line too long. */
static int
read_pass(const char *prompt, char *buf, size_t size, int tty)
{
	struct termios old, quiet;
	size_t n = 0;
	char c;
	int rc = 0;

	if (tty) {	/* echo off first: the flush must not eat typed input */
		tcgetattr(0, &old);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
		tcsetattr(0, TCSAFLUSH, &quiet);
		fputs(prompt, stderr);
		fflush(stderr);
	}
	for (;;) {
		ssize_t r = read(0, &c, 1);

		if (r <= 0) {
			rc = n ? 0 : -1;
			break;
		}
		if (c == '\n')
			break;
		if (n + 1 >= size) {
			rc = -1;
			break;
		}
		buf[n++] = c;
	}
	buf[n] = '\0';
	if (n && buf[n - 1] == '\r')
		buf[--n] = '\0';
	if (tty) {
		tcsetattr(0, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	return rc;
}

static char *
hash(const char *pass, const char *method)
{
	static const char *const prefixes[][2] = {
		{ "yescrypt", "$y$" }, { "sha512", "$6$" },
	};
	char *salt = NULL, *h;
	size_t i;

	for (i = 0; i < 2; i++)
		if (strcmp(method, prefixes[i][0]) == 0)
			break;
	if (i == 2)
		return NULL;
	for (; i < 2 && salt == NULL; i++)	/* yescrypt, else SHA-512 */
		salt = crypt_gensalt_ra(prefixes[i][1], 0, NULL, 0);
	if (salt == NULL)
		return NULL;
	h = crypt(pass, salt);
	free(salt);
	return h == NULL || h[0] == '*' ? NULL : h;
}

int
cmd_passwd(int argc, char **argv)
{
	char p1[PASS_MAX], p2[PASS_MAX];
	const char *method = "yescrypt", *h;
	int ch, tty = isatty(0);

	while ((ch = getopt(argc, argv, "m:")) != -1) {
		if (ch != 'm') {
			fprintf(stderr, "usage: hermod passwd [-m yescrypt|sha512]\n");
			return 2;
		}
		method = optarg;
	}
	if (strcmp(method, "yescrypt") != 0 && strcmp(method, "sha512") != 0) {
		fprintf(stderr, "hermod passwd: unknown method %s (yescrypt or "
		    "sha512)\n", method);
		return 2;
	}
	if (read_pass("Password: ", p1, sizeof(p1), tty) < 0) {
		fprintf(stderr, "hermod passwd: no password read (or longer "
		    "than %d bytes)\n", PASS_MAX - 1);
		return 1;
	}
	if (tty && (read_pass("Again: ", p2, sizeof(p2), tty) < 0 ||
	    strcmp(p1, p2) != 0)) {
		fprintf(stderr, "hermod passwd: the passwords differ\n");
		return 1;
	}
	h = hash(p1, method);
	explicit_bzero(p1, sizeof(p1));
	explicit_bzero(p2, sizeof(p2));
	if (h == NULL) {
		fprintf(stderr, "hermod passwd: cannot hash with method %s "
		    "(yescrypt or sha512)\n", method);
		return 1;
	}
	printf("%s\n", h);
	return 0;
}
