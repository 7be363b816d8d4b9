# Hermod — plain GNU make, no autotools.
#
#   make            build lib/libhermod.a and every program into bin/
#   make check      install missing Debian packages, build (plain and
#                   ASan+UBSan), run unit tests, fuzz smoke runs, man lint
#                   and the end-to-end tests
#   make run        start the whole system in the foreground under ./run/
#   make bench      benchmarks side by side with Postfix (never in check)
#   make fuzz       long fuzz runs
#   make install    PREFIX=/usr/local DESTDIR=
#   make clean

PREFIX  ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc/hermod
BINDIR  = $(PREFIX)/sbin
UBINDIR = $(PREFIX)/bin
MANDIR  = $(PREFIX)/share/man
SYSTEMDDIR ?= $(PREFIX)/lib/systemd/system

CC      ?= cc
PKGS    = openssl libevent libevent_openssl libcares
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS_BASE = -std=gnu11 -Wall -Wextra -Werror -g -D_GNU_SOURCE \
	-DSYSCONFDIR='"$(SYSCONFDIR)"' -Ilib $(PKG_CFLAGS)
CFLAGS  ?= -O2
SANFLAGS = -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined
LDLIBS  = $(PKG_LIBS) -ldb -lcrypt -lbsd

# `make` alone builds every program (the tree rules below come first).
.DEFAULT_GOAL := all

# Programs: name -> sources.
PROGS = smtpd queued lmtpd hermod sendmail newaliases
smtpd_SRCS      = $(wildcard smtpd/*.c)
queued_SRCS     = $(wildcard queued/*.c)
lmtpd_SRCS      = $(wildcard lmtpd/*.c)
hermod_SRCS     = $(wildcard tools/hermod*.c)
sendmail_SRCS   = $(wildcard tools/sendmail*.c)
newaliases_SRCS = $(wildcard tools/newaliases*.c)

LIB_SRCS  = $(wildcard lib/*.c)
UNIT_SRCS = $(wildcard tests/unit/test_*.c)
UNITS     = $(patsubst tests/unit/%.c,%,$(UNIT_SRCS))
FUZZ_SRCS = $(wildcard fuzz/fuzz_*.c)
FUZZERS   = $(patsubst fuzz/%.c,%,$(FUZZ_SRCS))

# Two build trees: build/ (plain, -O2) and build/san/ (ASan+UBSan).
# $(1)=tree dir, $(2)=extra cflags, $(3)=bin dir
define TREE
$(1)/%.o: %.c
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS_BASE) $(2) -MMD -MP -c $$< -o $$@

$(1)/libhermod.a: $$(patsubst %.c,$(1)/%.o,$$(LIB_SRCS))
	@rm -f $$@
	ar rcs $$@ $$^

$(foreach p,$(PROGS),$(3)/$(p)): $(3)/%: $(1)/libhermod.a
	@mkdir -p $(3)
	$$(CC) $(2) -o $$@ $$(patsubst %.c,$(1)/%.o,$$($$*_SRCS)) $(1)/libhermod.a $$(LDLIBS)

$(foreach u,$(UNITS),$(1)/tests/$(u)): $(1)/tests/%: $(1)/tests/unit/%.o $(1)/libhermod.a
	@mkdir -p $$(dir $$@)
	$$(CC) $(2) -o $$@ $$< $(1)/libhermod.a $$(LDLIBS)
endef

$(eval $(call TREE,build,$(CFLAGS),bin))
$(eval $(call TREE,build/san,$(SANFLAGS),build/san/bin))

# Each program also depends on its own objects (second expansion of the
# per-program source list).
.SECONDEXPANSION:
$(foreach p,$(PROGS),bin/$(p)): $$(patsubst %.c,build/%.o,$$($$(notdir $$@)_SRCS))
$(foreach p,$(PROGS),build/san/bin/$(p)): $$(patsubst %.c,build/san/%.o,$$($$(notdir $$@)_SRCS))

BINS     = $(addprefix bin/,$(PROGS))
SAN_BINS = $(addprefix build/san/bin/,$(PROGS))
UNIT_BINS     = $(addprefix build/tests/,$(UNITS))
SAN_UNIT_BINS = $(addprefix build/san/tests/,$(UNITS))

all: $(BINS) bin/mailq

bin/mailq: bin/sendmail
	ln -sf sendmail $@
build/san/bin/mailq: build/san/bin/sendmail
	ln -sf sendmail $@

san: $(SAN_BINS) build/san/bin/mailq

units: $(UNIT_BINS) $(SAN_UNIT_BINS)

deps:
	@sh tests/deps.sh

# Fuzzers: clang + libFuzzer, the library rebuilt with clang.
FUZZ_CFLAGS = -O1 -g -fsanitize=fuzzer-no-link,address,undefined
$(eval $(call TREE,build/fuzz,$(FUZZ_CFLAGS),build/fuzz/bin))
build/fuzz/%: CC = clang
build/fuzz/fuzzer/%: build/fuzz/fuzz/%.o build/fuzz/libhermod.a
	@mkdir -p $(dir $@)
	clang -fsanitize=fuzzer,address,undefined -o $@ $< build/fuzz/libhermod.a $(LDLIBS)
FUZZ_BINS = $(addprefix build/fuzz/fuzzer/,$(FUZZERS))
fuzzers: $(FUZZ_BINS)

FUZZ_SECONDS ?= 15
fuzz-smoke: $(FUZZ_BINS)
	@sh tests/fuzz.sh $(FUZZ_SECONDS) $(FUZZERS)
fuzz: $(FUZZ_BINS)
	@sh tests/fuzz.sh $${FUZZ_SECONDS:-600} $(FUZZERS)

check: deps
	$(MAKE) all san units fuzzers
	@sh tests/check.sh

run: deps all
	@sh tools/run.sh

bench: deps all
	@sh bench/run.sh

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UBINDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSCONFDIR)
	install -m 755 bin/smtpd bin/queued bin/lmtpd bin/hermod bin/newaliases $(DESTDIR)$(BINDIR)/
	install -m 755 bin/sendmail $(DESTDIR)$(UBINDIR)/sendmail
	ln -sf sendmail $(DESTDIR)$(UBINDIR)/mailq
	for f in man/*.1; do [ -f "$$f" ] && install -m 644 $$f $(DESTDIR)$(MANDIR)/man1/; done; true
	ln -sf sendmail.1 $(DESTDIR)$(MANDIR)/man1/mailq.1
	for f in man/*.5; do [ -f "$$f" ] && install -m 644 $$f $(DESTDIR)$(MANDIR)/man5/; done; true
	for f in man/*.8; do [ -f "$$f" ] && install -m 644 $$f $(DESTDIR)$(MANDIR)/man8/; done; true
	for f in hermod.conf aliases users; do \
		[ -e $(DESTDIR)$(SYSCONFDIR)/$$f ] || install -m 644 conf/$$f $(DESTDIR)$(SYSCONFDIR)/$$f; done
	install -d $(DESTDIR)$(SYSTEMDDIR)
	sed -e 's|@SBINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		conf/hermod.service.in > $(DESTDIR)$(SYSTEMDDIR)/hermod.service
	chmod 644 $(DESTDIR)$(SYSTEMDDIR)/hermod.service
	@if [ "$$(id -u)" = 0 ] && [ -z "$(DESTDIR)" ] && ! id hermod >/dev/null 2>&1; then \
		useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin hermod; fi

clean:
	rm -rf build bin

.PHONY: all san units deps fuzzers fuzz-smoke fuzz check run bench install clean

-include $(shell find build -name '*.d' 2>/dev/null)
