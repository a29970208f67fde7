package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// RunWithBinaries is a TestMain body for end-to-end tests that run tier0's
// commands as separate processes, as a user would: it builds pkgs (import
// paths) once into a temporary directory, stores it in *dir, runs the
// tests and removes the directory. It returns the exit code.
func RunWithBinaries(m *testing.M, dir *string, pkgs ...string) int {
	d, err := os.MkdirTemp("", "tier0-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(d)
	cmd := exec.Command("go", append([]string{"build", "-o", d + "/"}, pkgs...)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "testenv: building", pkgs, ":", err)
		return 1
	}
	*dir = d
	return m.Run()
}
