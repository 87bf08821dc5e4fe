// The target's code is all in include/CKernelHints.h (static inline); SwiftPM needs one source file.
#include "CKernelHints.h"
