# The Kotlin bindings (bindings/kotlin): `make test-kotlin` runs their JUnit tests against
# target/release/libimbed.so, and LeanClientTest, in a JVM of its own, against the client-only
# target/client/release-small/libimbed.so with build/imbed-host as its server (both built first, so
# it never skips here); `make test-jvm-consumer` installs their jar, which carries that library
# for linux-x86-64, and runs a separate Maven project (tests/jvm-consumer) that depends on the jar
# alone. Included from the top-level Makefile; paths are from the repository root.

MVN ?= mvn
KOTLIN_DIR = bindings/kotlin
KOTLIN_REPORTS = $(KOTLIN_DIR)/target/surefire-reports

.PHONY: test-kotlin test-jvm-consumer

# mvn -q hides surefire's summary, so it is printed from the reports afterwards: one line per test
# class, then the totals. Old reports are removed first so that a failed compile prints no stale summary.
test-kotlin: lib lib-client host
	@rm -rf $(KOTLIN_REPORTS)
	@status=0; $(MVN) -q -B -f $(KOTLIN_DIR)/pom.xml test || status=$$?; \
	if ls $(KOTLIN_REPORTS)/*.txt >/dev/null 2>&1; then \
		grep -h '^Tests run:' $(KOTLIN_REPORTS)/*.txt; \
		grep -h '^Tests run:' $(KOTLIN_REPORTS)/*.txt | awk -F'[:,]' \
			'{ run += $$2; failures += $$4; errors += $$6; skipped += $$8 } \
			END { printf "Tests run: %d, Failures: %d, Errors: %d, Skipped: %d\n", run, failures, errors, skipped }'; \
	fi; \
	exit $$status

# No jna.library.path, no LD_LIBRARY_PATH: JNA must extract libimbed.so from the jar.
test-jvm-consumer: lib
	MVN="$(MVN)" tests/jvm-consumer/run
