/*
 * Brings the repository's one header into the CImbed module. A relative
 * include instead of a copy or a symbolic link: the header is generated and
 * committed at include/imbed.h, and a copy would drift from it.
 * This file is bindings/swift/Sources/CImbed/imbed_shim.h, four levels below
 * the repository root.
 */
#include "../../../../include/imbed.h"
