/*
 * The configuration keys: CONF_KEY(id, type, default, min, max, help).
 * The key's name in hermod.conf is the id. Add a key only when a user
 * needs it, with a sane default; the man page and `hermod config` follow
 * from this table, and a test checks that hermod.conf(5) lists exactly
 * these keys. Where Postfix has a parameter with the same meaning we use
 * its name and value syntax.
 */
/* Identity and domains */
CONF_KEY(myhostname, CONF_STR, "", 0, 0, "host name in the greeting, Received: and bounces (default: the host's FQDN)")
CONF_KEY(mydomain, CONF_STR, "", 0, 0, "the domain of myhostname (default: myhostname less its first label)")
CONF_KEY(mydestination, CONF_LIST, "$myhostname, localhost", 0, 0, "domains delivered locally")
CONF_KEY(mynetworks, CONF_LIST, "127.0.0.0/8 [::1]/128", 0, 0, "client networks that may relay without AUTH")
/* Listeners */
CONF_KEY(smtp_listen, CONF_LIST, "0.0.0.0:25", 0, 0, "port-25 SMTP listeners, HOST:PORT or [IPV6]:PORT")
CONF_KEY(submission_listen, CONF_LIST, "0.0.0.0:587", 0, 0, "submission listeners (STARTTLS and AUTH required)")
CONF_KEY(smtps_listen, CONF_LIST, "0.0.0.0:465", 0, 0, "implicit-TLS submission listeners")
CONF_KEY(lmtp_listen, CONF_LIST, "", 0, 0, "extra lmtpd listeners for other MTAs: unix:PATH or HOST:PORT")
/* Files and accounts */
CONF_KEY(queue_directory, CONF_STR, "/var/spool/hermod", 0, 0, "the spool")
CONF_KEY(run_directory, CONF_STR, "/run/hermod", 0, 0, "sockets and pid files")
CONF_KEY(user, CONF_STR, "hermod", 0, 0, "unprivileged account the daemons run as when started as root")
CONF_KEY(alias_maps, CONF_STR, SYSCONFDIR "/aliases", 0, 0, "aliases text file; newaliases writes FILE.db beside it")
CONF_KEY(user_maps, CONF_STR, SYSCONFDIR "/users", 0, 0, "users text file; newaliases writes FILE.db beside it")
CONF_KEY(local_system_users, CONF_BOOL, "yes", 0, 1, "accounts from the system's passwd also receive mail")
CONF_KEY(home_mailbox, CONF_STR, "Maildir/", 0, 0, "mailbox of a system account, relative to its home (a trailing / means Maildir)")
CONF_KEY(mail_spool_directory, CONF_STR, "/var/mail", 0, 0, "directory of system users' mbox files when home_mailbox is empty")
CONF_KEY(recipient_delimiter, CONF_STR, "+", 0, 0, "address extension delimiters (alice+ext delivers to alice)")
/* Limits */
CONF_KEY(message_size_limit, CONF_SIZE, "52428800", 1024, 4294967295LL, "largest message accepted, in bytes")
CONF_KEY(smtpd_recipient_limit, CONF_INT, "1000", 1, 100000, "recipients per transaction")
CONF_KEY(hopcount_limit, CONF_INT, "50", 1, 1000, "Received: headers beyond which a message is a loop (554 5.4.6)")
CONF_KEY(smtpd_banner, CONF_STR, "$myhostname ESMTP Hermod", 0, 0, "text after 220 in smtpd's greeting (starts with myhostname)")
CONF_KEY(smtpd_timeout, CONF_TIME, "300s", 1, 3600, "smtpd: longest wait for a client's command or data, then 421 4.4.2")
CONF_KEY(smtpd_max_connections, CONF_INT, "10000", 0, 1000000, "smtpd: concurrent sessions in all (then 421 4.7.0; 0: no limit)")
CONF_KEY(smtpd_client_connection_count_limit, CONF_INT, "50", 0, 100000, "smtpd: concurrent sessions from one address outside mynetworks (then 421 4.7.0; 0: no limit)")
CONF_KEY(smtpd_soft_error_limit, CONF_INT, "10", 1, 1000, "smtpd: errors in a session after which each reply waits smtpd_error_sleep_time")
CONF_KEY(smtpd_hard_error_limit, CONF_INT, "20", 1, 1000, "smtpd: errors in a session after which it ends (421 4.7.0)")
CONF_KEY(smtpd_error_sleep_time, CONF_TIME, "1s", 0, 60, "smtpd: delay of an error reply past smtpd_soft_error_limit")
CONF_KEY(mailbox_lock_timeout, CONF_TIME, "10s", 0, 3600, "longest wait for an mbox's fcntl lock and dotlock, then 452 4.2.1 (lmtpd)")
CONF_KEY(stale_lock_time, CONF_TIME, "500s", 1, 86400, "age after which an mbox dotlock is removed as stale (lmtpd)")
CONF_KEY(lmtpd_process_limit, CONF_INT, "20", 1, 256, "mailbox deliveries running at once (lmtpd)")
CONF_KEY(lmtpd_delivery_timeout, CONF_TIME, "300s", 1, 3600, "a mailbox write running longer is killed and deferred (lmtpd)")
CONF_KEY(log_level, CONF_STR, "info", 0, 0, "lowest level logged: debug, info, warning, crit")
/* Remote delivery */
CONF_KEY(relayhost, CONF_STR, "", 0, 0, "[host]:port smarthost for all remote mail (empty: MX lookup)")
CONF_KEY(smtp_port, CONF_INT, "25", 1, 65535, "port remote deliveries connect to")
CONF_KEY(dns_servers, CONF_LIST, "", 0, 0, "IP[:PORT] name servers for c-ares (empty: /etc/resolv.conf)")
CONF_KEY(smtp_connect_timeout, CONF_TIME, "30s", 1, 3600, "remote delivery: longest wait for a TCP connection")
CONF_KEY(smtp_helo_timeout, CONF_TIME, "300s", 1, 3600, "remote delivery: longest wait for the greeting and the EHLO/HELO reply")
CONF_KEY(smtp_mail_timeout, CONF_TIME, "300s", 1, 3600, "remote delivery: longest wait for the MAIL FROM reply")
CONF_KEY(smtp_rcpt_timeout, CONF_TIME, "300s", 1, 3600, "remote delivery: longest wait for each RCPT TO reply")
CONF_KEY(smtp_data_init_timeout, CONF_TIME, "120s", 1, 3600, "remote delivery: longest wait for the DATA reply")
CONF_KEY(smtp_data_xfer_timeout, CONF_TIME, "180s", 1, 3600, "remote delivery: longest stall while sending the message")
CONF_KEY(smtp_data_done_timeout, CONF_TIME, "600s", 1, 3600, "remote delivery: longest wait for the reply after the final dot")
CONF_KEY(smtp_quit_timeout, CONF_TIME, "300s", 1, 3600, "remote delivery: longest wait for the QUIT reply")
CONF_KEY(default_destination_concurrency_limit, CONF_INT, "20", 1, 1000, "remote delivery: sessions at once to one destination (domain or relayhost)")
CONF_KEY(default_process_limit, CONF_INT, "100", 1, 10000, "remote delivery: SMTP sessions at once in all")
CONF_KEY(smtp_destination_recipient_limit, CONF_INT, "50", 1, 10000, "remote delivery: recipients per SMTP transaction")
CONF_KEY(smtp_connection_cache_time_limit, CONF_TIME, "2s", 0, 300, "remote delivery: how long an idle session is kept for the next message to its destination (0: not kept)")
CONF_KEY(smtp_tls_security_level, CONF_STR, "may", 0, 0, "remote delivery TLS: none, may (STARTTLS when offered, unverified), encrypt (required), verify (required, certificate checked against smtp_tls_ca_file and the MX name)")
CONF_KEY(smtp_tls_policy_maps, CONF_STR, "", 0, 0, "text file of per-destination TLS levels: DOMAIN-or-[relayhost] LEVEL per line (overrides smtp_tls_security_level)")
CONF_KEY(smtp_tls_ca_file, CONF_STR, "", 0, 0, "PEM CA certificates for the verify level (empty: the system's default store)")
CONF_KEY(smtp_sasl_password_maps, CONF_STR, "", 0, 0, "text file of SMTP AUTH credentials: DESTINATION USER:PASSWORD per line (the relayhost value or a domain); AUTH then needs TLS")
/* TLS */
CONF_KEY(tls_cert_file, CONF_STR, "", 0, 0, "PEM certificate (chain) file; without it STARTTLS is not offered")
CONF_KEY(tls_key_file, CONF_STR, "", 0, 0, "PEM private key file")
/* Queue lifetimes and retries */
CONF_KEY(maximal_queue_lifetime, CONF_TIME, "5d", 0, 365LL * 86400, "time in the queue before undeliverable mail bounces")
CONF_KEY(delay_warning_time, CONF_TIME, "4h", 0, 365LL * 86400, "time before a delay warning goes to the sender (0: never)")
CONF_KEY(minimal_backoff_time, CONF_TIME, "300s", 1, 365LL * 86400, "shortest wait before retrying a deferred recipient")
CONF_KEY(maximal_backoff_time, CONF_TIME, "4000s", 1, 365LL * 86400, "longest wait before retrying a deferred recipient")
CONF_KEY(lmtp_destination_concurrency_limit, CONF_INT, "20", 1, 1000, "LMTP transactions queued runs at once to lmtpd")
CONF_KEY(lmtp_destination_recipient_limit, CONF_INT, "50", 1, 10000, "recipients per LMTP transaction to lmtpd")
CONF_KEY(bounce_size_limit, CONF_SIZE, "50000", 0, 1073741824LL, "largest message returned whole in a bounce; larger ones come back as headers only")
