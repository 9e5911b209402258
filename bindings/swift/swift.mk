# The Swift bindings' check, for the top-level Makefile (`include bindings/swift/swift.mk`).
# No Swift toolchain runs here or in CI: test-swift checks every C name the
# Swift sources use against include/imbed.h (tests/swift/check_swift_ffi.js,
# which first proves itself on tests/swift/fixtures/wrong.swift).

SWIFT_CHECK_DIR = tests/swift

.PHONY: test-swift

# npm ci only when the lock file's packages are missing; .npmrc there skips
# install scripts (tree-sitter ships its parsers prebuilt).
test-swift:
	@[ -d $(SWIFT_CHECK_DIR)/node_modules/tree-sitter-swift ] || (cd $(SWIFT_CHECK_DIR) && npm ci --silent --no-audit --no-fund)
	node $(SWIFT_CHECK_DIR)/check_swift_ffi.js
