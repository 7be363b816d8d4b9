/* smtp_server: implementation in progress (see smtp_server.h). */
#include "smtp_server.h"
