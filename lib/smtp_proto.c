/* smtp_proto: implementation in progress (see smtp_proto.h). */
#include "smtp_proto.h"
