/*
 * lmtpd: LMTP delivery into Maildir and mbox (start-up, event loop,
 * signals). Placeholder main until the session framework lands.
 */
#include "log.h"

int
main(void)
{
	log_init("lmtpd", 1, LOG_LVL_INFO);
	fatal("lmtpd: not built yet");
}
