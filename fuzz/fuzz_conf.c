/*
 * Fuzz target for the hermod.conf parser: the input is a whole config
 * file, loaded from memory (conf_load_mem: syntax, continuations, bounds,
 * $name expansion, typed checks). After a good load every accessor and
 * printer is exercised. Nothing may crash, leak or read out of bounds.
 */
#include <stdint.h>
#include <stdio.h>

#include "conf.h"

static FILE *devnull;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (devnull == NULL && (devnull = fopen("/dev/null", "w")) == NULL)
		return 0;
	if (conf_load_mem("fuzz", (const char *)data, size, devnull) < 0)
		return 0;
	for (int k = 0; k < CONF_NKEYS; k++) {
		if (conf_defs[k].type == CONF_LIST)
			(void)conf_list_has(k, "localhost");
		(void)conf_str(k);
		(void)conf_num(k);
	}
	conf_print(devnull, 0, 0);
	conf_print(devnull, 1, 1);
	/* Back to the defaults, so that inputs do not depend on each other. */
	conf_load(NULL, 1, devnull);
	return 0;
}
