// Package testenv gives integration tests the real components that
// `make test` provides (Postgres, SoftHSM2, ...) through environment
// variables.
//
// When a variable is missing the test is skipped on a developer machine but
// fails when TIER0_REQUIRE_INTEGRATION=1 or CI is set: `make test` and CI
// always set it, so an integration test can never silently skip there.
package testenv

import (
	"os"
	"testing"
)

// Strict reports whether missing integration components are a failure.
func Strict() bool {
	return os.Getenv("TIER0_REQUIRE_INTEGRATION") == "1" || os.Getenv("CI") != ""
}

// Get returns the value of the environment variable name, skipping (or,
// under Strict, failing) the test when it is empty.
func Get(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v != "" {
		return v
	}
	if Strict() {
		t.Fatalf("%s is not set: run the tests with `make test`, which provides it", name)
	}
	t.Skipf("%s is not set (run `make test` to provide it)", name)
	return ""
}

// Well-known variables set by `make test`.
const (
	DatabaseURL  = "TEST_DATABASE_URL"  // postgres://... for a database the test may create schemas in
	PKCS11Module = "TEST_PKCS11_MODULE" // path to libsofthsm2.so
	SoftHSMUtil  = "TEST_SOFTHSM2_UTIL" // path to softhsm2-util
	PKCS11Tool   = "TEST_PKCS11_TOOL"   // path to pkcs11-tool (opensc)
	Promtool     = "TEST_PROMTOOL"      // path to promtool (Debian's prometheus package)
)
